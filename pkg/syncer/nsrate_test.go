package syncer

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/component-base/metrics/testutil"
)

func TestNamespaceRate(t *testing.T) {
	register()
	if d := (*namespaceRate)(nil).wait("a", "a/x", time.Now()); d != 0 {
		t.Fatalf("no bound waited %v", d)
	}
	if newNamespaceRate(0, 10) != nil {
		t.Fatal("a qps of 0 must turn the bound off")
	}
	r := newNamespaceRate(10, 3) // one sync every 100ms after a burst of 3
	now := time.Unix(1000, 0)
	delayed, err := testutil.GetCounterMetricValue(namespaceSyncsDelayed)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if d := r.wait("noisy", fmt.Sprintf("noisy/%d", i), now); d != 0 {
			t.Fatalf("sync %d of the burst waited %v", i, d)
		}
	}
	d := r.wait("noisy", "noisy/3", now)
	if d != 100*time.Millisecond {
		t.Fatalf("the sync after the burst waits %v, want 100ms", d)
	}
	if d := r.wait("noisy", "noisy/4", now); d != 200*time.Millisecond {
		t.Fatalf("the next waits %v, want 200ms", d)
	}
	if got, _ := testutil.GetCounterMetricValue(namespaceSyncsDelayed); got != delayed+2 {
		t.Errorf("veil_syncer_namespace_syncs_delayed_total went from %v to %v, want 2 more", delayed, got)
	}
	// Asked again before its turn, a key is told the rest of its wait and
	// charged nothing more; at its turn it goes.
	if d := r.wait("noisy", "noisy/3", now.Add(40*time.Millisecond)); d != 60*time.Millisecond {
		t.Fatalf("noisy/3 asked again early waits %v, want 60ms", d)
	}
	if d := r.wait("noisy", "noisy/3", now.Add(100*time.Millisecond)); d != 0 {
		t.Fatalf("noisy/3 at its turn waits %v", d)
	}
	if d := r.wait("noisy", "noisy/5", now.Add(100*time.Millisecond)); d != 200*time.Millisecond {
		t.Fatalf("a new key after the reserved ones waits %v, want 200ms (until 300ms)", d)
	}
	// Another namespace has its own budget.
	if d := r.wait("quiet", "quiet/0", now); d != 0 {
		t.Fatalf("a quiet namespace waited %v behind a noisy one", d)
	}
	// A deleted key's reservation goes with it.
	r.forget("noisy/4")
	if _, ok := r.reserved["noisy/4"]; ok {
		t.Error("forget left the reservation")
	}
	// Full buckets and stale reservations are swept.
	r.sweep(now.Add(2 * time.Minute))
	if len(r.buckets) != 0 || len(r.reserved) != 0 {
		t.Errorf("after a sweep: %d buckets, %d reservations, want none", len(r.buckets), len(r.reserved))
	}
}
