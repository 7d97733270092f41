package changes

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
)

func externalSecret(ns, name string, ref configv1alpha1.SecretStoreRef, keys ...string) *configv1alpha1.ExternalSecret {
	es := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec:       configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(ref)},
	}
	for _, k := range keys {
		es.Spec.Data = append(es.Spec.Data, configv1alpha1.ExternalSecretData{SecretKey: k, RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: k}})
	}
	return es
}

// patched records the status patches a Marker makes.
type patched struct {
	mu     sync.Mutex
	bodies map[string]map[string]any // namespace/name → body
}

func newMarker(t *testing.T, ess ...*configv1alpha1.ExternalSecret) (*Marker, *patched) {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, es := range ess {
		if err := idx.Add(es); err != nil {
			t.Fatal(err)
		}
	}
	client := fake.NewSimpleClientset()
	p := &patched{bodies: map[string]map[string]any{}}
	client.PrependReactor("patch", "externalsecrets", func(a clienttesting.Action) (bool, runtime.Object, error) {
		pa := a.(clienttesting.PatchAction)
		if pa.GetSubresource() != "status" || pa.GetPatchType() != types.ApplyPatchType {
			t.Errorf("patched %s/%s with %s of %q, want an apply of status", pa.GetNamespace(), pa.GetName(), pa.GetPatchType(), pa.GetSubresource())
		}
		var body map[string]any
		if err := json.Unmarshal(pa.GetPatch(), &body); err != nil {
			t.Error(err)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.bodies[pa.GetNamespace()+"/"+pa.GetName()] = body
		// What kube-apiserver would send the informer.
		var applied configv1alpha1.ExternalSecret
		if err := json.Unmarshal(pa.GetPatch(), &applied); err != nil {
			t.Error(err)
		}
		if obj, ok, _ := idx.GetByKey(pa.GetNamespace() + "/" + pa.GetName()); ok {
			es := obj.(*configv1alpha1.ExternalSecret).DeepCopy()
			es.Status.LastValueChange = applied.Status.LastValueChange
			if err := idx.Update(es); err != nil {
				t.Error(err)
			}
		}
		return true, &configv1alpha1.ExternalSecret{}, nil
	})
	clk := clocktesting.NewFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	return &Marker{ExternalSecrets: configlisters.NewExternalSecretLister(idx), Client: client.ConfigV1alpha1(), Clock: clk}, p
}

func (p *patched) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bodies = map[string]map[string]any{}
}

// change is the lastValueChange applied to namespace/name.
func (p *patched) change(key string) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bodies[key]["status"].(map[string]any)["lastValueChange"].(map[string]any)
}

func storeRef(name string) configv1alpha1.SecretStoreRef {
	return configv1alpha1.SecretStoreRef{Name: name}
}

func (p *patched) names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k := range p.bodies {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestMarkReachesOnlyTheReadersOfChangedKeys(t *testing.T) {
	ss := configv1alpha1.SecretStoreRef{Name: "vault"}
	css := configv1alpha1.SecretStoreRef{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "vault"}
	path := "team/"
	finder := externalSecret("a", "finder", ss)
	finder.Spec.DataFrom = []configv1alpha1.ExternalSecretDataFromRemoteRef{{Find: &configv1alpha1.ExternalSecretFind{Path: &path}}}
	m, p := newMarker(t,
		externalSecret("a", "db", ss, "db"),
		externalSecret("a", "db-and-api", ss, "api", "db"),
		externalSecret("a", "api", ss, "api"),
		finder,
		// The same store name in another namespace is another store.
		externalSecret("b", "db", ss, "db"),
		// A ClusterSecretStore of the same name is another store too.
		externalSecret("a", "db-cluster", css, "db"),
	)
	n, err := m.Mark(context.Background(), Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "a", Name: "vault"}, []string{"db", "team/x"}, configv1alpha1.ValueChangePushed)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a/db", "a/db-and-api", "a/finder"}
	if got := p.names(); n != 3 || !slices.Equal(got, want) {
		t.Fatalf("marked %d: %v, want %v", n, got, want)
	}
	var ids []string
	for _, body := range p.bodies {
		c := body["status"].(map[string]any)["lastValueChange"].(map[string]any)
		if c["cause"] != "Pushed" || c["id"] == "" || c["time"] == nil {
			t.Errorf("the change written: %v", c)
		}
		ids = append(ids, c["id"].(string))
	}
	// Each reader is told only the keys it reads.
	for name, want := range map[string]string{"a/db": "db", "a/db-and-api": "db", "a/finder": "team/x"} {
		if keys := p.change(name)["keys"].([]any); len(keys) != 1 || keys[0] != want {
			t.Errorf("%s was told of keys %v, want only %s", name, keys, want)
		}
	}
	for _, body := range p.bodies {
		if md := body["metadata"].(map[string]any); md["uid"] == nil {
			t.Errorf("the apply names no UID, so it could mark an ExternalSecret created in the place of the one read: %v", md)
		}
	}
	// One change, one ID: every reader shares the read after it.
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("the readers of one change were given different IDs: %v", ids)
	}
}

func TestMarkOfAClusterStoreReachesEveryNamespace(t *testing.T) {
	css := configv1alpha1.SecretStoreRef{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "shared"}
	m, p := newMarker(t,
		externalSecret("a", "x", css, "k"),
		externalSecret("c", "y", css, "k"),
		externalSecret("c", "z", configv1alpha1.SecretStoreRef{Name: "shared"}, "k"),
	)
	if _, err := m.Mark(context.Background(), Store{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "shared"}, nil, configv1alpha1.ValueChangeStoreChanged); err != nil {
		t.Fatal(err)
	}
	if got, want := p.names(), []string{"a/x", "c/y"}; !slices.Equal(got, want) {
		t.Fatalf("marked %v, want %v", got, want)
	}
	for _, body := range p.bodies {
		if c := body["status"].(map[string]any)["lastValueChange"].(map[string]any); c["keys"] != nil {
			t.Errorf("a store change names keys: %v", c)
		}
	}
}

func TestMarkNamesAtMostTenKeys(t *testing.T) {
	var keys []string
	for _, c := range "abcdefghijkl" {
		keys = append(keys, string(c))
	}
	m, p := newMarker(t, externalSecret("a", "x", configv1alpha1.SecretStoreRef{Name: "s"}, keys...))
	if _, err := m.Mark(context.Background(), Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "a", Name: "s"}, keys, configv1alpha1.ValueChangeDetected); err != nil {
		t.Fatal(err)
	}
	c := p.bodies["a/x"]["status"].(map[string]any)["lastValueChange"].(map[string]any)
	if len(c["keys"].([]any)) != 10 || c["moreKeys"] != float64(2) {
		t.Errorf("keys %v, moreKeys %v; want 10 and 2", c["keys"], c["moreKeys"])
	}
}

func TestSeenCountsFromTheFirstSighting(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	s := NewSeen(clk, time.Hour)
	es := &configv1alpha1.ExternalSecret{}
	if _, ok := s.MaxAge(es); ok {
		t.Fatal("an ExternalSecret with no recorded change bounds the age of its values")
	}
	es.Status.LastValueChange = &configv1alpha1.ValueChange{ID: "one"}
	if d, ok := s.MaxAge(es); !ok || d != time.Nanosecond {
		t.Fatalf("first sighting: %v %v, want only values read from now on", d, ok)
	}
	clk.Step(time.Minute)
	if d, _ := s.MaxAge(es); d != time.Minute+time.Nanosecond {
		t.Errorf("a minute later: %v", d)
	}
	es.Status.LastValueChange = &configv1alpha1.ValueChange{ID: "two"}
	if d, _ := s.MaxAge(es); d != time.Nanosecond {
		t.Errorf("a new change: %v", d)
	}
	// Sightings older than anything cached are forgotten.
	clk.Step(2 * time.Hour)
	s.mu.Lock()
	s.sweep(clk.Now())
	n := len(s.seen)
	s.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sightings kept past the cache's lifetime", n)
	}
}

// TestMarkTellsOnlyNamespacesThatMayReadTheKey: through a
// ClusterSecretStore, an ExternalSecret naming a key outside its
// namespace's scope is not told the key changed.
func TestMarkTellsOnlyNamespacesThatMayReadTheKey(t *testing.T) {
	css := configv1alpha1.SecretStoreRef{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "shared"}
	m, p := newMarker(t, externalSecret("a", "own", css, "teams/a/db"), externalSecret("b", "prying", css, "teams/a/db"))
	m.Admits = func(_ context.Context, ns string, _ Store, key string) bool {
		return strings.HasPrefix(key, "teams/"+ns+"/")
	}
	if _, err := m.Mark(context.Background(), Store{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "shared"}, []string{"teams/a/db"}, configv1alpha1.ValueChangeDetected); err != nil {
		t.Fatal(err)
	}
	if got := p.names(); !slices.Equal(got, []string{"a/own"}) {
		t.Fatalf("marked %v; want only the namespace whose scope holds the key", got)
	}
}

// TestMarkCountsKeyNamesTooLongToWrite: a key name longer than the status
// allows is counted, not written, so the write is not refused.
func TestMarkCountsKeyNamesTooLongToWrite(t *testing.T) {
	long := "a/" + strings.Repeat("x", 600)
	m, p := newMarker(t, externalSecret("a", "x", configv1alpha1.SecretStoreRef{Name: "s"}, "short", long))
	if _, err := m.Mark(context.Background(), Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "a", Name: "s"}, []string{"short", long}, configv1alpha1.ValueChangeDetected); err != nil {
		t.Fatal(err)
	}
	c := p.change("a/x")
	if keys := c["keys"].([]any); len(keys) != 1 || keys[0] != "short" || c["moreKeys"] != float64(1) {
		t.Errorf("keys %v, moreKeys %v; want short named and the long one counted", c["keys"], c["moreKeys"])
	}
}
