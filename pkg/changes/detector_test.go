package changes

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/stores"
)

// oneStore is a lookup that finds the SecretStore "vault" in any namespace.
type oneStore struct{ generation int64 }

func (l *oneStore) For(_ context.Context, ns string, ref configv1alpha1.SecretStoreRef) (*stores.Store, error) {
	if ref.Name != "vault" {
		return nil, providers.Errorf(providers.NotFound, "no store %s", ref.Name)
	}
	return &stores.Store{Store: providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: ns, Name: "vault", Generation: l.generation}, UID: types.UID("uid-" + ns)}, nil
}

// remoteVersions answers Versions from a map, budget keys a cycle at most.
type remoteVersions struct {
	now    map[string]providers.KeyVersion
	budget int
	asked  [][]string
}

func (r *remoteVersions) Versions(_ context.Context, _ *stores.Store, _ string, keys []string, maxCalls int) (map[string]providers.KeyVersion, int, bool, error) {
	looked := keys
	var err error
	if maxCalls > 0 && len(looked) > maxCalls {
		looked = looked[:maxCalls] // one key a call
	}
	if r.budget > 0 && len(looked) > r.budget {
		looked = looked[:r.budget]
		err = providers.Errorf(providers.Throttled, "over budget")
	}
	r.asked = append(r.asked, looked)
	out := map[string]providers.KeyVersion{}
	for _, k := range looked {
		if v, ok := r.now[k]; ok {
			out[k] = v
		}
	}
	return out, len(looked), true, err
}

func version(id string, changed time.Time) providers.KeyVersion {
	return providers.KeyVersion{ID: id, Changed: changed}
}

func TestDetectorMarksTheReadersOfWhatChanged(t *testing.T) {
	long := time.Now().Add(-time.Hour)
	m, p := newMarker(t,
		externalSecret("a", "db", storeRef("vault"), "db"),
		externalSecret("a", "api", storeRef("vault"), "api"),
		externalSecret("a", "fresh", storeRef("vault"), "fresh"),
	)
	remote := &remoteVersions{now: map[string]providers.KeyVersion{
		"db":    version("1", long),
		"api":   version("1", long),
		"fresh": version("1", time.Now()), // written a moment ago
	}}
	lookup := &oneStore{generation: 1}
	d := &Detector{ExternalSecrets: m.ExternalSecrets, Stores: lookup, Clients: remote, Marker: m, last: map[Store]*storeState{}, horizon: time.Now().Add(-time.Minute)}
	ctx := context.Background()

	d.cycle(ctx)
	if got := p.names(); !slices.Equal(got, []string{"a/fresh"}) {
		t.Fatalf("first look marked %v; want only the key changed since readers may have read it", got)
	}

	p.reset()
	remote.now["db"] = version("2", time.Now())
	delete(remote.now, "api")
	d.cycle(ctx)
	if got := p.names(); !slices.Equal(got, []string{"a/api", "a/db"}) {
		t.Fatalf("marked %v after db changed and api was deleted", got)
	}
	if c := p.change("a/db"); c["cause"] != "Detected" {
		t.Errorf("cause %v", c["cause"])
	}

	p.reset()
	d.cycle(ctx)
	if got := p.names(); len(got) != 0 {
		t.Fatalf("nothing changed, and %v were marked", got)
	}

	p.reset()
	lookup.generation = 2
	d.cycle(ctx)
	if got := p.names(); !slices.Equal(got, []string{"a/api", "a/db", "a/fresh"}) {
		t.Fatalf("a new store spec marked %v, want every reader", got)
	}
	if c := p.change("a/db"); c["cause"] != "StoreChanged" || c["keys"] != nil {
		t.Errorf("store change recorded as %v", c)
	}
}

// TestDetectorStaysWithinTheStoresBudget: when the store's budget stops a
// cycle short, the keys not looked at are neither changed nor deleted, and
// the next cycles go on from there until every key was looked at.
// TestVersionScopes: versions of different scopes (two processes' keyed
// hashes) are not compared: a key whose scope moved has changed only if
// its change time moved on.
func TestVersionScopes(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	for _, c := range []struct {
		name        string
		before, now providers.KeyVersion
		want        bool
	}{
		{"same scope, same ID", providers.KeyVersion{ID: "a", Scope: "p1"}, providers.KeyVersion{ID: "a", Scope: "p1"}, false},
		{"same scope, another ID", providers.KeyVersion{ID: "a", Scope: "p1"}, providers.KeyVersion{ID: "b", Scope: "p1"}, true},
		{"another scope, no times", providers.KeyVersion{ID: "a", Scope: "p1"}, providers.KeyVersion{ID: "b", Scope: "p2"}, false},
		{"another scope, same time", providers.KeyVersion{ID: "a", Scope: "p1", Changed: t0}, providers.KeyVersion{ID: "b", Scope: "p2", Changed: t0}, false},
		{"another scope, later time", providers.KeyVersion{ID: "a", Scope: "p1", Changed: t0}, providers.KeyVersion{ID: "b", Scope: "p2", Changed: t0.Add(time.Second)}, true},
	} {
		st := &storeState{versions: map[string]providers.KeyVersion{"k": c.before}}
		if got := st.compare([]string{"k"}, map[string]providers.KeyVersion{"k": c.now}); (len(got) == 1) != c.want {
			t.Errorf("%s: compare says changed %v, want %v", c.name, got, c.want)
		}
		if st.versions["k"] != c.now {
			t.Errorf("%s: compare kept %+v, want the version now", c.name, st.versions["k"])
		}
		st = &storeState{versions: map[string]providers.KeyVersion{"k": c.before}}
		if got := st.apply(providers.KeyChange{Key: "k", Exists: true, Version: c.now}); got != c.want {
			t.Errorf("%s: apply says news %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDetectorStaysWithinTheStoresBudget(t *testing.T) {
	t.Run("budget", func(t *testing.T) { detectWithin(t, 2, 0) })
	t.Run("calls per store", func(t *testing.T) { detectWithin(t, 0, 2) })
}

// detectWithin: five keys, each cycle stopped after two by the store's
// budget or by MaxCallsPerStore.
func detectWithin(t *testing.T, budget, maxCalls int) {
	long := time.Now().Add(-time.Hour)
	var ess []*configv1alpha1.ExternalSecret
	remote := &remoteVersions{now: map[string]providers.KeyVersion{}, budget: budget}
	for i := range 5 {
		k := fmt.Sprintf("k%d", i)
		ess = append(ess, externalSecret("a", k, storeRef("vault"), k))
		remote.now[k] = version("1", long)
	}
	m, p := newMarker(t, ess...)
	d := &Detector{ExternalSecrets: m.ExternalSecrets, Stores: &oneStore{generation: 1}, Clients: remote, Marker: m, MaxCallsPerStore: maxCalls, last: map[Store]*storeState{}, horizon: time.Now().Add(-time.Minute)}
	ctx := context.Background()
	for range 3 {
		d.cycle(ctx)
	}
	var seen []string
	for _, a := range remote.asked {
		if len(a) > 2 {
			t.Fatalf("asked about %d keys in one cycle with a budget of 2", len(a))
		}
		seen = append(seen, a...)
	}
	slices.Sort(seen)
	if !slices.Equal(slices.Compact(seen), []string{"k0", "k1", "k2", "k3", "k4"}) {
		t.Fatalf("three cycles of two looked at %v", seen)
	}
	if got := p.names(); len(got) != 0 {
		t.Fatalf("keys not yet looked at were taken for changed: %v", got)
	}
	remote.now["k4"] = version("2", time.Now())
	for range 3 {
		d.cycle(ctx)
	}
	if got := p.names(); !slices.Equal(got, []string{"a/k4"}) {
		t.Fatalf("marked %v, want the change of k4 found within three cycles", got)
	}
}

// streams is a VersionReader and WatcherSource: its watches report what
// the test sends them; its Versions count the polls.
type streams struct {
	remoteVersions
	mu sync.Mutex
	// open are the running watches, by their keys (joined by ",").
	open map[string]chan providers.KeyChange
	// opened counts watches started; fail makes the running ones fail.
	opened atomic.Int64
	fail   chan error
	ended  atomic.Int64
	// admits, when set, is how many calls each watch asks its context to
	// admit when it starts; admitted records the answers.
	admits   int
	admitted []error
}

func (s *streams) Watcher(*stores.Store, string) (providers.ChangeWatcher, bool) { return s, true }

func (s *streams) WatchChanges(ctx context.Context, keys []string, changed func(providers.KeyChange) error) error {
	s.opened.Add(1)
	defer s.ended.Add(1)
	for range s.admits {
		done, err := providers.AdmitCall(ctx)
		if err == nil {
			done()
		}
		s.mu.Lock()
		s.admitted = append(s.admitted, err)
		s.mu.Unlock()
	}
	ch := make(chan providers.KeyChange, 16)
	id := strings.Join(keys, ",")
	s.mu.Lock()
	s.open[id] = ch
	initial := make([]providers.KeyChange, 0, len(keys))
	for _, k := range keys {
		v, ok := s.now[k]
		initial = append(initial, providers.KeyChange{Key: k, Exists: ok, Version: v})
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.open, id)
		s.mu.Unlock()
	}()
	for _, kc := range initial {
		if err := changed(kc); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-s.fail:
			return err
		case kc := <-ch:
			if err := changed(kc); err != nil {
				return err
			}
		}
	}
}

// send makes kc true at the provider, and reports it on the watch of
// keys, once it runs.
func (s *streams) send(t *testing.T, keys string, kc providers.KeyChange) {
	t.Helper()
	s.mu.Lock()
	if kc.Exists {
		s.now[kc.Key] = kc.Version
	} else {
		delete(s.now, kc.Key)
	}
	s.mu.Unlock()
	var ch chan providers.KeyChange
	waitFor(t, "a watch of "+keys, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		ch = s.open[keys]
		return ch != nil
	})
	ch <- kc
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A store whose provider detects changes is followed by its stream: the
// readers of a changed key are marked as the change arrives, with no
// cycle and no Versions call; cycles leave a running stream alone, start
// a new one when the keys change, and look by versions once after a
// stream failed.
func TestDetectorFollowsChangeStreams(t *testing.T) {
	long := time.Now().Add(-time.Hour)
	m, p := newMarker(t,
		externalSecret("a", "db", storeRef("vault"), "db"),
		externalSecret("a", "api", storeRef("vault"), "api"),
		externalSecret("a", "late", storeRef("vault"), "late"),
	)
	var admitLate atomic.Bool
	m.Admits = func(_ context.Context, _ string, _ Store, key string) bool { return key != "late" || admitLate.Load() }
	src := &streams{remoteVersions: remoteVersions{now: map[string]providers.KeyVersion{
		"db": version("1", long), "api": version("1", long), "late": version("1", long),
	}}, open: map[string]chan providers.KeyChange{}, fail: make(chan error, 1)}
	d := &Detector{ExternalSecrets: m.ExternalSecrets, Stores: &oneStore{generation: 1}, Clients: src, Marker: m, last: map[Store]*storeState{}, horizon: time.Now().Add(-time.Minute)}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		d.stopAll()
	}()

	d.cycle(ctx)
	src.send(t, "api,db", providers.KeyChange{Key: "db", Exists: true, Version: version("2", time.Now())})
	waitFor(t, "the readers of db marked", func() bool { return slices.Equal(p.names(), []string{"a/db"}) })
	if c := p.change("a/db"); c["cause"] != "Detected" {
		t.Errorf("cause %v", c["cause"])
	}
	// The same version again, and a deletion.
	p.reset()
	src.send(t, "api,db", providers.KeyChange{Key: "db", Exists: true, Version: version("2", time.Now())})
	src.send(t, "api,db", providers.KeyChange{Key: "api"})
	waitFor(t, "the readers of the deleted api marked", func() bool { return slices.Equal(p.names(), []string{"a/api"}) })

	// Cycles leave the stream running.
	d.cycle(ctx)
	d.cycle(ctx)
	if n := src.opened.Load(); n != 1 {
		t.Errorf("%d watches opened by three cycles over the same keys, want 1", n)
	}
	// A new key read: a new stream over every key, whose initial state
	// brings nothing new (late has not changed since readers read it).
	p.reset()
	admitLate.Store(true)
	d.cycle(ctx)
	if n := src.ended.Load(); n != 1 {
		t.Errorf("after the keys changed, %d watches ended, want the first", n)
	}
	waitFor(t, "a second watch", func() bool { return src.opened.Load() == 2 })
	src.send(t, "api,db,late", providers.KeyChange{Key: "late", Exists: true, Version: version("2", time.Now())})
	waitFor(t, "the readers of late marked", func() bool { return slices.Equal(p.names(), []string{"a/late"}) })
	if len(src.asked) != 0 {
		t.Fatalf("Versions was asked %v for a store followed by its stream", src.asked)
	}

	// The stream fails: the next cycle looks by versions, and finds db
	// changed meanwhile; the one after follows a new stream.
	p.reset()
	src.mu.Lock()
	src.now["db"] = version("3", time.Now())
	src.mu.Unlock()
	src.fail <- providers.Errorf(providers.Unavailable, "the provider went away")
	waitFor(t, "the failed stream ends", func() bool { return src.ended.Load() == 2 })
	d.cycle(ctx)
	if len(src.asked) != 1 || !slices.Equal(p.names(), []string{"a/db"}) {
		t.Fatalf("after the stream failed, Versions asked %v and %v marked; want one look finding db", src.asked, p.names())
	}
	d.cycle(ctx)
	waitFor(t, "a third watch", func() bool { return src.opened.Load() == 3 })
	if len(src.asked) != 1 {
		t.Errorf("the cycle after a look by versions asked Versions again: %v", src.asked)
	}
	// A change after the new stream's initial state: once its readers
	// are marked, the initial state has been handled too.
	src.send(t, "api,db,late", providers.KeyChange{Key: "late", Exists: true, Version: version("3", time.Now())})
	waitFor(t, "the readers of late marked", func() bool { return slices.Contains(p.names(), "a/late") })
	if got := p.names(); !slices.Equal(got, []string{"a/db", "a/late"}) {
		t.Errorf("marked %v; the new stream's initial state should bring nothing (db's change was marked by the look already)", got)
	}
}

// A store no reader may use any more is not followed either.
func TestDetectorStopsFollowingAStoreNobodyMayUse(t *testing.T) {
	m, _ := newMarker(t, externalSecret("a", "db", storeRef("vault"), "db"))
	src := &streams{remoteVersions: remoteVersions{now: map[string]providers.KeyVersion{}}, open: map[string]chan providers.KeyChange{}, fail: make(chan error, 1)}
	lookup := &switchableStore{oneStore: oneStore{generation: 1}}
	d := &Detector{ExternalSecrets: m.ExternalSecrets, Stores: lookup, Clients: src, Marker: m, last: map[Store]*storeState{}, horizon: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		d.stopAll()
	}()
	d.cycle(ctx)
	waitFor(t, "a stream", func() bool { return src.opened.Load() == 1 })
	lookup.gone.Store(true)
	d.cycle(ctx)
	if src.ended.Load() != 1 {
		t.Error("the stream of a store no reader may use went on")
	}
}

// switchableStore is oneStore until gone, then no store at all.
type switchableStore struct {
	oneStore
	gone atomic.Bool
}

func (l *switchableStore) For(ctx context.Context, ns string, ref configv1alpha1.SecretStoreRef) (*stores.Store, error) {
	if l.gone.Load() {
		return nil, providers.Errorf(providers.Forbidden, "namespace %s may not use %s", ns, ref.Name)
	}
	return l.oneStore.For(ctx, ns, ref)
}

// The streams are the leader's: when it loses the Lease (Run's context
// ends), Run returns only once every stream it opened has ended, so a
// former leader follows no store.
func TestDetectorLosingTheLeaseEndsItsStreams(t *testing.T) {
	m, _ := newMarker(t, externalSecret("a", "db", storeRef("vault"), "db"))
	src := &streams{remoteVersions: remoteVersions{now: map[string]providers.KeyVersion{}}, open: map[string]chan providers.KeyChange{}, fail: make(chan error, 1)}
	d := &Detector{ExternalSecrets: m.ExternalSecrets, Stores: &oneStore{generation: 1}, Clients: src, Marker: m, Interval: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		d.Run(ctx)
	}()
	waitFor(t, "the leader opens a stream", func() bool { return src.opened.Load() == 1 })
	cancel()
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return once its context ended")
	}
	if src.ended.Load() != 1 {
		t.Errorf("Run returned with %d of its %d streams still open", src.opened.Load()-src.ended.Load(), src.opened.Load())
	}
}

// TestDetectorSkipsExternalSecretsNotServed: an ExternalSecret whose values
// are not served (a ClusterExternalSecret's that is not as it says) has
// its keys neither watched nor marked, even when another ExternalSecret
// reads the same key and is told of its change.
func TestDetectorSkipsExternalSecretsNotServed(t *testing.T) {
	m, p := newMarker(t,
		externalSecret("a", "forged", storeRef("vault"), "db", "only-forged"),
		externalSecret("a", "app", storeRef("vault"), "db"),
	)
	m.Serves = func(es *configv1alpha1.ExternalSecret) bool { return es.Name != "forged" }
	remote := &remoteVersions{now: map[string]providers.KeyVersion{"db": version("1", time.Now()), "only-forged": version("1", time.Now())}}
	d := &Detector{ExternalSecrets: m.ExternalSecrets, Stores: &oneStore{generation: 1}, Clients: remote, Marker: m, last: map[Store]*storeState{}, horizon: time.Now().Add(-time.Minute)}
	d.cycle(context.Background())
	if got := p.names(); !slices.Equal(got, []string{"a/app"}) {
		t.Errorf("marked %v, want only a/app", got)
	}
	for _, asked := range remote.asked {
		if slices.Contains(asked, "only-forged") {
			t.Errorf("the provider was asked about a key only an ExternalSecret not served reads: %v", remote.asked)
		}
	}
}

// What a stream asks its provider goes at polling's pace: at most
// MaxCallsPerStore calls an Interval.
func TestDetectorPacesAStreamsCalls(t *testing.T) {
	m, _ := newMarker(t, externalSecret("a", "db", storeRef("vault"), "db"))
	src := &streams{remoteVersions: remoteVersions{now: map[string]providers.KeyVersion{}}, open: map[string]chan providers.KeyChange{}, fail: make(chan error, 1), admits: 4}
	d := &Detector{ExternalSecrets: m.ExternalSecrets, Stores: &oneStore{generation: 1}, Clients: src, Marker: m,
		MaxCallsPerStore: 3, Interval: time.Hour, last: map[Store]*storeState{}, horizon: time.Now()}
	// The fourth call would wait most of an hour: past the deadline,
	// rate.Limiter answers at once.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer func() {
		cancel()
		d.stopAll()
	}()
	d.cycle(ctx)
	waitFor(t, "the watch's four calls answered", func() bool {
		src.mu.Lock()
		defer src.mu.Unlock()
		return len(src.admitted) == 4
	})
	src.mu.Lock()
	defer src.mu.Unlock()
	for i, err := range src.admitted[:3] {
		if err != nil {
			t.Errorf("call %d of a stream within the pace: %v", i+1, err)
		}
	}
	if src.admitted[3] == nil {
		t.Error("a stream's fourth call in an interval that allows three was admitted at once")
	}
}
