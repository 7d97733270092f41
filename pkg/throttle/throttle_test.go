package throttle

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/veil-dev/veil/pkg/providers"
)

var (
	shared = Store{Kind: "ClusterSecretStore", Name: "shared"}
	own    = Store{Kind: "SecretStore", Namespace: "app", Name: "own"}
)

func admitN(t *testing.T, l *Limiter, s Store, ns string, n int) []func() {
	t.Helper()
	var dones []func()
	for i := range n {
		done, err := l.Admit(s, ns)
		if err != nil {
			t.Fatalf("call %d of %s from %s: %v", i, s.Name, ns, err)
		}
		dones = append(dones, done)
	}
	return dones
}

func throttled(t *testing.T, err error) *providers.Error {
	t.Helper()
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Reason != providers.Throttled {
		t.Fatalf("got %v, want a Throttled error", err)
	}
	if pe.RetryAfter < time.Second || pe.RetryAfter%time.Second != 0 {
		t.Errorf("RetryAfter %v, want whole seconds, at least one", pe.RetryAfter)
	}
	return pe
}

// A namespace over its share of a shared store is refused, and leaves the
// rest of the store's budget to the others.
func TestNamespaceShareOfASharedStore(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	l := New(Limits{QPS: 1, Burst: 10, NamespaceShare: 0.5}, clk)

	admitN(t, l, shared, "noisy", 5)
	_, err := l.Admit(shared, "noisy")
	pe := throttled(t, err)
	if !strings.Contains(pe.Message, "namespace noisy") || !strings.Contains(pe.Message, "--provider-namespace-share") {
		t.Errorf("message %q does not name the namespace and the flag", pe.Message)
	}
	// Refused calls took nothing from the store: the quiet namespace has
	// its whole share.
	admitN(t, l, shared, "quiet", 5)
	// Now the store's own budget is spent.
	_, err = l.Admit(shared, "third")
	pe = throttled(t, err)
	if !strings.Contains(pe.Message, "ClusterSecretStore/shared is over its limit") {
		t.Errorf("message %q does not name the store", pe.Message)
	}
	// Tokens come back at the store's rate, the namespace's at its share.
	clk.SetTime(clk.Now().Add(2 * time.Second))
	admitN(t, l, shared, "noisy", 1)
	if _, err := l.Admit(shared, "noisy"); err == nil {
		t.Error("noisy got more than its share's refill (0.5/s) in 2s")
	}
}

// A SecretStore has one namespace; its whole budget is that namespace's.
func TestOwnStoreHasNoShare(t *testing.T) {
	l := New(Limits{QPS: 1, Burst: 4, NamespaceShare: 0.25}, clocktesting.NewFakePassiveClock(time.Unix(0, 0)))
	admitN(t, l, own, "app", 4)
	_, err := l.Admit(own, "app")
	throttled(t, err)
}

// In-flight calls are bounded per store and per namespace; ending a call
// frees its place, once however often done is called.
func TestInFlight(t *testing.T) {
	l := New(Limits{MaxInFlight: 4, NamespaceShare: 0.5}, nil)
	dones := admitN(t, l, shared, "noisy", 2)
	_, err := l.Admit(shared, "noisy")
	pe := throttled(t, err)
	if !strings.Contains(pe.Message, "calls at a time") {
		t.Errorf("message %q", pe.Message)
	}
	quiet := admitN(t, l, shared, "quiet", 2)
	if _, err := l.Admit(shared, "third"); err == nil {
		t.Error("a fifth call at a time was admitted to a store of 4")
	}
	dones[0]()
	dones[0]()
	admitN(t, l, shared, "noisy", 1)
	if _, err := l.Admit(shared, "third"); err == nil {
		t.Error("done called twice freed two places")
	}
	quiet[0]()
	admitN(t, l, shared, "third", 1)
}

// Limits that are off admit everything.
func TestOff(t *testing.T) {
	l := New(Limits{NamespaceShare: 1}, nil)
	admitN(t, l, shared, "any", 10000)
	var nilLimiter *Limiter
	admitN(t, nilLimiter, shared, "any", 3)
}

// Idle budgets are swept, so the limiter does not grow with every
// namespace that ever made a call; Forget drops a deleted store's.
func TestBudgetsAreBounded(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(0, 0))
	l := New(Limits{QPS: 1e6, Burst: 1e6, NamespaceShare: 0.5}, clk)
	for i := range sweepEvery - 1 {
		done, err := l.Admit(shared, "ns-"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)))
		if err != nil {
			t.Fatal(err)
		}
		done()
	}
	if n := l.size(); n < 100 {
		t.Fatalf("%d budgets before the sweep", n)
	}
	clk.SetTime(clk.Now().Add(time.Minute))
	done, err := l.Admit(own, "app")
	if err != nil {
		t.Fatal(err)
	}
	done()
	if n := l.size(); n > 2 {
		t.Errorf("%d budgets after a sweep of idle ones, want at most 2", n)
	}
	l.Forget(own)
	l.Forget(shared)
	if n := l.size(); n != 0 {
		t.Errorf("%d budgets after Forget", n)
	}
}

func TestValidate(t *testing.T) {
	for _, bad := range []Limits{
		{QPS: -1, NamespaceShare: 0.5},
		{QPS: 1, Burst: 0, NamespaceShare: 0.5},
		{MaxInFlight: -1, NamespaceShare: 0.5},
		{NamespaceShare: 0},
		{NamespaceShare: 1.5},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v is accepted", bad)
		}
	}
	if err := (Limits{QPS: 100, Burst: 200, MaxInFlight: 32, NamespaceShare: 0.5}).Validate(); err != nil {
		t.Error(err)
	}
}

// The client admits every call before making it, and a refused call never
// reaches the provider.
func TestClient(t *testing.T) {
	l := New(Limits{QPS: 1, Burst: 2, NamespaceShare: 1}, clocktesting.NewFakePassiveClock(time.Unix(0, 0)))
	inner := &countingClient{}
	c := l.Client(inner, own, "app")
	ctx := context.Background()
	if _, err := c.Get(ctx, providers.Ref{Key: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Find(ctx, providers.Find{Path: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(ctx, providers.Push{Key: "a"}); providers.ReasonOf(err) != providers.Throttled {
		t.Errorf("third call: %v", err)
	}
	if err := c.Delete(ctx, providers.Delete{Key: "a"}); providers.ReasonOf(err) != providers.Throttled {
		t.Errorf("fourth call: %v", err)
	}
	if inner.calls != 2 {
		t.Errorf("the provider saw %d calls, want 2", inner.calls)
	}
	if _, ok := c.(providers.BatchGetter); ok {
		t.Error("a client that cannot batch gained GetBatch")
	}
	if _, ok := l.Client(&batchingClient{}, own, "app").(providers.BatchGetter); !ok {
		t.Error("a batching client lost GetBatch")
	}
}

type countingClient struct {
	mu    sync.Mutex
	calls int
}

func (c *countingClient) count() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
}

func (c *countingClient) Get(context.Context, providers.Ref) (providers.Value, error) {
	c.count()
	return providers.Value{}, nil
}

func (c *countingClient) Find(context.Context, providers.Find) (map[string]providers.Value, error) {
	c.count()
	return nil, nil
}

func (c *countingClient) Push(context.Context, providers.Push) (string, error) {
	c.count()
	return "", nil
}

func (c *countingClient) Delete(context.Context, providers.Delete) error {
	c.count()
	return nil
}

func (c *countingClient) Close(context.Context) error { return nil }

type batchingClient struct{ countingClient }

func (c *batchingClient) GetBatch(context.Context, []providers.Ref) (map[providers.Ref]providers.Value, error) {
	c.count()
	return nil, nil
}

type metadataReadingClient struct{ countingClient }

func (c *metadataReadingClient) GetMetadata(context.Context, string) (providers.Value, error) {
	c.count()
	return providers.Value{}, nil
}

type batchingMetadataClient struct{ metadataReadingClient }

func (c *batchingMetadataClient) GetBatch(context.Context, []providers.Ref) (map[providers.Ref]providers.Value, error) {
	c.count()
	return nil, nil
}

// The wrapper reads metadata when the client can, admitted like any call,
// and never claims it can when the client cannot.
func TestClientMetadata(t *testing.T) {
	l := New(Limits{QPS: 1, Burst: 1, NamespaceShare: 1}, clocktesting.NewFakePassiveClock(time.Unix(0, 0)))
	if _, ok := l.Client(&countingClient{}, own, "app").(providers.MetadataGetter); ok {
		t.Error("a client that cannot read metadata gained GetMetadata")
	}
	for name, inner := range map[string]providers.Client{"metadata": &metadataReadingClient{}, "batching and metadata": &batchingMetadataClient{}} {
		c := l.Client(inner, Store{Kind: "SecretStore", Namespace: name, Name: "s"}, "app")
		m, ok := c.(providers.MetadataGetter)
		if !ok {
			t.Fatalf("%s: the wrapper lost GetMetadata", name)
		}
		if _, isBatch := inner.(providers.BatchGetter); isBatch {
			if _, ok := c.(providers.BatchGetter); !ok {
				t.Errorf("%s: the wrapper lost GetBatch", name)
			}
		}
		if _, err := m.GetMetadata(context.Background(), "k"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := m.GetMetadata(context.Background(), "k"); providers.ReasonOf(err) != providers.Throttled {
			t.Errorf("%s: a second call over the burst: %v, want Throttled", name, err)
		}
	}
}
