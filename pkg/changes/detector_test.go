package changes

import (
	"context"
	"fmt"
	"slices"
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
