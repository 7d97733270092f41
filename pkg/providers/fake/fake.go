// Package fake is a provider whose values are written in the store's spec.
// It exists for demos and tests: its values live in etcd with the spec, so
// it must not be used for real secrets.
package fake

import (
	"context"
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

var _ providers.Client = &client{}

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
