// Package providers is the seam between Veil and the systems that hold
// secret values. Each provider (vault, aws, fake) lives in its own package
// and registers a Provider; veil-apiserver is the only component that ever
// builds a Client, and it builds one per store identity and reuses it.
package providers

import (
	"context"
	"net"
	"net/url"
	"strings"
	"time"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// Provider builds clients for one kind of store.
type Provider interface {
	// Name is the provider's key under spec.provider ("vault", "aws", "fake").
	Name() string

	// Endpoints returns every URL a client of this store would connect to,
	// without connecting, so the endpoint allowlist and the plaintext policy
	// can refuse a store before any connection is made.
	Endpoints(store *Store) ([]*url.URL, error)

	// NewClient builds a client for a store. It reads whatever credentials
	// it needs through creds, which enforces that they belong to the store's
	// namespace and records what was used, so that a change of credentials
	// makes a new store identity. Dialing must go through env.Dialer.
	NewClient(ctx context.Context, store *Store, creds Credentials, env Env) (Client, error)
}

// Client reads and writes the values of one store, as one identity. It is
// shared by concurrent requests.
type Client interface {
	// Get returns the whole remote value at ref: for key/value providers a
	// JSON object of its fields, otherwise the value as stored.
	Get(ctx context.Context, ref Ref) (Value, error)

	// Find returns the remote values matching f, by remote key.
	Find(ctx context.Context, f Find) (map[string]Value, error)

	// Push writes one value and says what it did, as the API reports it:
	// esv1alpha1.SecretPushResultPushed, SecretPushResultUnchanged, or
	// SecretPushResultSkippedExists (the value exists and the push asked
	// IfNotExists).
	Push(ctx context.Context, p Push) (string, error)

	// Delete removes a remote key (or one property of it), if it exists and
	// d.Owner holds it.
	Delete(ctx context.Context, d Delete) error

	// Close releases what the client holds (a Vault token is revoked).
	Close(ctx context.Context) error
}

// VersionLister is implemented by clients that can tell which version of
// each remote key is current, in few calls and, where the provider keeps
// versions, without reading the values (Vault KV v1 keeps none: there a
// version is a keyed hash of the value, see Scope): what change detection
// uses (pkg/changes). The result has an entry for
// every key of keys that exists. Keys it cannot name (an AWS ARN, for
// example) are left out, and so are never reported as changed.
type VersionLister interface {
	Versions(ctx context.Context, keys []string) (map[string]KeyVersion, error)
	// VersionsPerCall is how many keys one provider call answers for:
	// callers ask in chunks of this size, one admission each, so
	// detection is held to the store's provider budget like reads.
	VersionsPerCall() int
}

// KeyVersion is what a VersionLister says of one remote key.
type KeyVersion struct {
	// ID changes whenever the value does; it is only compared for
	// equality.
	ID string
	// Changed is when the provider last changed the key, by its clock;
	// zero when it does not say.
	Changed time.Time
	// Scope, when set, says what IDs may be compared with: an ID is only
	// compared with one of the same Scope, and a key whose Scope moved has
	// changed only if Changed moved on. A provider whose IDs are keyed
	// hashes sets it to a name of the key, so that a version from another
	// process (another provider replica) is not taken for a change.
	Scope string
}

// MaxVersionKeys bounds the keys one Versions call is asked about.
const MaxVersionKeys = 10000

// ChangeWatcher is implemented by clients whose provider detects changes
// itself (it is told of writes, or watches its backend), so that change
// detection costs what changes rather than a look at every key each
// cycle. pkg/changes prefers it to VersionLister.
type ChangeWatcher interface {
	// WatchChanges watches keys (distinct, at most MaxVersionKeys) until
	// ctx ends, calling changed once for each KeyChange, never
	// concurrently:
	//
	//   - first the initial state: exactly one KeyChange for each key of
	//     keys, in the order of keys, with its current version or Exists
	//     false;
	//   - then one each time a key's version moves (Exists false: it was
	//     deleted). A key's KeyChanges come in the order they happened; a
	//     KeyChange may repeat the version last reported.
	//
	// It returns nil once ctx ends, the error of changed if changed
	// fails, or an error when it cannot go on watching; a watcher that
	// can recover from an interruption itself (a connection lost) does,
	// reporting after it only the keys whose version differs from the one
	// it last reported, so that nothing in between is missed. After an
	// error the caller knows nothing of the keys since the last KeyChange
	// and must look again (a new watch starts with the initial state).
	WatchChanges(ctx context.Context, keys []string, changed func(KeyChange) error) error
}

// KeyChange is what a ChangeWatcher says of one key: its version now.
type KeyChange struct {
	Key string
	// Exists is false when the key does not exist (any more).
	Exists bool
	// Version is the key's version when it exists.
	Version KeyVersion
}

// BatchGetter is implemented by clients that read several remote values in
// one call (Parameter Store's GetParameters). Missing keys are absent from
// the result, not errors.
type BatchGetter interface {
	GetBatch(ctx context.Context, refs []Ref) (map[Ref]Value, error)
}

// Ref names one remote value, or with Metadata its metadata.
type Ref struct {
	Key     string
	Version string
	// Metadata asks for the key's metadata instead of its value
	// (remoteRef.metadataPolicy Fetch), from a MetadataGetter.
	Metadata bool
}

// MetadataGetter is implemented by clients that can read a remote key's
// metadata (Vault KV v2 metadata, AWS tags). Metadata is treated as a
// value: it is cached sealed, and never logged or put in an error.
type MetadataGetter interface {
	// GetMetadata returns the metadata of key as a JSON object of strings.
	GetMetadata(ctx context.Context, key string) (Value, error)
}

// Value is one remote value. Data is secret: it must never reach a log, an
// error or a metric.
type Value struct {
	Data []byte
	// Version is the provider's version of the value, when it has one.
	Version string
}

// Find selects remote values by name and tags.
type Find struct {
	Path string
	// NameRegexp matches remote keys; empty matches all.
	NameRegexp string
	Tags       map[string]string
}

// Every provider bounds one find the same way, so a broad dataFrom.find
// cannot turn one read into thousands of provider requests, nor hold a
// provider's listing and memory: MaxFindResults is the most remote values
// one find returns, MaxFindListed the most names it may list to find them.
// Over either, the find fails as Invalid, asking for a narrower find.
const (
	MaxFindResults = 500
	MaxFindListed  = 5000
)

// Push writes Value to Key, or to one Property of the JSON object at Key,
// as Owner. Providers decide on ownership before they compare or write any
// value: a key another owner holds is NotOwner whatever the value, so a
// push cannot tell whether a guess equals a value it may not write.
type Push struct {
	Key      string
	Property string
	Value    []byte
	// Owner is recorded with a key the push creates or takes over; a key
	// recorded with another owner is never written.
	Owner Owner
	// IfNotExists skips the write when the key exists (any owner's), or
	// when the property exists in a key Owner holds.
	IfNotExists bool
	// Replace allows taking over a remote value Veil did not create (or
	// created without recording an owner); never another owner's.
	Replace bool
	// Metadata is the PushSecret's metadata for the key, as JSON (see
	// ParsePushMetadata), or empty. It comes from the PushSecret's spec,
	// never from a value. A provider that takes none refuses any (Invalid).
	Metadata []byte
}

// Owner is the PushSecret on whose behalf a key is pushed. Keys are
// Owner's by namespace and UID: a PushSecret deleted and created again
// under the same name is another owner.
type Owner struct {
	Namespace string
	Name      string
	UID       string
}

// Valid: every field is set.
func (o Owner) Valid() bool { return o.Namespace != "" && o.Name != "" && o.UID != "" }

// Is says whether a recorded owner is o.
func (o Owner) Is(namespace, uid string) bool { return o.Namespace == namespace && o.UID == uid }

// Delete removes Key, or one Property of the JSON object at Key, if Owner
// holds it: any other key is NotOwner and stays.
type Delete struct {
	Key      string
	Property string
	Owner    Owner
}

// Store is the part of a SecretStore or ClusterSecretStore a provider sees.
type Store struct {
	Kind       configv1alpha1.StoreKind
	Namespace  string // empty for a ClusterSecretStore
	Name       string
	Generation int64
	Spec       *configv1alpha1.SecretStoreSpec
}

// String names the store for messages: "SecretStore app/vault".
func (s *Store) String() string {
	if s.Namespace == "" {
		return string(s.Kind) + " " + s.Name
	}
	return string(s.Kind) + " " + s.Namespace + "/" + s.Name
}

// Credentials reads what a store's spec refers to, only from the store's
// own namespace (a ClusterSecretStore names the namespace).
type Credentials interface {
	// SecretKey returns one key of a Secret.
	SecretKey(ctx context.Context, sel configv1alpha1.SecretKeySelector) ([]byte, error)
	// ConfigMapKey returns one key of a ConfigMap.
	ConfigMapKey(ctx context.Context, name, key string, namespace *string) ([]byte, error)
	// ServiceAccountToken requests a short-lived token for a ServiceAccount
	// through the TokenRequest API.
	ServiceAccountToken(ctx context.Context, sel configv1alpha1.ServiceAccountSelector, expirationSeconds int64) (string, error)
}

// Env is what veil-apiserver gives every client it builds.
type Env struct {
	// DialContext connects only to endpoints --allowed-provider-endpoints
	// permits. Every connection a client makes, redirects included, must be
	// dialed through it.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// AllowPlaintext is --allow-plaintext-providers: http:// endpoints are
	// refused unless it is set (CheckPlaintext).
	AllowPlaintext bool
}

// CheckPlaintext is the plaintext policy, in one place with one message:
// an http:// endpoint u of store is refused unless veil-apiserver runs with
// --allow-plaintext-providers. veil-apiserver (pkg/stores) applies it to
// every endpoint of a store before any client is built; providers apply it
// again when they build a client, so a client never depends on its caller
// for it.
func (e Env) CheckPlaintext(store *Store, u *url.URL) error {
	if u.Scheme == "http" && !e.AllowPlaintext {
		return Errorf(Forbidden, "%s uses the plaintext endpoint %s; use https://, or start veil-apiserver with --allow-plaintext-providers (for local demos only)", store, Redact(u))
	}
	return nil
}

// Redact drops user info and query from a URL before it is shown.
func Redact(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.Fragment = nil, "", ""
	return strings.TrimSuffix(c.String(), "/")
}

// CheckWatchKeys refuses the keys of a watch that a ChangeWatcher would
// not answer as its contract says: more than MaxVersionKeys, or a key
// named twice (its initial state would be reported twice).
func CheckWatchKeys(keys []string) error {
	if len(keys) > MaxVersionKeys {
		return Errorf(Invalid, "%d keys is more than the %d one watch of changes may ask about", len(keys), MaxVersionKeys)
	}
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			return Errorf(Invalid, "key %q is named twice in one watch of changes", k)
		}
		seen[k] = struct{}{}
	}
	return nil
}
