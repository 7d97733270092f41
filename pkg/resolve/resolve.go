// Package resolve turns an ExternalSecret into its values: it finds the
// store and gets its client through pkg/stores, checks the ExternalSecret's
// keys against the store's key scope, and reads the remote values through
// the value cache.
package resolve

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	"github.com/veil-dev/veil/pkg/cache"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/stores"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

// Resolver reads the values of ExternalSecrets.
type Resolver struct {
	Stores  *stores.Lookup
	Clients *stores.Clients
	Clock   clock.PassiveClock
	// Cache holds the values read from providers; nil reads every value
	// from its provider.
	Cache *cache.Cache
	// DefaultRefreshInterval is --default-refresh-interval: how old a value
	// may be when neither the ExternalSecret nor its store says.
	DefaultRefreshInterval time.Duration
	// MinRefreshInterval is --min-refresh-interval: no value is read again
	// sooner than this, whatever an ExternalSecret or store asks.
	MinRefreshInterval time.Duration
	// Changes says how old a value may be after a change recorded in an
	// ExternalSecret's status (*changes.Seen); nil ignores them.
	Changes interface {
		MaxAge(es *configv1alpha1.ExternalSecret) (time.Duration, bool)
	}
}

// maxParallelReads bounds the provider reads one ExternalSecret makes at once.
const maxParallelReads = 8

// Resolve reads the values of es. Errors are *providers.Error whose message
// names the ExternalSecret; APIError turns them into API errors.
func (r *Resolver) Resolve(ctx context.Context, es *configv1alpha1.ExternalSecret) (*externalsecrets.ExternalSecretValue, error) {
	v, err := r.resolve(ctx, es)
	if err != nil {
		return nil, providers.Within(err, "ExternalSecret %s/%s", es.Namespace, es.Name)
	}
	return v, nil
}

func (r *Resolver) resolve(ctx context.Context, es *configv1alpha1.ExternalSecret) (*externalsecrets.ExternalSecretValue, error) {
	store, err := r.Stores.For(ctx, es.Namespace, es.Spec.SecretStoreRef)
	if err != nil {
		return nil, err
	}
	if err := store.Scope.CheckExternalSecret(es); err != nil {
		return nil, err
	}
	return r.read(ctx, es, store)
}

// read reads the values of es through store, which es may use.
func (r *Resolver) read(ctx context.Context, es *configv1alpha1.ExternalSecret, store *stores.Store) (*externalsecrets.ExternalSecretValue, error) {
	client, id, err := r.Clients.For(ctx, store, es.Namespace)
	if err != nil {
		return nil, err
	}
	maxAge := r.refreshInterval(es, store)
	// A value changed since: what was read before this process saw the
	// change is read again, whatever the refresh interval. (Who may write
	// an ExternalSecret's status could so make its values be read again
	// once per write; that is within its namespace's provider share, and
	// no tenant role includes that status.)
	// refreshInterval 0 means read once (as in External Secrets
	// Operator): not even a recorded change reads it again.
	if r.Changes != nil && maxAge != NoRefresh {
		if since, ok := r.Changes.MaxAge(es); ok && since < maxAge {
			maxAge = since
		}
	}
	src := &source{cache: r.Cache, client: client, id: id, maxAge: maxAge, clock: r.Clock, es: es, scope: store.Scope}

	// Every data[] entry and extract naming the same remote value costs one read.
	var refs []providers.Ref
	seen := map[providers.Ref]bool{}
	want := func(ref providers.Ref) {
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	for _, d := range es.Spec.DataFrom {
		if d.Extract != nil {
			want(refOf(*d.Extract))
		}
	}
	for _, d := range es.Spec.Data {
		want(refOf(d.RemoteRef))
	}
	if _, ok := client.(providers.MetadataGetter); !ok {
		for _, ref := range refs {
			if ref.Metadata {
				return nil, providers.Errorf(providers.Invalid, "remote key %q asks for metadataPolicy Fetch, but %s (provider %s) cannot read metadata: only Vault KV v2 and AWS stores can; remove metadataPolicy or use such a store",
					ref.Key, store.String(), store.Provider.Name())
			}
		}
	}
	values, err := src.get(ctx, refs)
	if err != nil {
		return nil, err
	}

	data := map[string][]byte{}
	budget := template.NewBudget()
	for i, d := range es.Spec.DataFrom {
		namer, err := newKeyNamer(budget, i, d)
		if err != nil {
			return nil, err
		}
		switch {
		case d.Extract != nil:
			v := values[refOf(*d.Extract)].Data
			if d.Extract.Property != "" {
				if v, err = property(v, d.Extract.Property, d.Extract.Key); err != nil {
					return nil, err
				}
			}
			fs, err := fields(v, d.Extract.Key)
			if err != nil {
				return nil, err
			}
			keys, dropped, err := namer.secretKeys(slices.Collect(maps.Keys(fs)))
			if err != nil {
				return nil, err
			}
			warnDropped(ctx, es, i, "dataFrom.extract found fields", dropped)
			for field, sk := range keys {
				if data[sk], err = decode(fs[field], d.Extract.DecodingStrategy, fmt.Sprintf("field %q of remote key %q", field, d.Extract.Key)); err != nil {
					return nil, err
				}
			}
		case d.Find != nil:
			f := providers.Find{Tags: d.Find.Tags}
			if d.Find.Path != nil {
				f.Path = *d.Find.Path
			}
			if d.Find.Name != nil {
				f.NameRegexp = d.Find.Name.RegExp
			}
			found, err := src.find(ctx, f)
			if err != nil {
				return nil, err
			}
			keys, dropped, err := namer.secretKeys(slices.Collect(maps.Keys(found)))
			if err != nil {
				return nil, err
			}
			warnDropped(ctx, es, i, "dataFrom.find found remote keys", dropped)
			for key, sk := range keys {
				if data[sk], err = decode(found[key].Data, d.Find.DecodingStrategy, fmt.Sprintf("remote key %q", key)); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, d := range es.Spec.Data {
		ref := d.RemoteRef
		v := values[refOf(ref)].Data
		if ref.Property != "" {
			if v, err = property(v, ref.Property, ref.Key); err != nil {
				return nil, err
			}
		}
		if data[d.SecretKey], err = decode(v, ref.DecodingStrategy, fmt.Sprintf("remote key %q", ref.Key)); err != nil {
			return nil, err
		}
	}

	if err := checkSize(data); err != nil {
		return nil, err
	}
	out := &externalsecrets.ExternalSecretValue{
		// An ExternalSecretValue is its ExternalSecret's: the same UID and
		// resource version, so versions compare the same on every replica.
		ObjectMeta: metav1.ObjectMeta{
			Name:              es.Name,
			Namespace:         es.Namespace,
			UID:               es.UID,
			ResourceVersion:   es.ResourceVersion,
			Labels:            es.Labels,
			CreationTimestamp: es.CreationTimestamp,
		},
		Type: "Opaque",
		Data: data,
		Source: externalsecrets.ValueSource{
			StoreRef:  externalsecrets.StoreRef{Kind: string(store.Kind), Name: store.Name},
			Provider:  store.Provider.Name(),
			FetchTime: metav1.NewTime(src.oldest),
		},
	}
	if t := es.Spec.Target; t != nil && t.Template != nil && t.Template.Type != "" {
		out.Type = string(t.Template.Type)
	}
	for _, ref := range refs {
		out.Source.Remote = append(out.Source.Remote, externalsecrets.RemoteValue{Key: ref.Key, Version: values[ref].Version})
	}
	sort.Slice(out.Source.Remote, func(i, j int) bool { return out.Source.Remote[i].Key < out.Source.Remote[j].Key })
	return out, nil
}

// warnDropped tells the reader which names of dataFrom[entry] were left out
// because another took their Secret key (or they had none).
func warnDropped(ctx context.Context, es *configv1alpha1.ExternalSecret, entry int, what string, dropped []string) {
	if len(dropped) > 0 {
		warning.AddWarning(ctx, "", fmt.Sprintf("ExternalSecret %s/%s: dataFrom[%d]: %s that map to the same Secret key; the first in byte order is used, and these are left out: %s",
			es.Namespace, es.Name, entry, what, strings.Join(dropped, ", ")))
	}
}

// refOf is the remote value (or, with metadataPolicy Fetch, the metadata)
// a remote reference reads.
func refOf(r configv1alpha1.ExternalSecretDataRemoteRef) providers.Ref {
	return providers.Ref{Key: r.Key, Version: r.Version, Metadata: r.MetadataPolicy == configv1alpha1.MetadataFetch}
}
