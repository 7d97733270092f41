package changes

import (
	"context"
	"slices"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/stores"
)

// Detector looks, every Interval, at the current version of each remote
// key some ExternalSecret reads, store by store, and marks the readers of
// those that changed since the last look. It asks each store once a cycle
// (providers.VersionLister: one call a key on Vault KV v2, one a ten or
// fifty keys on AWS), however many ExternalSecrets and readers there are;
// only the replica holding the lease runs it. A store whose spec changed
// has all its readers marked.
//
// A store whose provider detects changes itself (its client is a
// providers.ChangeWatcher, and Clients a WatcherSource) is followed by a
// change stream instead: a cycle only checks that the stream runs for the
// store and keys as they are (starting a new one when they changed, whose
// initial state is compared with what was known), and each change the
// stream reports marks its readers at once. Its cost is the changes, not
// the keys. A stream that fails is replaced by one look at the versions
// (if the provider lists them), then a new stream the cycle after.
type Detector struct {
	ExternalSecrets configlisters.ExternalSecretLister
	Stores          StoreLookup
	Clients         VersionReader
	Marker          *Marker
	Interval        time.Duration
	// MaxCallsPerStore bounds the provider calls one cycle makes through
	// one store (0: only the store's budget bounds them), so detection
	// never takes the budget its readers need; the keys past it are
	// looked at in the next cycles.
	MaxCallsPerStore int
	// Handover is how long the Lease may go from one leader to the next
	// (its duration): changes in that gap are caught by their time.
	Handover time.Duration

	last map[Store]*storeState
	// subs are the stores followed by a change stream, each owning its
	// storeState while it runs.
	subs map[Store]*subscription
	// horizon: a key seen for the first time counts as changed if its
	// provider changed it after this. A reader may have cached it before
	// then without this process knowing the version it read.
	horizon time.Time
}

// clockSkew is how far a provider's clock may be from ours, for the
// horizon only: a key first seen and changed within it is read again.
const clockSkew = 30 * time.Second

// StoreLookup finds the store a namespace reads through (*stores.Lookup).
type StoreLookup interface {
	For(ctx context.Context, namespace string, ref configv1alpha1.SecretStoreRef) (*stores.Store, error)
}

// VersionReader reads key versions through a store's client, within its
// budget (*stores.Clients).
type VersionReader interface {
	Versions(ctx context.Context, store *stores.Store, namespace string, keys []string, maxCalls int) (map[string]providers.KeyVersion, int, bool, error)
}

// WatcherSource gives the change watcher of a store's client, when its
// provider detects changes itself (*stores.Clients). A Detector whose
// Clients is one follows such stores by their change stream instead of
// asking for their versions each cycle.
type WatcherSource interface {
	Watcher(store *stores.Store, namespace string) (providers.ChangeWatcher, bool)
}

// subscription is one store's change stream, as a cycle started it.
type subscription struct {
	uid          types.UID
	generation   int64
	registration string
	keys         []string
	cancel       context.CancelFunc
	// done is closed when the stream ended; err says why, if it was not
	// stopped.
	done chan struct{}
	err  error
}

// matches says whether sub still follows store's keys as they are, and
// runs.
func (sub *subscription) matches(store *stores.Store, keys []string) bool {
	select {
	case <-sub.done:
		return false
	default:
	}
	return sub.uid == store.UID && sub.generation == store.Generation && sub.registration == store.Registration && slices.Equal(sub.keys, keys)
}

// storeState is what the last cycle saw of one store.
type storeState struct {
	uid        types.UID
	generation int64
	// versions is nil until the store's keys were first read.
	versions map[string]providers.KeyVersion
	// cursor is where the next cycle starts in the sorted keys: when the
	// store's budget stops a cycle short, the next one goes on from there,
	// so every key is looked at in turn.
	cursor string
	// since holds, for each key wanted but not looked at yet, the horizon
	// of the cycle that first wanted it: a change after it may not have
	// been seen by a reader.
	since map[string]time.Time
}

// readers are the ExternalSecrets that read through one store.
type readers struct {
	keys map[string]bool
	// namespace is one namespace that reads through the store, on whose
	// behalf the store is looked up (a ClusterSecretStore must admit it).
	namespaces []string
}

// Run runs cycles until ctx ends.
func (d *Detector) Run(ctx context.Context) {
	d.last = map[Store]*storeState{}
	d.subs = map[Store]*subscription{}
	// A new leader knows no versions: whatever changed since the last
	// leader's last look (an interval and a handover ago) is news.
	d.horizon = time.Now().Add(-d.Interval - d.Handover - clockSkew)
	defer d.stopAll()
	wait.UntilWithContext(ctx, d.cycle, d.Interval)
}

// stopAll ends every change stream (the lease is lost, or the process
// stops) and waits for them.
func (d *Detector) stopAll() {
	for s := range d.subs {
		d.stop(s)
	}
}

// stop ends the change stream of s, if any, and waits for it; it says
// whether the stream had failed on its own.
func (d *Detector) stop(s Store) (failed bool) {
	sub := d.subs[s]
	if sub == nil {
		return false
	}
	delete(d.subs, s)
	select {
	case <-sub.done:
		failed = true
	default:
	}
	sub.cancel()
	<-sub.done
	return failed
}

func (d *Detector) cycle(ctx context.Context) {
	start := time.Now()
	defer func() {
		metrics.ChangeDetectionSeconds.Observe(time.Since(start).Seconds())
		metrics.ChangeDetectionCycles.Inc()
		// Keys first seen next cycle may have been read since this one
		// began.
		d.horizon = start.Add(-clockSkew)
	}()
	if d.subs == nil {
		d.subs = map[Store]*subscription{}
	}
	ess, err := d.ExternalSecrets.List(labels.Everything())
	if err != nil {
		klog.ErrorS(err, "Listing ExternalSecrets for change detection")
		return
	}
	byStore := map[Store]*readers{}
	for _, es := range ess {
		if !d.Marker.serves(es) {
			continue
		}
		for s, through := range Reads(es) {
			r := byStore[s]
			if r == nil {
				r = &readers{keys: map[string]bool{}}
				byStore[s] = r
			}
			if !slices.Contains(r.namespaces, es.Namespace) && len(r.namespaces) < 3 {
				r.namespaces = append(r.namespaces, es.Namespace)
			}
			for _, k := range Keys(through) {
				// Only keys its namespace may read: detection is never a way
				// to learn about keys outside a tenant's scope.
				if d.Marker.Admits == nil || d.Marker.Admits(ctx, es.Namespace, s, k) {
					r.keys[k] = true
				}
			}
		}
	}
	for s := range d.last {
		if byStore[s] == nil {
			d.stop(s)
			delete(d.last, s) // no reader left
		}
	}
	for s, r := range byStore {
		if ctx.Err() != nil {
			return
		}
		d.look(ctx, s, r)
	}
}

// look compares one store's keys with the last cycle's and marks readers.
func (d *Detector) look(ctx context.Context, s Store, r *readers) {
	var (
		store *stores.Store
		ns    string
		err   error
	)
	for _, ns = range r.namespaces {
		if store, err = d.Stores.For(ctx, ns, configv1alpha1.SecretStoreRef{Kind: s.Kind, Name: s.Name}); err == nil {
			break
		}
	}
	if store == nil {
		// Nor followed: no reader may use it now.
		d.stop(s)
		klog.V(4).InfoS("Store not usable for change detection", "store", s.String(), "err", err)
		return
	}
	keys := make([]string, 0, len(r.keys))
	for k := range r.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// A store followed by its change stream costs a cycle nothing, as
	// long as the stream runs for the store and keys as they are.
	// Otherwise the stream is stopped before its state is touched; one
	// that failed makes this cycle look by versions (when the provider
	// lists them) and the next one try a stream again.
	streamFailed := false
	if sub := d.subs[s]; sub != nil {
		if sub.matches(store, keys) {
			return
		}
		streamFailed = d.stop(s)
	}
	st := d.last[s]
	horizon := d.horizon
	if st != nil && st.uid == store.UID && st.generation != store.Generation {
		// Every value read through the old spec may differ. The readers
		// read everything again (a new spec is a new cache identity), so
		// only changes after now are news.
		d.mark(ctx, s, nil, configv1alpha1.ValueChangeStoreChanged)
		horizon = time.Now()
	}
	if st == nil || st.uid != store.UID || st.generation != store.Generation {
		st = &storeState{uid: store.UID, generation: store.Generation}
		d.last[s] = st
	}

	if st.since == nil {
		st.since = map[string]time.Time{}
	}
	for _, k := range keys {
		if _, known := st.versions[k]; !known {
			if _, waiting := st.since[k]; !waiting {
				st.since[k] = horizon
			}
		}
	}
	// Keys no reader names any more are forgotten.
	for k := range st.versions {
		if !r.keys[k] {
			delete(st.versions, k)
		}
	}
	for k := range st.since {
		if !r.keys[k] {
			delete(st.since, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	if ws, ok := d.Clients.(WatcherSource); ok && !streamFailed {
		if cw, ok := ws.Watcher(store, ns); ok {
			d.follow(ctx, s, store, st, keys, cw)
			return
		}
	}
	// Start where the last cycle stopped.
	start, _ := slices.BinarySearch(keys, st.cursor)
	keys = slices.Concat(keys[start:], keys[:start])
	versions, looked, ok, err := d.Clients.Versions(ctx, store, ns, keys, d.MaxCallsPerStore)
	if !ok {
		return // the provider cannot tell; refresh intervals apply
	}
	if err != nil {
		metrics.ChangeDetectionErrors.WithLabelValues(string(providers.ReasonOf(err))).Inc()
		klog.V(2).InfoS("Change detection could not read every version", "store", s.String(), "looked", looked, "keys", len(keys), "err", err)
	}
	st.cursor = ""
	if looked < len(keys) {
		st.cursor = keys[looked]
	}
	d.detected(ctx, s, st.compare(keys[:looked], versions))
}

// compare records the versions of keys now (versions has those that
// exist) and returns the keys that changed since st last saw them.
func (st *storeState) compare(keys []string, versions map[string]providers.KeyVersion) []string {
	var changed []string
	for _, k := range keys {
		now, exists := versions[k]
		before, known := st.versions[k]
		switch {
		case known:
			if exists && !newer(before, now) {
				continue
			}
			// A new version, or deleted.
		case exists:
			// First seen: news only if changed since readers may have
			// read it without this process knowing which version.
			if !now.Changed.After(st.since[k]) {
				continue
			}
		default:
			continue
		}
		changed = append(changed, k)
	}
	if st.versions == nil {
		st.versions = map[string]providers.KeyVersion{}
	}
	for _, k := range keys {
		if v, ok := versions[k]; ok {
			st.versions[k] = v
			delete(st.since, k)
		} else {
			delete(st.versions, k)
		}
	}
	return changed
}

// newer says whether now is another version of a key than before. IDs of
// different scopes cannot be compared (two processes' keyed hashes): then
// only a later change time tells.
func newer(before, now providers.KeyVersion) bool {
	if before.Scope != now.Scope {
		return now.Changed.After(before.Changed)
	}
	return before.ID != now.ID
}

// apply records a change a stream reported after its initial state, and
// says whether it is news: a version other than the one known, a key
// deleted, or a key created since the stream began.
func (st *storeState) apply(kc providers.KeyChange) bool {
	before, known := st.versions[kc.Key]
	if st.versions == nil {
		st.versions = map[string]providers.KeyVersion{}
	}
	if kc.Exists {
		st.versions[kc.Key] = kc.Version
		delete(st.since, kc.Key)
	} else {
		delete(st.versions, kc.Key)
	}
	if known && kc.Exists {
		return newer(before, kc.Version)
	}
	return known || kc.Exists
}

// detected marks the readers of keys changed at the provider.
func (d *Detector) detected(ctx context.Context, s Store, changed []string) {
	if len(changed) > 0 {
		metrics.ValueChangesDetected.Add(float64(len(changed)))
		d.mark(ctx, s, changed, configv1alpha1.ValueChangeDetected)
	}
}

// follow starts the change stream of a store, for keys, owning st until
// it is stopped. Its initial state is compared with st as a cycle's
// versions would be (so a change since the last look, or the last
// stream, is news); each change after it marks the readers of its key at
// once, without waiting for a cycle. Readers are marked exactly as
// polling marks them.
func (d *Detector) follow(ctx context.Context, s Store, store *stores.Store, st *storeState, keys []string, cw providers.ChangeWatcher) {
	ctx, cancel := context.WithCancel(ctx)
	sub := &subscription{uid: store.UID, generation: store.Generation, registration: store.Registration, keys: keys, cancel: cancel, done: make(chan struct{})}
	d.subs[s] = sub
	metrics.ChangeDetectionStreams.Inc()
	// What the stream asks its provider (the initial state of keys it
	// does not know, a version after a change) goes at the pace polling
	// would: at most MaxCallsPerStore calls an Interval.
	if d.MaxCallsPerStore > 0 && d.Interval > 0 {
		pace := rate.NewLimiter(rate.Limit(float64(d.MaxCallsPerStore)/d.Interval.Seconds()), d.MaxCallsPerStore)
		ctx = providers.WithAdmit(ctx, func() (func(), error) {
			if err := pace.Wait(ctx); err != nil {
				return nil, err
			}
			return func() {}, nil
		})
	}
	go func() {
		defer close(sub.done)
		defer metrics.ChangeDetectionStreams.Dec()
		initial := make(map[string]providers.KeyVersion, len(keys))
		n := 0
		err := cw.WatchChanges(ctx, keys, func(kc providers.KeyChange) error {
			if n < len(keys) {
				if kc.Key != keys[n] {
					return providers.Errorf(providers.Invalid, "the change stream of %s sent an initial state out of the order asked", s.String())
				}
				n++
				if kc.Exists {
					initial[kc.Key] = kc.Version
				}
				if n == len(keys) {
					d.detected(ctx, s, st.compare(keys, initial))
				}
				return nil
			}
			if st.apply(kc) {
				d.detected(ctx, s, []string{kc.Key})
			}
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = providers.Errorf(providers.Unavailable, "the change stream of %s ended", s.String())
		}
		sub.err = err
		metrics.ChangeDetectionErrors.WithLabelValues(string(providers.ReasonOf(err))).Inc()
		klog.V(2).InfoS("Change stream ended; the next cycles look by versions, then follow a new stream", "store", s.String(), "err", err)
	}()
}

func (d *Detector) mark(ctx context.Context, s Store, keys []string, cause configv1alpha1.ValueChangeCause) {
	n, err := d.Marker.Mark(ctx, s, keys, cause)
	metrics.ValueChangesMarked.WithLabelValues(string(cause)).Add(float64(n))
	if err != nil {
		klog.ErrorS(err, "Recording a value change", "store", s.String(), "cause", cause)
	}
}
