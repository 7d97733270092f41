package throttle

import (
	"errors"
	"testing"
	"time"

	"k8s.io/component-base/metrics/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

// TestReadBudgets: a namespace gets its burst, then its rate; what it reads
// is charged and can leave it in debt, never below minus its burst; it is
// refused with a Retry-After that covers its debt; other namespaces are
// untouched; idle budgets are swept.
func TestReadBudgets(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1_000_000, 0))
	r := NewReads(ReadLimits{CostPerSecond: 10, Burst: 20}, clk)
	metrics.Register()
	throttled := func() float64 {
		v, err := testutil.GetCounterMetricValue(metrics.NamespaceReadsThrottled.WithLabelValues("get"))
		if err != nil {
			t.Fatalf("veil_namespace_reads_throttled_total: %v", err)
		}
		return v
	}
	before := throttled()

	for i := range 20 {
		if err := r.Admit("a", "get"); err != nil {
			t.Fatalf("read %d of a burst of 20: %v", i+1, err)
		}
	}
	err := r.Admit("a", "get")
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Reason != providers.Throttled || pe.RetryAfter != time.Second {
		t.Fatalf("the 21st read at once: %v, want Throttled, retry in 1s", err)
	}
	if got := throttled() - before; got != 1 {
		t.Errorf("veil_namespace_reads_throttled_total{verb=get} rose by %v, want 1", got)
	}
	if err := r.Admit("b", "get"); err != nil {
		t.Fatalf("another namespace's first read: %v", err)
	}

	// A tenth of a second later a unit is back; a large value then puts
	// the namespace in debt, which is capped at the burst.
	clk.SetTime(clk.Now().Add(100 * time.Millisecond))
	if err := r.Admit("a", "get"); err != nil {
		t.Fatalf("a read after the bucket refilled a unit: %v", err)
	}
	r.Charge("a", Cost(100<<20))
	err = r.Admit("a", "list")
	if !errors.As(err, &pe) || pe.RetryAfter != 3*time.Second {
		t.Fatalf("a read in debt of 20 units at 10/s: %v, want retry in 3s", err)
	}
	clk.SetTime(clk.Now().Add(2100 * time.Millisecond))
	if err := r.Admit("a", "get"); err != nil {
		t.Fatalf("a read once the debt was repaid: %v", err)
	}

	// Full buckets are forgotten.
	clk.SetTime(clk.Now().Add(time.Hour))
	for range sweepEvery {
		_ = r.Admit("c", "get")
	}
	r.mu.Lock()
	n := len(r.buckets)
	r.mu.Unlock()
	if n != 1 {
		t.Errorf("%d budgets held after an hour idle, want 1 (the namespace still reading)", n)
	}
}

func TestReadBudgetsOff(t *testing.T) {
	if r := NewReads(ReadLimits{}, nil); r != nil {
		t.Fatal("a zero rate must turn the read budgets off")
	}
	var r *Reads
	if err := r.Admit("a", "get"); err != nil {
		t.Fatal(err)
	}
	r.Charge("a", 5)
	if err := (ReadLimits{CostPerSecond: 1}).Validate(); err == nil {
		t.Error("a rate with no burst must be refused")
	}
}
