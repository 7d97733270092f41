package vault

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/sync/errgroup"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

const (
	// One find's bounds are every provider's (providers.MaxFindResults).
	maxFindKeys   = providers.MaxFindResults
	maxFindListed = providers.MaxFindListed
	// parallelReads bounds the requests one find makes at once.
	parallelReads = 8

	// managedBy marks, in KV v2 custom_metadata, the keys Veil wrote, and
	// the owner keys name the PushSecret that wrote each: Veil overwrites
	// and deletes a key only for its owner, and takes over a key without
	// an owner only when a push says Replace.
	managedByKey      = "managed-by"
	managedByValue    = "veil"
	ownerNamespaceKey = "veil.dev/owner-namespace"
	ownerNameKey      = "veil.dev/owner-name"
	ownerUIDKey       = "veil.dev/owner-uid"
)

// client reads and writes one KV mount as one Vault identity.
type client struct {
	store   string // "SecretStore ns/name", for messages
	server  string // scheme://host, for messages
	mount   string
	version configv1alpha1.VaultKVVersion
	cas     bool
	// base holds no token; see token.api.
	base *vaultapi.Client
	// auth is spec.provider.vault.auth.namespace: the namespace logins and
	// the token's own renewal and revocation go to, when set.
	auth *string
	// http are the HTTP clients of base and of a cert login, whose idle
	// connections Close closes.
	http  []*http.Client
	clock clock.PassiveClock

	// identity says whom Vault knows this client as, for messages.
	identity string
	// login gets a new token; nil when the store gives one.
	login loginFunc

	mu     sync.Mutex
	tok    *token
	closed bool
	// refreshing serialises logins, renewals and Close.
	refreshing sync.Mutex

	// v1Read: on a KV v1 mount, what this client's reads returned.
	v1Read v1Reads
}

var _ providers.Client = &client{}

// call makes one request with the current token. A 403 to a token Veil
// logged in for may mean Vault no longer knows the token (revoked, or
// Vault restored from a backup): then Veil logs in again, once, and
// retries. A 403 to a valid token is the policy's answer, and logging in
// again would only repeat it.
func (c *client) call(ctx context.Context, op string, t target, fn func(ctx context.Context, api *vaultapi.Client) error) error {
	tok, err := c.current(ctx)
	if err != nil {
		return err
	}
	err = c.attempt(ctx, op, t, tok, fn)
	if c.login != nil && statusOf(err) == http.StatusForbidden && c.forgotten(ctx, tok) {
		if tok, err = c.refresh(ctx, tok, false); err != nil {
			return err
		}
		err = c.attempt(ctx, op, t, tok, fn)
	}
	return err
}

// forgotten asks Vault whether it no longer knows tok: the default policy
// lets every token look itself up, so only an unknown token gets a 403.
func (c *client) forgotten(ctx context.Context, tok *token) bool {
	err := c.attempt(ctx, "token-lookup", target{action: "look up", what: "its token", path: "auth/token/lookup-self", capability: "read"}, tok,
		func(ctx context.Context, api *vaultapi.Client) error {
			_, err := api.Auth().Token().LookupSelfWithContext(ctx)
			return err
		})
	return statusOf(err) == http.StatusForbidden
}

func (c *client) attempt(ctx context.Context, op string, t target, tok *token, fn func(ctx context.Context, api *vaultapi.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	start := time.Now()
	err := c.classify(fn(ctx, tok.api), t)
	metrics.ObserveProviderCall(providerName, op, start, err)
	return err
}

// read GETs a path; a 404 is a NotFound error naming t.what.
func (c *client) read(ctx context.Context, op string, t target, params url.Values) (*vaultapi.Secret, error) {
	var sec *vaultapi.Secret
	err := c.call(ctx, op, t, func(ctx context.Context, api *vaultapi.Client) error {
		resp, err := api.Logical().ReadRawWithDataWithContext(ctx, t.path, params)
		if resp != nil {
			defer resp.Body.Close()
		}
		if err != nil {
			return err
		}
		sec, err = vaultapi.ParseSecret(resp.Body)
		return err
	})
	if err == nil && sec == nil {
		err = providers.Errorf(providers.NotFound, "%s does not exist in %s (Vault KV %s mount %q)", t.what, c.store, c.version, c.mount)
	}
	return sec, err
}

func (c *client) dataPath(key string) string {
	if c.version == configv1alpha1.VaultKVv1 {
		return c.mount + "/" + key
	}
	return c.mount + "/data/" + key
}

func (c *client) metadataPath(key string) string { return c.mount + "/metadata/" + key }

func (c *client) cleanKey(key string) (string, error) {
	k, err := cleanPath(key)
	if err != nil {
		return "", providers.Errorf(providers.Invalid, "remote key %q cannot be read from %s: %s", key, c.store, err)
	}
	return k, nil
}

// Get returns the fields of the secret at ref.Key as a JSON object.
func (c *client) Get(ctx context.Context, ref providers.Ref) (providers.Value, error) {
	key, err := c.cleanKey(ref.Key)
	if err != nil {
		return providers.Value{}, err
	}
	t := target{action: "read", what: fmt.Sprintf("key %q", key), path: c.dataPath(key), capability: "read"}
	var params url.Values
	if ref.Version != "" {
		if c.version == configv1alpha1.VaultKVv1 {
			return providers.Value{}, providers.Errorf(providers.Invalid, "%s reads a Vault KV v1 mount, which has no versions; remove the version of remote key %q", c.store, key)
		}
		if n, err := strconv.ParseUint(ref.Version, 10, 63); err != nil || n == 0 {
			return providers.Value{}, providers.Errorf(providers.Invalid, "version %q of remote key %q is not a Vault KV v2 version (a number from 1)", ref.Version, key)
		}
		params = url.Values{"version": {ref.Version}}
		t.what = fmt.Sprintf("version %s of key %q", ref.Version, key)
	}
	b, version, err := c.readJSON(ctx, "kv-get", t, params)
	if err != nil {
		return providers.Value{}, err
	}
	if c.version == configv1alpha1.VaultKVv1 {
		c.v1Read.note(key, v1Hash(b))
	}
	return providers.Value{Data: b, Version: version}, nil
}

// readJSON reads the secret at t and returns its fields as a JSON object
// (map keys sorted, so equal values give equal bytes) and its KV v2
// version.
func (c *client) readJSON(ctx context.Context, op string, t target, params url.Values) ([]byte, string, error) {
	sec, err := c.read(ctx, op, t, params)
	if err != nil {
		return nil, "", err
	}
	fields, version, err := c.fieldsOf(sec, t)
	if err != nil {
		return nil, "", err
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, "", providers.Errorf(providers.Unavailable, "%s: Vault returned %s in a form Veil cannot encode", c.store, t.what)
	}
	return b, version, nil
}

// fieldsOf returns the fields of a read secret and its KV v2 version. A
// KV v2 version that was deleted or destroyed has no data: it is absent.
func (c *client) fieldsOf(sec *vaultapi.Secret, t target) (map[string]any, string, error) {
	if c.version == configv1alpha1.VaultKVv1 {
		if sec.Data == nil {
			return map[string]any{}, "", nil
		}
		return sec.Data, "", nil
	}
	data, _ := sec.Data["data"].(map[string]any)
	if data == nil {
		return nil, "", providers.Errorf(providers.NotFound, "%s was deleted in %s (Vault KV %s mount %q)", t.what, c.store, c.version, c.mount)
	}
	var version string
	if meta, ok := sec.Data["metadata"].(map[string]any); ok && meta["version"] != nil {
		version = fmt.Sprint(meta["version"])
	}
	return data, version, nil
}

// Find lists the keys under f.Path, at any depth, and returns those whose
// name (the whole key under the mount) matches f.NameRegexp and, on KV v2,
// whose custom_metadata carries every tag of f.Tags.
func (c *client) Find(ctx context.Context, f providers.Find) (map[string]providers.Value, error) {
	re, err := regexp.Compile(f.NameRegexp)
	if err != nil {
		return nil, providers.Errorf(providers.Invalid, "find.name.regexp %q is not a valid regular expression", f.NameRegexp)
	}
	if len(f.Tags) > 0 && c.version == configv1alpha1.VaultKVv1 {
		return nil, providers.Errorf(providers.Invalid, "%s reads a Vault KV v1 mount, which has no custom metadata to find tags in; find by name instead", c.store)
	}
	root := ""
	if strings.Trim(f.Path, "/") != "" {
		if root, err = c.cleanKey(f.Path); err != nil {
			return nil, err
		}
		root += "/"
	}
	keys, err := c.walk(ctx, root)
	if err != nil {
		return nil, err
	}
	var matched []string
	for _, k := range keys {
		if re.MatchString(k) {
			matched = append(matched, k)
		}
	}
	if len(f.Tags) == 0 && len(matched) > maxFindKeys {
		return nil, providers.Errorf(providers.Invalid, "find under %q in %s matches %d keys, more than %d; narrow find.path or find.name", root, c.store, len(matched), maxFindKeys)
	}

	var (
		mu  sync.Mutex
		out = map[string]providers.Value{}
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelReads)
	for _, k := range matched {
		g.Go(func() error {
			if len(f.Tags) > 0 {
				meta, err := c.metadata(gctx, k)
				if err != nil {
					return err
				}
				if meta == nil || !hasTags(meta.custom, f.Tags) {
					return nil
				}
			}
			v, err := c.Get(gctx, providers.Ref{Key: k})
			if providers.ReasonOf(err) == providers.NotFound {
				return nil // deleted, or removed since it was listed
			}
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if len(out) == maxFindKeys {
				return providers.Errorf(providers.Invalid, "find under %q in %s matches more than %d keys; narrow find.path, find.name or find.tags", root, c.store, maxFindKeys)
			}
			out[k] = v
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// walk lists every key under dir ("" or "a/b/"), depth first.
func (c *client) walk(ctx context.Context, dir string) ([]string, error) {
	var keys []string
	pending := []string{dir}
	listed := 0
	for len(pending) > 0 {
		d := pending[len(pending)-1]
		pending = pending[:len(pending)-1]
		path := c.mount + "/" + d
		if c.version == configv1alpha1.VaultKVv2 {
			path = c.mount + "/metadata/" + d
		}
		what := fmt.Sprintf("the keys under %q", d)
		if d == "" {
			what = "the keys of the mount"
		}
		var sec *vaultapi.Secret
		err := c.call(ctx, "kv-list", target{action: "list", what: what, path: strings.TrimSuffix(path, "/"), capability: "list"},
			func(ctx context.Context, api *vaultapi.Client) (err error) {
				sec, err = api.Logical().ListWithContext(ctx, path)
				return err
			})
		if err != nil {
			return nil, err
		}
		if sec == nil {
			continue // nothing under d
		}
		entries, _ := sec.Data["keys"].([]any)
		listed += len(entries)
		if listed > maxFindListed {
			return nil, providers.Errorf(providers.Invalid, "find under %q in %s would list more than %d keys; narrow find.path", dir, c.store, maxFindListed)
		}
		for _, e := range entries {
			name, _ := e.(string)
			switch {
			case name == "":
			case strings.HasSuffix(name, "/"):
				pending = append(pending, d+name)
			default:
				keys = append(keys, d+name)
			}
		}
	}
	sort.Strings(keys)
	return keys, nil
}

func hasTags(custom, tags map[string]string) bool {
	for k, v := range tags {
		if got, ok := custom[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// kvMetadata is what Veil uses of a KV v2 key's metadata.
type kvMetadata struct {
	custom map[string]string
	// current is the latest version, 0 when it was deleted or destroyed
	// (or none was ever written).
	current int
	// version is the latest version number, even if deleted: the value a
	// check-and-set write must name.
	version int
	// updated is updated_time: the last write of the key, its data or
	// its metadata.
	updated time.Time
}

func (m *kvMetadata) managed() bool { return m.custom[managedByKey] == managedByValue }

// owned: some PushSecret holds the key.
func (m *kvMetadata) owned() bool { return m.managed() && m.custom[ownerUIDKey] != "" }

func (m *kvMetadata) ownedBy(o providers.Owner) bool {
	return m.managed() && o.Is(m.custom[ownerNamespaceKey], m.custom[ownerUIDKey])
}

// metadata reads the KV v2 metadata of key; nil when the key does not exist.
func (c *client) metadata(ctx context.Context, key string) (*kvMetadata, error) {
	t := target{action: "read the metadata of", what: fmt.Sprintf("key %q", key), path: c.metadataPath(key), capability: "read"}
	sec, err := c.read(ctx, "kv-metadata", t, nil)
	if providers.ReasonOf(err) == providers.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseMetadata(sec.Data), nil
}

// parseMetadata reads a KV v2 metadata response. Whatever Vault returns,
// fields of unexpected types count as absent.
func parseMetadata(data map[string]any) *kvMetadata {
	m := &kvMetadata{custom: map[string]string{}}
	if cm, ok := data["custom_metadata"].(map[string]any); ok {
		for k, v := range cm {
			if s, ok := v.(string); ok {
				m.custom[k] = s
			}
		}
	}
	m.version = max(atoi(data["current_version"]), 0)
	if u, ok := data["updated_time"].(string); ok {
		m.updated, _ = time.Parse(time.RFC3339Nano, u)
	}
	m.current = m.version
	if versions, ok := data["versions"].(map[string]any); ok {
		if v, ok := versions[strconv.Itoa(m.version)].(map[string]any); ok {
			if deleted, _ := v["deletion_time"].(string); deleted != "" || v["destroyed"] == true {
				m.current = 0
			}
		}
	}
	return m
}

func atoi(v any) int {
	n, _ := strconv.Atoi(fmt.Sprint(v))
	return n
}

func (c *client) requireV2(what string) error {
	if c.version != configv1alpha1.VaultKVv2 {
		return providers.Errorf(providers.Invalid, "%s reads a Vault KV v1 mount; Veil %s only KV v2 mounts, whose metadata records which PushSecret owns a key", c.store, what)
	}
	return nil
}

// Push writes a JSON object to p.Key, or one field of the object there.
// Whose the key is is decided from its metadata alone, before its value is
// read: a key held by another PushSecret gets NotOwner, and one without an
// owner Conflict (unless Replace), whatever its value.
func (c *client) Push(ctx context.Context, p providers.Push) (string, error) {
	if err := c.requireV2("pushes to"); err != nil {
		return "", err
	}
	if !p.Owner.Valid() {
		return "", providers.Errorf(providers.Invalid, "a push to %s names no owner", c.store)
	}
	key, err := c.cleanKey(p.Key)
	if err != nil {
		return "", err
	}
	custom, err := c.parsePushMeta(p.Metadata)
	if err != nil {
		return "", err
	}
	meta, err := c.metadata(ctx, key)
	if err != nil {
		return "", err
	}
	mine := meta != nil && meta.ownedBy(p.Owner)
	if meta != nil && !mine {
		switch {
		case p.IfNotExists && meta.current > 0:
			// Not ours to look into: the key exists, so it is skipped.
			return esv1alpha1.SecretPushResultSkippedExists, nil
		case meta.owned():
			return "", providers.Errorf(providers.NotOwner, "remote key %q in %s belongs to another PushSecret; Veil never overwrites it for this one", key, c.store)
		case !p.Replace:
			return "", providers.Errorf(providers.Conflict, "remote key %q in %s exists and was not written by Veil for a PushSecret, so Veil will not overwrite it; set the PushSecret's updatePolicy to Replace to take it over", key, c.store)
		}
	}
	var current map[string]any
	if meta != nil && meta.current > 0 {
		if current, err = c.latest(ctx, key); err != nil {
			return "", err
		}
	}
	exists := current != nil
	if exists && p.Property != "" {
		_, exists = current[p.Property]
	}
	if exists && p.IfNotExists {
		return esv1alpha1.SecretPushResultSkippedExists, nil
	}

	var next map[string]any
	if p.Property == "" {
		d := json.NewDecoder(bytes.NewReader(p.Value))
		d.UseNumber()
		if err := d.Decode(&next); err != nil || next == nil {
			return "", providers.Errorf(providers.Invalid, "the value pushed to remote key %q is not a JSON object, and Vault KV holds objects; push it to one property of the key instead", key)
		}
	} else {
		next = maps.Clone(current)
		if next == nil {
			next = map[string]any{}
		}
		next[p.Property] = string(p.Value)
	}
	// The mark comes first: a key Veil creates or takes over is never left
	// without its owner, even when the data write fails.
	customWritten := false
	switch {
	case !mine:
		if err := c.markOwner(ctx, key, meta, p.Owner, custom); err != nil {
			return "", err
		}
		customWritten = len(custom) > 0
	case customDiffers(meta, custom):
		if err := c.markOwner(ctx, key, meta, p.Owner, custom); err != nil {
			return "", err
		}
		customWritten = true
	}
	if current != nil && reflect.DeepEqual(current, next) {
		if customWritten {
			return esv1alpha1.SecretPushResultPushed, nil
		}
		return esv1alpha1.SecretPushResultUnchanged, nil
	}
	// A property is merged into what Veil read, and a new key must not
	// exist yet: check-and-set keeps a concurrent write from being lost,
	// and makes one of two pushes creating a key at once its creator,
	// whether or not the store asks.
	casVersion := -1
	if c.cas || p.Property != "" || meta == nil {
		casVersion = 0
		if meta != nil {
			casVersion = meta.version
		}
	}
	if err := c.writeData(ctx, key, next, casVersion); err != nil {
		if meta == nil && providers.ReasonOf(err) == providers.Conflict {
			// Another push created the key first; the mark put on it
			// above must not make it ours.
			c.unmark(ctx, key, p.Owner)
		}
		return "", err
	}
	if meta == nil {
		// Metadata has no check-and-set, so a push that lost the race to
		// create the key may have marked it after us: the creator marks
		// it again.
		after, err := c.metadata(ctx, key)
		if err != nil {
			return "", err
		}
		if after == nil || !after.ownedBy(p.Owner) {
			if err := c.markOwner(ctx, key, after, p.Owner, custom); err != nil {
				return "", err
			}
		}
	}
	return esv1alpha1.SecretPushResultPushed, nil
}

// latest reads the latest version of key's fields.
func (c *client) latest(ctx context.Context, key string) (map[string]any, error) {
	t := target{action: "read", what: fmt.Sprintf("key %q", key), path: c.dataPath(key), capability: "read"}
	sec, err := c.read(ctx, "kv-get", t, nil)
	if err != nil {
		return nil, err
	}
	fields, _, err := c.fieldsOf(sec, t)
	return fields, err
}

// writeData writes a new version of key; casVersion -1 writes without
// check-and-set.
func (c *client) writeData(ctx context.Context, key string, fields map[string]any, casVersion int) error {
	body := map[string]any{"data": fields}
	if casVersion >= 0 {
		body["options"] = map[string]any{"cas": casVersion}
	}
	t := target{action: "write", what: fmt.Sprintf("key %q", key), path: c.dataPath(key), capability: "update"}
	return c.call(ctx, "kv-put", t, func(ctx context.Context, api *vaultapi.Client) error {
		_, err := api.Logical().WriteWithContext(ctx, t.path, body)
		return err
	})
}

// markOwner puts Veil's mark and owner in key's custom_metadata, keeping
// the rest.
func (c *client) markOwner(ctx context.Context, key string, meta *kvMetadata, o providers.Owner, extra map[string]string) error {
	custom := map[string]any{}
	if meta != nil {
		for k, v := range meta.custom {
			custom[k] = v
		}
	}
	// The push metadata's customMetadata, which parsePushMeta keeps off
	// Veil's own keys.
	for k, v := range extra {
		custom[k] = v
	}
	custom[managedByKey] = managedByValue
	custom[ownerNamespaceKey], custom[ownerNameKey], custom[ownerUIDKey] = o.Namespace, o.Name, o.UID
	return c.writeCustom(ctx, key, custom)
}

// unmark removes o's ownership of key, if it has it. Best effort: it runs
// after a failed create, whose error is what the caller reports.
func (c *client) unmark(ctx context.Context, key string, o providers.Owner) {
	meta, err := c.metadata(ctx, key)
	if err != nil || meta == nil || !meta.ownedBy(o) {
		return
	}
	custom := map[string]any{}
	for k, v := range meta.custom {
		custom[k] = v
	}
	delete(custom, ownerNamespaceKey)
	delete(custom, ownerNameKey)
	delete(custom, ownerUIDKey)
	_ = c.writeCustom(ctx, key, custom)
}

func (c *client) writeCustom(ctx context.Context, key string, custom map[string]any) error {
	t := target{action: "write the metadata of", what: fmt.Sprintf("key %q", key), path: c.metadataPath(key), capability: "update"}
	return c.call(ctx, "kv-metadata-put", t, func(ctx context.Context, api *vaultapi.Client) error {
		_, err := api.Logical().WriteWithContext(ctx, t.path, map[string]any{"custom_metadata": custom})
		return err
	})
}

// Delete removes d.Key with all its versions, or one property of it, if
// d.Owner holds it; a key that does not exist is already deleted.
func (c *client) Delete(ctx context.Context, d providers.Delete) error {
	if err := c.requireV2("deletes from"); err != nil {
		return err
	}
	if !d.Owner.Valid() {
		return providers.Errorf(providers.Invalid, "a delete from %s names no owner", c.store)
	}
	key, err := c.cleanKey(d.Key)
	if err != nil {
		return err
	}
	meta, err := c.metadata(ctx, key)
	if err != nil || meta == nil {
		return err
	}
	switch {
	case meta.owned() && !meta.ownedBy(d.Owner):
		return providers.Errorf(providers.NotOwner, "remote key %q in %s belongs to another PushSecret, so Veil does not delete it for this one", key, c.store)
	case !meta.ownedBy(d.Owner):
		return providers.Errorf(providers.NotOwner, "remote key %q in %s was not written by Veil for a PushSecret, so Veil does not delete it", key, c.store)
	}
	if d.Property != "" {
		if meta.current == 0 {
			return nil
		}
		current, err := c.latest(ctx, key)
		if err != nil {
			return err
		}
		if _, ok := current[d.Property]; !ok {
			return nil
		}
		if len(current) > 1 {
			next := maps.Clone(current)
			delete(next, d.Property)
			return c.writeData(ctx, key, next, meta.version)
		}
	}
	t := target{action: "delete", what: fmt.Sprintf("key %q", key), path: c.metadataPath(key), capability: "delete"}
	return c.call(ctx, "kv-delete", t, func(ctx context.Context, api *vaultapi.Client) error {
		_, err := api.Logical().DeleteWithContext(ctx, t.path)
		return err
	})
}

var _ providers.VersionLister = &client{}

// VersionsPerCall: a key's KV v2 metadata, or its KV v1 value, is read
// one key at a time.
func (c *client) VersionsPerCall() int { return 1 }

// Versions reads the KV v2 metadata of each key (its current version, and
// whether that version was deleted), a few at a time: one call a key, and
// no value is read. Metadata-only writes (custom_metadata) do not count
// as changes. A KV v1 mount keeps no versions, so there a key's version is
// a keyed hash of its value (v1Version): one read of the value a key.
func (c *client) Versions(ctx context.Context, keys []string) (map[string]providers.KeyVersion, error) {
	if len(keys) > providers.MaxVersionKeys {
		return nil, providers.Errorf(providers.Invalid, "%s: %d keys are more than the %d changes are detected for at once", c.store, len(keys), providers.MaxVersionKeys)
	}
	var (
		mu  sync.Mutex
		out = make(map[string]providers.KeyVersion, len(keys))
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelReads)
	for _, k := range keys {
		key, err := c.cleanKey(k)
		if err != nil {
			continue // never readable, so never changed
		}
		g.Go(func() error {
			var v providers.KeyVersion
			if c.version == configv1alpha1.VaultKVv1 {
				id, err := c.v1Version(gctx, key)
				if err != nil || id == "" {
					return err
				}
				v.ID, v.Scope = id, v1VersionScope
				// No time of change on KV v1; but if this client's
				// readers were served another value, it changed since,
				// which a first look needs to know (changes.Detector).
				if c.v1Read.differs(key, id) {
					v.Changed = c.clock.Now()
				}
			} else {
				meta, err := c.metadata(gctx, key)
				if err != nil || meta == nil {
					return err
				}
				v = versionOf(meta)
			}
			mu.Lock()
			defer mu.Unlock()
			out[k] = v
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

// v1VersionKey keys the hashes that stand for KV v1 versions. It is drawn
// once a process, so a hash is worth nothing for guessing a value outside
// it; equal values hash equal whichever client of the process read them.
// v1VersionScope names the key (providers.KeyVersion.Scope): a version
// from another process (a second veil-provider-vault replica, after a
// reconnection) is not compared, so it is not taken for a change.
var v1VersionKey, v1VersionScope = func() ([]byte, string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	id := sha256.Sum256(append([]byte("veil kv v1 version key "), b...))
	return b, "kv1-" + base64.RawURLEncoding.EncodeToString(id[:9])
}()

// v1Version reads key's value from a KV v1 mount and returns a keyed hash
// of it, which moves when the value does; "" when the key does not exist.
// Rewriting the same value is no change, as it is none for readers.
func (c *client) v1Version(ctx context.Context, key string) (string, error) {
	t := target{action: "read", what: fmt.Sprintf("key %q", key), path: c.dataPath(key), capability: "read"}
	b, _, err := c.readJSON(ctx, "kv-version", t, nil)
	if providers.ReasonOf(err) == providers.NotFound {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return v1Hash(b), nil
}

// v1Hash is the version of a KV v1 value: a hash of its fields, as
// readJSON encodes them, keyed with v1VersionKey.
func v1Hash(b []byte) string {
	mac := hmac.New(sha256.New, v1VersionKey)
	mac.Write(b)
	return "h" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
}

// v1Reads remembers, for each KV v1 key a client read, the hash
// (v1Hash) of the value it returned last. KV v1 tells no time of change,
// so without it a value rotated after a reader's first read and before
// detection first looked at the key would be taken as the key's first
// version and reach readers only at their refresh interval. With it, a
// first look that finds another value than readers were served counts
// as a change. It covers this process's reads only: another replica's
// readers are covered once detection has looked at the key. Bounded by
// providers.MaxVersionKeys keys; a key forgotten past that falls back to
// the first-look rule. Hashes are keyed per process and never leave it
// except as versions.
type v1Reads struct {
	mu   sync.Mutex
	hash map[string]string
}

func (r *v1Reads) note(key, hash string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hash == nil {
		r.hash = map[string]string{}
	}
	if _, known := r.hash[key]; !known && len(r.hash) >= providers.MaxVersionKeys {
		for k := range r.hash {
			delete(r.hash, k) // any one: the map's order is random
			break
		}
	}
	r.hash[key] = hash
}

// differs says whether key was read here, and its value then hashed to
// other than hash.
func (r *v1Reads) differs(key, hash string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	last, read := r.hash[key]
	return read && last != hash
}
