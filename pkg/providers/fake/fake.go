// Package fake is a provider whose values are written in the store's spec.
// It exists for demos and tests: its values live in etcd with the spec, so
// it must not be used for real secrets.
package fake

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"regexp"
	"strings"
	"time"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

func init() { providers.Register(provider{}) }

type provider struct{}

func (provider) Name() string { return "fake" }

func (provider) Endpoints(*providers.Store) ([]*url.URL, error) { return nil, nil }

// ReadOnly: the fake provider's values are its store's spec, which
// veil-apiserver never writes.
func (provider) ReadOnly() bool { return true }

func (provider) NewClient(_ context.Context, store *providers.Store, _ providers.Credentials, _ providers.Env) (providers.Client, error) {
	if store.Spec.Provider.Fake == nil {
		return nil, providers.Errorf(providers.Invalid, "%s has no spec.provider.fake", store)
	}
	// The spec is copied: the informer's object may be replaced under us.
	return &client{store: store.String(), data: append([]configv1alpha1.FakeProviderData(nil), store.Spec.Provider.Fake.Data...)}, nil
}

type client struct {
	store string
	data  []configv1alpha1.FakeProviderData
}

var (
	_ providers.Client        = &client{}
	_ providers.ChangeWatcher = &client{}
)

// Get serves the entry with the key and version asked for; without a
// version, the entry that has none.
func (c *client) Get(_ context.Context, ref providers.Ref) (v providers.Value, err error) {
	defer func(start time.Time) { metrics.ObserveProviderCall("fake", "get", start, err) }(time.Now())
	for _, d := range c.data {
		if d.Key == ref.Key && d.Version == ref.Version {
			return providers.Value{Data: []byte(d.Value), Version: d.Version}, nil
		}
	}
	if ref.Version != "" {
		return providers.Value{}, providers.Errorf(providers.NotFound, "version %q of key %q does not exist in %s", ref.Version, ref.Key, c.store)
	}
	return providers.Value{}, providers.Errorf(providers.NotFound, "key %q does not exist in %s", ref.Key, c.store)
}

// Find matches unversioned entries by path prefix and name, at most
// providers.MaxFindResults of them; the fake provider has no tags.
func (c *client) Find(_ context.Context, f providers.Find) (_ map[string]providers.Value, err error) {
	defer func(start time.Time) { metrics.ObserveProviderCall("fake", "find", start, err) }(time.Now())
	if len(f.Tags) > 0 {
		return nil, providers.Errorf(providers.Invalid, "the fake provider has no tags; find by name instead")
	}
	re, err := regexp.Compile(f.NameRegexp)
	if err != nil {
		return nil, providers.Errorf(providers.Invalid, "find.name.regexp %q is not a valid regular expression", f.NameRegexp)
	}
	out := map[string]providers.Value{}
	for _, d := range c.data {
		if d.Version == "" && strings.HasPrefix(d.Key, f.Path) && re.MatchString(d.Key) {
			out[d.Key] = providers.Value{Data: []byte(d.Value)}
		}
	}
	// Bounded like every provider's find, so that a store that works with
	// the fake provider in a demo does not fail with a real one.
	if len(out) > providers.MaxFindResults {
		return nil, providers.Errorf(providers.Invalid, "find under %q in %s matches %d keys, more than %d; narrow find.path or find.name", f.Path, c.store, len(out), providers.MaxFindResults)
	}
	return out, nil
}

func (c *client) Push(context.Context, providers.Push) (string, error) {
	return "", c.readOnly()
}

func (c *client) Delete(context.Context, providers.Delete) error { return c.readOnly() }

func (c *client) readOnly() error {
	return providers.Errorf(providers.Forbidden, "%s uses the fake provider, whose values are its spec: it cannot be pushed to", c.store)
}

func (c *client) Close(context.Context) error { return nil }

// versionKey keys the fake's version IDs: they must change with a value
// and tell nothing of it, so they are a MAC under a key this process
// never shows, not a hash anyone could compare guesses with.
var versionKey = func() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}()

// versionOf is the version ID of an unversioned entry's value.
func versionOf(key, value string) string {
	m := hmac.New(sha256.New, versionKey)
	m.Write([]byte(key))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// WatchChanges reports the initial state of keys (the entries without a
// version), then nothing more: a client's values are its store's spec as
// it was built, and a changed spec builds another client (in process, a
// new store generation marks every reader; out of process, veil-provider
// watches the new client and reports what differs). It returns when ctx
// ends.
func (c *client) WatchChanges(ctx context.Context, keys []string, changed func(providers.KeyChange) error) error {
	// Counted when it starts: a watch lasts, and is no call's latency.
	err := providers.CheckWatchKeys(keys)
	metrics.ObserveProviderCall("fake", "watch", time.Now(), err)
	if err != nil {
		return err
	}
	current := map[string]string{}
	for _, d := range c.data {
		if d.Version == "" {
			current[d.Key] = d.Value
		}
	}
	for _, k := range keys {
		kc := providers.KeyChange{Key: k}
		if v, ok := current[k]; ok {
			kc.Exists, kc.Version = true, providers.KeyVersion{ID: versionOf(k, v)}
		}
		if err := changed(kc); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}
