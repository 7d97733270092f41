package resolve

import (
	"context"
	"fmt"
	"math"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/cache"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/stores"
)

// refreshInterval is how old a value read for es may be: its own
// refreshInterval, else its store's defaultRefreshInterval, else
// --default-refresh-interval, and never less than --min-refresh-interval.
//
// Zero means what it means in External Secrets Operator: read once, not
// refreshed. The value is then served from the cache for as long as the
// cache keeps it (--cache-max-ttl), and read again only after that, or when
// the ExternalSecret comes to name other remote keys.
func (r *Resolver) refreshInterval(es *configv1alpha1.ExternalSecret, store *stores.Store) time.Duration {
	d := r.DefaultRefreshInterval
	switch {
	case es.Spec.RefreshInterval != nil:
		d = es.Spec.RefreshInterval.Duration
	case store.Spec.DefaultRefreshInterval != nil:
		d = store.Spec.DefaultRefreshInterval.Duration
	}
	if d <= 0 {
		return NoRefresh
	}
	return max(d, r.MinRefreshInterval)
}

// NoRefresh is the refresh interval of an ExternalSecret that asks not to be
// refreshed: longer than any cache keeps a value.
const NoRefresh = time.Duration(math.MaxInt64)

// source reads the remote values of one ExternalSecret through its store's
// client and the cache, and remembers the oldest value it served.
type source struct {
	cache  *cache.Cache
	client providers.Client
	id     stores.Identity
	maxAge time.Duration
	clock  clock.PassiveClock
	es     *configv1alpha1.ExternalSecret
	// scope gives a find without a path its prefix, and filters what
	// finds return.
	scope  *stores.KeyScope
	oldest time.Time
}

// served notes an entry that is part of the answer: the answer is as old as
// its oldest value, and a value served in place of an unavailable (or
// throttled) provider
// is announced to the client as a warning.
func (s *source) served(ctx context.Context, e cache.Entry, what string) {
	if s.oldest.IsZero() || e.Fetched.Before(s.oldest) {
		s.oldest = e.Fetched
	}
	if e.Stale != nil {
		warning.AddWarning(ctx, "", fmt.Sprintf("ExternalSecret %s/%s: %s is served as read %s ago, older than its refresh interval, because the provider could not be read: %v",
			s.es.Namespace, s.es.Name, what, s.clock.Since(e.Fetched).Round(time.Second), e.Stale))
	}
}

// get returns the values of refs, each at most maxAge old.
func (s *source) get(ctx context.Context, refs []providers.Ref) (map[providers.Ref]providers.Value, error) {
	keys := make([]cache.Key, len(refs))
	for i, ref := range refs {
		keys[i] = s.id.ValueKey(ref)
	}
	entries, err := s.cache.Get(ctx, keys, s.maxAge, func(ctx context.Context, positions []int) []cache.Outcome {
		want := make([]providers.Ref, len(positions))
		for j, i := range positions {
			want[j] = refs[i]
		}
		return readValues(ctx, s.client, want)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[providers.Ref]providers.Value, len(refs))
	for i, e := range entries {
		f, err := unpack(e.Data, 2)
		if err != nil {
			return nil, err
		}
		out[refs[i]] = providers.Value{Version: string(f[0]), Data: f[1]}
		s.served(ctx, e, fmt.Sprintf("remote key %q", refs[i].Key))
	}
	return out, nil
}

// find returns the remote values a dataFrom.find selects, as of at most
// maxAge ago.
func (s *source) find(ctx context.Context, f providers.Find) (map[string]providers.Value, error) {
	f, err := s.scope.Find(f)
	if err != nil {
		return nil, err
	}
	entries, err := s.cache.Get(ctx, []cache.Key{s.id.FindKey(f)}, s.maxAge, func(ctx context.Context, _ []int) []cache.Outcome {
		found, err := s.client.Find(ctx, f)
		if err != nil {
			return []cache.Outcome{{Err: err}}
		}
		var fields [][]byte
		for k, v := range found {
			fields = append(fields, []byte(k), []byte(v.Version), v.Data)
		}
		return []cache.Outcome{{Data: cache.Pack(fields...)}}
	})
	if err != nil {
		return nil, err
	}
	fs, err := unpack(entries[0].Data, -1)
	if err != nil || len(fs)%3 != 0 {
		return nil, providers.Errorf(providers.Unavailable, "a cached find result could not be decoded")
	}
	out := make(map[string]providers.Value, len(fs)/3)
	for i := 0; i < len(fs); i += 3 {
		out[string(fs[i])] = providers.Value{Version: string(fs[i+1]), Data: fs[i+2]}
	}
	s.served(ctx, entries[0], "the result of dataFrom.find")
	return s.scope.Filter(out), nil
}

// readValues reads refs from the provider, in one call when the client
// batches, otherwise a few at a time. Each ref gets its own outcome, so a
// missing key keeps neither the others out of the cache nor their callers
// waiting.
func readValues(ctx context.Context, client providers.Client, refs []providers.Ref) []cache.Outcome {
	out := make([]cache.Outcome, len(refs))
	var values, metadata []int
	for i, ref := range refs {
		if ref.Metadata {
			metadata = append(metadata, i)
		} else {
			values = append(values, i)
		}
	}
	if len(metadata) > 0 {
		mg, ok := client.(providers.MetadataGetter)
		for _, i := range metadata {
			if !ok {
				out[i].Err = providers.Errorf(providers.Invalid, "remote key %q: this store cannot read metadata; remove remoteRef.metadataPolicy", refs[i].Key)
				continue
			}
			v, err := mg.GetMetadata(ctx, refs[i].Key)
			if err != nil {
				out[i].Err = err
			} else {
				out[i].Data = cache.Pack([]byte(v.Version), v.Data)
			}
		}
		if len(values) == 0 {
			return out
		}
		sub := make([]providers.Ref, len(values))
		for j, i := range values {
			sub[j] = refs[i]
		}
		for j, o := range readValues(ctx, client, sub) {
			out[values[j]] = o
		}
		return out
	}
	if b, ok := client.(providers.BatchGetter); ok && len(refs) > 1 {
		got, err := b.GetBatch(ctx, refs)
		for i, ref := range refs {
			v, ok := got[ref]
			switch {
			case err != nil:
				out[i].Err = err
			case !ok:
				out[i].Err = providers.Errorf(providers.NotFound, "remote key %q does not exist", ref.Key)
			default:
				out[i].Data = cache.Pack([]byte(v.Version), v.Data)
			}
		}
		return out
	}
	var g errgroup.Group
	g.SetLimit(maxParallelReads)
	for i, ref := range refs {
		g.Go(func() error {
			v, err := client.Get(ctx, ref)
			if err != nil {
				out[i].Err = err
			} else {
				out[i].Data = cache.Pack([]byte(v.Version), v.Data)
			}
			return nil
		})
	}
	_ = g.Wait() // every function returns nil; failures are per ref
	return out
}

// unpack reverses cache.Pack, expecting n fields (any number when n < 0).
func unpack(b []byte, n int) ([][]byte, error) {
	fields, err := cache.Unpack(b)
	if err != nil || (n >= 0 && len(fields) != n) {
		return nil, providers.Errorf(providers.Unavailable, "a cached value could not be decoded")
	}
	return fields, nil
}
