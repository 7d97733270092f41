// Package throttle shares the provider behind each store fairly between the
// namespaces that use it, and protects it from all of them together.
//
// Every call veil-apiserver makes to a provider on a reader's or a pusher's
// behalf (a get, a batch of gets, a find, a push, a delete) is admitted
// first, by two token buckets and two in-flight counters:
//
//   - the store's own: --provider-qps, --provider-burst and
//     --provider-max-in-flight, for all its users together;
//   - on a ClusterSecretStore, the calling namespace's: the fraction
//     --provider-namespace-share of each of those, so that one namespace can
//     use at most that share of a shared store and the rest is left for the
//     others. A SecretStore has one namespace, so its own limits are its
//     namespace's.
//
// A call that is not admitted is not made and not waited for: it fails at
// once with a Throttled error saying when to retry, which the cache answers
// with the last value it holds (when that is younger than --max-stale) and
// veil-apiserver otherwise answers as 429 Too Many Requests with
// Retry-After. Nothing a tenant does can make another tenant wait behind it:
// a tenant over its share is refused, not queued.
package throttle

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"

	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

// Limits are the limits of one store. A zero QPS turns the rate limits off;
// a zero MaxInFlight the concurrency limits.
type Limits struct {
	// QPS and Burst bound the calls per second to one store's provider.
	QPS   float64
	Burst int
	// MaxInFlight bounds the calls to one store's provider at a time.
	MaxInFlight int
	// NamespaceShare is the fraction (0 < share <= 1) of a
	// ClusterSecretStore's limits one namespace may use.
	NamespaceShare float64
}

// Validate says what is wrong with l, naming the flags.
func (l Limits) Validate() error {
	switch {
	case l.QPS < 0 || math.IsNaN(l.QPS) || math.IsInf(l.QPS, 0):
		return fmt.Errorf("--provider-qps must be a finite number, zero or more (0 turns the rate limit off), not %v", l.QPS)
	case l.QPS > 0 && l.Burst < 1:
		return fmt.Errorf("--provider-burst must be at least 1 when --provider-qps is set, not %d", l.Burst)
	case l.MaxInFlight < 0:
		return fmt.Errorf("--provider-max-in-flight must be zero or more (0 turns the limit off), not %d", l.MaxInFlight)
	case !(l.NamespaceShare > 0 && l.NamespaceShare <= 1):
		return fmt.Errorf("--provider-namespace-share must be more than 0 and at most 1, not %v", l.NamespaceShare)
	}
	return nil
}

// share is the part of l one namespace of a shared store may use. Each
// limit keeps at least one call, so a namespace is never locked out.
func (l Limits) share() Limits {
	s := l
	s.QPS = l.QPS * l.NamespaceShare
	s.Burst = max(1, int(float64(l.Burst)*l.NamespaceShare))
	if l.MaxInFlight > 0 {
		s.MaxInFlight = max(1, int(float64(l.MaxInFlight)*l.NamespaceShare))
	}
	return s
}

// Store names a store: Namespace is empty for a ClusterSecretStore.
type Store struct {
	Kind, Namespace, Name string
}

// Shared says whether namespaces other than the store's own use it.
func (s Store) Shared() bool { return s.Namespace == "" }

// Limiter admits provider calls. Its zero value is not usable; use New.
type Limiter struct {
	limits Limits
	clock  clock.PassiveClock

	mu sync.Mutex
	// budgets holds the store's budget under the key {store, ""} and each
	// namespace's share of a shared store under {store, namespace}.
	budgets map[budgetKey]*budget
	// calls counts admissions, to sweep idle budgets now and then.
	calls int
}

type budgetKey struct {
	store     Store
	namespace string
}

// budget is one token bucket and one in-flight count.
type budget struct {
	limits   Limits
	bucket   *rate.Limiter
	inFlight int
}

// New returns a limiter that gives every store limits.
func New(limits Limits, clk clock.PassiveClock) *Limiter {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Limiter{limits: limits, clock: clk, budgets: map[budgetKey]*budget{}}
}

// sweepEvery is how many admissions pass between sweeps of idle budgets;
// a budget that is full and has no call in flight is the same as none.
const sweepEvery = 4096

func (l *Limiter) budgetLocked(k budgetKey, limits Limits) *budget {
	b := l.budgets[k]
	if b == nil {
		b = &budget{limits: limits}
		if limits.QPS > 0 {
			b.bucket = rate.NewLimiter(rate.Limit(limits.QPS), limits.Burst)
		}
		l.budgets[k] = b
	}
	return b
}

// maxRetryAfter caps the delay a refusal suggests: clients come back and
// are refused again, rather than wait on a guess about the far future.
const maxRetryAfter = time.Minute

// refusal is why a budget did not admit a call, and when to retry.
type refusal struct {
	reason     string // a metric label: rate or in_flight
	retryAfter time.Duration
}

// take takes one call from b at now, or says why not. A refused take
// leaves b as it was.
func (b *budget) take(now time.Time) (*rate.Reservation, *refusal) {
	if b.limits.MaxInFlight > 0 && b.inFlight >= b.limits.MaxInFlight {
		// Calls end within the provider timeout; a second is a fair guess
		// of when one will have.
		return nil, &refusal{reason: "in_flight", retryAfter: time.Second}
	}
	if b.bucket == nil {
		b.inFlight++
		return nil, nil
	}
	r := b.bucket.ReserveN(now, 1)
	if d := r.DelayFrom(now); !r.OK() || d > 0 {
		r.CancelAt(now)
		return nil, &refusal{reason: "rate", retryAfter: min(max(d, time.Second), maxRetryAfter)}
	}
	b.inFlight++
	return r, nil
}

func (b *budget) undo(r *rate.Reservation, now time.Time) {
	b.inFlight--
	if r != nil {
		r.CancelAt(now)
	}
}

// Admit admits one provider call through store on behalf of namespace, and
// returns the function to call when it ends. When it is not admitted, the
// error is a *providers.Error of reason Throttled whose RetryAfter says
// when to try again.
func (l *Limiter) Admit(store Store, namespace string) (done func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.calls%sweepEvery == 0 {
		l.sweepLocked(now)
	}

	var taken []*budget
	var reservations []*rate.Reservation
	refuse := func(whose string, r *refusal) error {
		for i, b := range taken {
			b.undo(reservations[i], now)
		}
		metrics.ProviderThrottled.WithLabelValues(store.Kind, whose, r.reason).Inc()
		what := "calls per second"
		if r.reason == "in_flight" {
			what = "calls at a time"
		}
		msg := fmt.Sprintf("%s/%s is over its limit of provider %s (--provider-qps, --provider-burst, --provider-max-in-flight)", store.Kind, storeName(store), what)
		if whose == "namespace" {
			msg = fmt.Sprintf("namespace %s is using more than its share of %s/%s's provider %s (--provider-namespace-share); other namespaces are not held up", namespace, store.Kind, storeName(store), what)
		}
		return &providers.Error{Reason: providers.Throttled, Message: msg + fmt.Sprintf("; retry in %s", roundUp(r.retryAfter)), RetryAfter: roundUp(r.retryAfter)}
	}
	// The namespace's share first: a namespace over its share must not
	// spend the store's budget, which the other namespaces need.
	if store.Shared() {
		b := l.budgetLocked(budgetKey{store, namespace}, l.limits.share())
		r, no := b.take(now)
		if no != nil {
			return nil, refuse("namespace", no)
		}
		taken, reservations = append(taken, b), append(reservations, r)
	}
	b := l.budgetLocked(budgetKey{store, ""}, l.limits)
	_, no := b.take(now)
	if no != nil {
		return nil, refuse("store", no)
	}
	taken = append(taken, b)
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			for _, b := range taken {
				b.inFlight--
			}
		})
	}, nil
}

// Forget drops the budgets of a deleted store.
func (l *Limiter) Forget(store Store) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.budgets {
		if k.store == store {
			delete(l.budgets, k)
		}
	}
}

// sweepLocked drops budgets that are as good as new: nothing in flight and
// a full bucket. It keeps the map as small as the set of busy namespaces.
func (l *Limiter) sweepLocked(now time.Time) {
	for k, b := range l.budgets {
		if b.inFlight == 0 && (b.bucket == nil || b.bucket.TokensAt(now) >= float64(b.limits.Burst)) {
			delete(l.budgets, k)
		}
	}
}

// size returns how many budgets are held, for tests.
func (l *Limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.budgets)
}

func storeName(s Store) string {
	if s.Namespace == "" {
		return s.Name
	}
	return s.Namespace + "/" + s.Name
}

// roundUp rounds d up to whole seconds, as Retry-After counts them.
func roundUp(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

// Client returns c with every call admitted by l first, on behalf of
// namespace.
func (l *Limiter) Client(c providers.Client, store Store, namespace string) providers.Client {
	if l == nil {
		return c
	}
	t := &client{inner: c, l: l, store: store, namespace: namespace}
	// The wrapper offers what c offers, and no more: callers ask a client
	// whether it batches or reads metadata.
	b, batches := c.(providers.BatchGetter)
	m, readsMetadata := c.(providers.MetadataGetter)
	switch {
	case batches && readsMetadata:
		return &batchMetadataClient{batchClient: &batchClient{client: t, batch: b}, metadataReader: metadataReader{c: t, meta: m}}
	case batches:
		return &batchClient{client: t, batch: b}
	case readsMetadata:
		return &metadataClient{client: t, metadataReader: metadataReader{c: t, meta: m}}
	}
	return t
}

type client struct {
	inner     providers.Client
	l         *Limiter
	store     Store
	namespace string
}

func (c *client) admit() (func(), error) { return c.l.Admit(c.store, c.namespace) }

func (c *client) Get(ctx context.Context, ref providers.Ref) (providers.Value, error) {
	done, err := c.admit()
	if err != nil {
		return providers.Value{}, err
	}
	defer done()
	return c.inner.Get(ctx, ref)
}

func (c *client) Find(ctx context.Context, f providers.Find) (map[string]providers.Value, error) {
	done, err := c.admit()
	if err != nil {
		return nil, err
	}
	defer done()
	return c.inner.Find(ctx, f)
}

func (c *client) Push(ctx context.Context, p providers.Push) (string, error) {
	done, err := c.admit()
	if err != nil {
		return "", err
	}
	defer done()
	return c.inner.Push(ctx, p)
}

func (c *client) Delete(ctx context.Context, d providers.Delete) error {
	done, err := c.admit()
	if err != nil {
		return err
	}
	defer done()
	return c.inner.Delete(ctx, d)
}

// Close is the store's, not a caller's: the shared client outlives it.
func (c *client) Close(ctx context.Context) error { return nil }

type batchClient struct {
	*client
	batch providers.BatchGetter
}

func (c *batchClient) GetBatch(ctx context.Context, refs []providers.Ref) (map[providers.Ref]providers.Value, error) {
	done, err := c.admit()
	if err != nil {
		return nil, err
	}
	defer done()
	return c.batch.GetBatch(ctx, refs)
}

// metadataReader admits GetMetadata calls like any other.
type metadataReader struct {
	c    *client
	meta providers.MetadataGetter
}

func (r metadataReader) GetMetadata(ctx context.Context, key string) (providers.Value, error) {
	done, err := r.c.admit()
	if err != nil {
		return providers.Value{}, err
	}
	defer done()
	return r.meta.GetMetadata(ctx, key)
}

type metadataClient struct {
	*client
	metadataReader
}

type batchMetadataClient struct {
	*batchClient
	metadataReader
}
