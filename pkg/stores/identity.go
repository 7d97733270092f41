package stores

import (
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/types"

	"github.com/veil-dev/veil/pkg/cache"
	"github.com/veil-dev/veil/pkg/providers"
)

// Identity is everything that decides what a store's client can read:
// two stores, or one store before and after a change of spec or
// credentials, never share a client or a cached value. Only Clients makes
// one, and every cache key of a store's values is built by its methods
// (ValueKey, FindKey), so nothing else decides how an entry is named.
type Identity struct {
	Kind       string
	Namespace  string
	Name       string
	UID        types.UID
	Generation int64
	// Fingerprint is an HMAC of the credentials the client was built with.
	Fingerprint string
	// Registration stamps the ProviderRegistration a remote store names:
	// values read from an endpoint before it changed are not served after.
	Registration string
	// Writes counts pushes through the store by this process: a push makes
	// a new identity, so nothing cached before it is served after it.
	Writes uint64
}

// Cache keys start with everything that decides what a store's client may
// read (Identity), so two stores — or one store before and after a
// change of spec or credentials — never share an entry, and one tenant can
// never be served another's value.
//
// A remote value's key is (identity, remote key, version) and deliberately
// not the property: providers return whole remote values and Resolve picks
// properties afterwards, so every property of one remote secret, for every
// ExternalSecret that reads it, costs one provider call and one entry.
// (DESIGN.md lists property in the key; leaving it out changes no isolation,
// since a property is only ever read out of a value its reader may read.)
//
// fields is the part of every key that names the identity, then op.
func (id Identity) fields(op string) []string {
	return []string{id.Kind, id.Namespace, id.Name, string(id.UID), strconv.FormatInt(id.Generation, 10), id.Fingerprint, id.Registration,
		strconv.FormatUint(id.Writes, 10), op}
}

// ValueKey names one remote value read through the store: (identity,
// remote key, version).
func (id Identity) ValueKey(ref providers.Ref) cache.Key {
	if ref.Metadata {
		return cache.NewKey(append(id.fields("metadata"), ref.Key, ref.Version)...)
	}
	return cache.NewKey(append(id.fields("get"), ref.Key, ref.Version)...)
}

// FindKey names the result of one dataFrom.find: its path, name pattern and
// tags, in a fixed order.
func (id Identity) FindKey(f providers.Find) cache.Key {
	fields := append(id.fields("find"), f.Path, f.NameRegexp)
	tags := make([]string, 0, len(f.Tags))
	for t := range f.Tags {
		tags = append(tags, t)
	}
	slices.Sort(tags)
	for _, t := range tags {
		fields = append(fields, t, f.Tags[t])
	}
	return cache.NewKey(fields...)
}
