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
	// ClusterExternalSecrets are read to serve the ExternalSecrets of a
	// ClusterExternalSecret only as it says (clusterowned.go); nil serves
	// none of them.
	ClusterExternalSecrets ClusterExternalSecretGetter
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
	if err := CheckClusterOwned(r.ClusterExternalSecrets, es); err != nil {
		return nil, err
	}
	refs := es.StoreRefs()
	switch {
	case len(refs) == 0:
		return nil, providers.Errorf(providers.Invalid, "names no store: set spec.secretStoreRef, or sourceRef.storeRef in every data and dataFrom entry")
	case len(refs) > configv1alpha1.MaxStoresPerExternalSecret:
		return nil, providers.Errorf(providers.Invalid, "reads from %d stores (spec.secretStoreRef and sourceRef.storeRef), more than the %d one ExternalSecret may: split it into several ExternalSecrets",
			len(refs), configv1alpha1.MaxStoresPerExternalSecret)
	}
	// Every store is found, and the keys asked of it checked against its
	// key scope, before anything is read through any of them: each is
	// held to the rules of spec.secretStoreRef (its namespace, a
	// ClusterSecretStore's conditions and key scope).
	from := make([]storeRead, len(refs))
	for i, ref := range refs {
		store, err := r.Stores.For(ctx, es.Namespace, ref)
		if err != nil {
			return nil, err
		}
		if err := store.Scope.CheckExternalSecret(es.ReadThrough(ref)); err != nil {
			return nil, err
		}
		from[i] = storeRead{ref: ref, store: store}
	}
	return r.readFrom(ctx, es, from)
}

// storeRead is one store an ExternalSecret reads from.
type storeRead struct {
	ref   configv1alpha1.SecretStoreRef
	store *stores.Store
}

// readFrom reads the values of es, each entry through its store in from,
// all of which es may use.
func (r *Resolver) readFrom(ctx context.Context, es *configv1alpha1.ExternalSecret, from []storeRead) (*externalsecrets.ExternalSecretValue, error) {
	srcs := map[configv1alpha1.SecretStoreRef]*source{}
	type readSet struct {
		refs []providers.Ref
		seen map[providers.Ref]bool
	}
	sets := map[configv1alpha1.SecretStoreRef]*readSet{}
	for _, f := range from {
		client, id, err := r.Clients.For(ctx, f.store, es.Namespace)
		if err != nil {
			return nil, err
		}
		maxAge := r.refreshInterval(es, f.store)
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
		srcs[f.ref] = &source{cache: r.Cache, client: client, id: id, maxAge: maxAge, clock: r.Clock, es: es, scope: f.store.Scope}
		sets[f.ref] = &readSet{seen: map[providers.Ref]bool{}}
	}
	// storeOf is the source of an entry's store; every store es names is in from.
	storeOf := func(ref configv1alpha1.SecretStoreRef, ok bool) (*source, configv1alpha1.SecretStoreRef, error) {
		if s := srcs[ref]; ok && s != nil {
			return s, ref, nil
		}
		return nil, ref, providers.Errorf(providers.Invalid, "an entry names no store, or one not read: set spec.secretStoreRef or its sourceRef.storeRef")
	}

	// Every data[] entry and extract naming the same remote value of the
	// same store costs one read.
	want := func(store configv1alpha1.SecretStoreRef, ref providers.Ref) {
		set := sets[store]
		if !set.seen[ref] {
			set.seen[ref] = true
			set.refs = append(set.refs, ref)
		}
	}
	for i, d := range es.Spec.DataFrom {
		_, store, err := storeOf(es.DataFromStore(i))
		if err != nil {
			return nil, err
		}
		if d.Extract != nil {
			want(store, refOf(*d.Extract))
		}
	}
	for i, d := range es.Spec.Data {
		_, store, err := storeOf(es.DataStore(i))
		if err != nil {
			return nil, err
		}
		want(store, refOf(d.RemoteRef))
	}
	values := map[configv1alpha1.SecretStoreRef]map[providers.Ref]providers.Value{}
	for _, f := range from {
		src, refs := srcs[f.ref], sets[f.ref].refs
		if _, ok := src.client.(providers.MetadataGetter); !ok {
			for _, ref := range refs {
				if ref.Metadata {
					return nil, providers.Errorf(providers.Invalid, "remote key %q asks for metadataPolicy Fetch, but %s (provider %s) cannot read metadata: only Vault KV v2 and AWS stores can; remove metadataPolicy or use such a store",
						ref.Key, f.store.String(), f.store.Provider.Name())
				}
			}
		}
		v, err := src.get(ctx, refs)
		if err != nil {
			return nil, err
		}
		values[f.ref] = v
	}

	data := map[string][]byte{}
	budget := template.NewBudget()
	for i, d := range es.Spec.DataFrom {
		src, store, err := storeOf(es.DataFromStore(i))
		if err != nil {
			return nil, err
		}
		namer, err := newKeyNamer(budget, i, d)
		if err != nil {
			return nil, err
		}
		switch {
		case d.Extract != nil:
			v := values[store][refOf(*d.Extract)].Data
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
	for i, d := range es.Spec.Data {
		_, store, err := storeOf(es.DataStore(i))
		if err != nil {
			return nil, err
		}
		ref := d.RemoteRef
		v := values[store][refOf(ref)].Data
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
	// The source is the first store (spec.secretStoreRef when an entry
	// reads through it); the values are as old as the oldest of any store.
	first := from[0]
	var oldest time.Time
	for _, src := range srcs {
		if !src.oldest.IsZero() && (oldest.IsZero() || src.oldest.Before(oldest)) {
			oldest = src.oldest
		}
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
			StoreRef:  externalsecrets.StoreRef{Kind: string(first.store.Kind), Name: first.store.Name},
			Provider:  first.store.Provider.Name(),
			FetchTime: metav1.NewTime(oldest),
		},
	}
	if t := es.Spec.Target; t != nil && t.Template != nil && t.Template.Type != "" {
		out.Type = string(t.Template.Type)
	}
	for _, f := range from {
		for _, ref := range sets[f.ref].refs {
			out.Source.Remote = append(out.Source.Remote, externalsecrets.RemoteValue{Key: ref.Key, Version: values[f.ref][ref].Version})
		}
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
