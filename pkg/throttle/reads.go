package throttle

import (
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

// ReadLimits bound the work veil-apiserver does to answer one namespace's
// reads of values, whoever reads them (its users, or veil-syncer on its
// behalf). The provider limits protect the providers; these protect
// veil-apiserver itself, and kube-apiserver in front of it, from a
// namespace whose reads are cheap for a provider (cached values, refusals)
// but not for the servers.
type ReadLimits struct {
	// CostPerSecond and Burst are a token bucket of cost units: a get
	// costs 1, plus 1 for every ReadUnitBytes of values it returns, and a
	// list as much as the gets of the values on its page. Zero
	// CostPerSecond turns the budget off.
	CostPerSecond float64
	Burst         int
}

// ReadUnitBytes is the size of value that costs one more unit.
const ReadUnitBytes = 64 << 10

// Validate says what is wrong with l, naming the flags.
func (l ReadLimits) Validate() error {
	switch {
	case l.CostPerSecond < 0 || math.IsNaN(l.CostPerSecond) || math.IsInf(l.CostPerSecond, 0):
		return fmt.Errorf("--namespace-read-qps must be a finite number, zero or more (0 turns the budget off), not %v", l.CostPerSecond)
	case l.CostPerSecond > 0 && l.Burst < 1:
		return fmt.Errorf("--namespace-read-burst must be at least 1 when --namespace-read-qps is set, not %d", l.Burst)
	}
	return nil
}

// Cost is what reading values of size bytes costs, on top of the unit
// Admit takes.
func Cost(bytes int) int { return bytes / ReadUnitBytes }

// Reads is every namespace's read budget. A nil *Reads admits everything.
//
// A read is admitted only while its namespace's bucket holds a unit; what
// it returned is charged when it is done and may leave the bucket in debt,
// so a namespace reading large values is refused sooner. A namespace that
// is refused is answered at once, before its ExternalSecret is looked up
// and before any cache or provider work or encoding, with 429 and
// Retry-After: clients that honour it (kubectl, client-go, veil-syncer's
// queue) slow down, and the other namespaces' reads do not queue behind it.
type Reads struct {
	limits ReadLimits
	clock  clock.PassiveClock

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	calls   int
}

// NewReads returns the read budgets, or nil when limits turn them off.
func NewReads(limits ReadLimits, clk clock.PassiveClock) *Reads {
	if limits.CostPerSecond <= 0 {
		return nil
	}
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Reads{limits: limits, clock: clk, buckets: map[string]*rate.Limiter{}}
}

func (r *Reads) bucketLocked(namespace string, now time.Time) *rate.Limiter {
	r.calls++
	if r.calls%sweepEvery == 0 {
		for ns, b := range r.buckets {
			if b.TokensAt(now) >= float64(r.limits.Burst) {
				delete(r.buckets, ns)
			}
		}
	}
	b := r.buckets[namespace]
	if b == nil {
		b = rate.NewLimiter(rate.Limit(r.limits.CostPerSecond), r.limits.Burst)
		r.buckets[namespace] = b
	}
	return b
}

// Admit takes one unit of namespace's budget for a read (verb is get or
// list, for the metric), or refuses it with a *providers.Error of reason
// Throttled saying when to retry.
func (r *Reads) Admit(namespace, verb string) error {
	if r == nil {
		return nil
	}
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.bucketLocked(namespace, now)
	if tokens := b.TokensAt(now); tokens < 1 {
		retry := roundUp(min(max(time.Duration((1-tokens)/r.limits.CostPerSecond*float64(time.Second)), time.Second), maxRetryAfter))
		metrics.NamespaceReadsThrottled.WithLabelValues(verb).Inc()
		return &providers.Error{Reason: providers.Throttled, RetryAfter: retry, Message: fmt.Sprintf(
			"namespace %s has read more values than veil-apiserver serves one namespace (--namespace-read-qps, --namespace-read-burst); other namespaces are not held up; retry in %s", namespace, retry)}
	}
	b.ReserveN(now, 1)
	return nil
}

// Charge spends cost more units of namespace's budget for what a read
// returned; the bucket may go into debt, down to minus its burst.
func (r *Reads) Charge(namespace string, cost int) {
	if r == nil || cost <= 0 {
		return
	}
	now := r.clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	// A reservation that is never waited for is debt the bucket refills.
	b := r.bucketLocked(namespace, now)
	if n := min(cost, int(b.TokensAt(now))+r.limits.Burst); n > 0 {
		b.ReserveN(now, n)
	}
}
