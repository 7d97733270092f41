package cache

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/component-base/metrics/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

func TestMain(m *testing.M) {
	// Metrics count only once registered; the single-flight test reads one.
	metrics.Register()
	os.Exit(m.Run())
}

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func newCache(t *testing.T, cfg Config) (*Cache, *clocktesting.FakeClock) {
	t.Helper()
	clk := clocktesting.NewFakeClock(t0)
	if cfg.Clock == nil {
		cfg.Clock = clk
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 20
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = 24 * time.Hour
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.store.Close)
	return c, clk
}

// provider stands in for a provider: it serves values by key, counts calls
// and can be switched to fail.
type provider struct {
	mu     sync.Mutex
	values map[Key]string
	fail   error
	calls  int
	asked  [][]Key
}

func newProvider(values map[Key]string) *provider { return &provider{values: values} }

func (p *provider) fetch(keys []Key) Fetch {
	return func(_ context.Context, positions []int) []Outcome {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.calls++
		var asked []Key
		out := make([]Outcome, len(positions))
		for j, i := range positions {
			asked = append(asked, keys[i])
			v, ok := p.values[keys[i]]
			switch {
			case p.fail != nil:
				out[j].Err = p.fail
			case !ok:
				out[j].Err = providers.Errorf(providers.NotFound, "key does not exist")
			default:
				out[j].Data = []byte(v)
			}
		}
		p.asked = append(p.asked, asked)
		return out
	}
}

func (p *provider) set(f func(p *provider)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *provider) callCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// get reads keys, failing the test on error.
func get(t *testing.T, c *Cache, p *provider, maxAge time.Duration, keys ...Key) []Entry {
	t.Helper()
	es, err := c.Get(context.Background(), keys, maxAge, p.fetch(keys))
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// expectCalls checks how many provider calls were made so far.
func expectCalls(t *testing.T, p *provider, want int, when string) {
	t.Helper()
	if got := p.callCount(); got != want {
		t.Fatalf("%s: %d provider calls so far, want %d", when, got, want)
	}
}

func TestNewKeyIsUnambiguous(t *testing.T) {
	if NewKey("ab", "c") == NewKey("a", "bc") || NewKey("a", "") == NewKey("a") || NewKey("", "a") == NewKey("a", "") {
		t.Error("different field lists give the same key")
	}
	if NewKey("ns", "name", "key") != NewKey("ns", "name", "key") {
		t.Error("the same fields give different keys")
	}
}

func TestSealRoundTripAndTamper(t *testing.T) {
	k := newSealingKey(1, t0)
	key := NewKey("SecretStore", "app", "vault", "db/password")
	plain := []byte("s3cret-value")
	sealed := k.seal(plain, key)
	if bytes.Contains(sealed, plain) {
		t.Fatal("the sealed bytes contain the plaintext")
	}
	if again := k.seal(plain, key); bytes.Equal(again, sealed) {
		t.Error("sealing twice gave the same bytes: nonces are not fresh")
	}
	got, err := k.open(sealed, key)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("round trip: %q, %v", got, err)
	}

	if _, err := k.open(sealed, NewKey("SecretStore", "other", "vault", "db/password")); err == nil {
		t.Error("a ciphertext opened under another cache key (associated data)")
	}
	for i := range sealed {
		tampered := bytes.Clone(sealed)
		tampered[i] ^= 0x01
		if _, err := k.open(tampered, key); err == nil {
			t.Fatalf("a ciphertext with byte %d of %d flipped opened", i, len(sealed))
		}
	}
	if _, err := k.open(sealed[:len(sealed)-1], key); err == nil {
		t.Error("a truncated ciphertext opened")
	}
	if _, err := newSealingKey(2, t0).open(sealed, key); err == nil {
		t.Error("a ciphertext opened under another process key")
	}
}

// TestHeldBytesAreSealed looks at the raw bytes the cache holds for a
// canary value: the plaintext is in none of its forms among them, and the
// entry found is the canary's (it opens to it).
func TestHeldBytesAreSealed(t *testing.T) {
	c, _ := newCache(t, Config{})
	canary := "veil-canary-cache-" + fmt.Sprint(time.Now().UnixNano())
	key := NewKey("ClusterSecretStore", "", "shared", "canary")
	p := newProvider(map[Key]string{key: canary})
	if es := get(t, c, p, time.Hour, key); string(es[0].Data) != canary {
		t.Fatalf("read %q", es[0].Data)
	}

	forms := [][]byte{[]byte(canary), []byte(base64.StdEncoding.EncodeToString([]byte(canary))), []byte(base64.RawURLEncoding.EncodeToString([]byte(canary)))}
	held, opened := 0, 0
	c.store.IterValues(func(e *entry) bool {
		held++
		for _, f := range forms {
			if bytes.Contains(e.sealed, f) {
				t.Errorf("the cache holds the canary in the clear (%q)", f)
			}
		}
		if e.notFound != nil {
			t.Errorf("a value entry carries an error: %v", e.notFound)
		}
		if plain, err := c.keys.current().open(e.sealed, key); err == nil && string(plain) == canary {
			opened++
		}
		return false
	})
	if held != 1 || opened != 1 {
		t.Fatalf("the cache holds %d entries, %d of them the canary's; want 1 and 1", held, opened)
	}
}

func TestFreshnessIsPerRead(t *testing.T) {
	c, clk := newCache(t, Config{MaxTTL: 10 * time.Minute})
	key := NewKey("a")
	p := newProvider(map[Key]string{key: "v1"})

	first := get(t, c, p, time.Minute, key)
	expectCalls(t, p, 1, "first read")
	if !first[0].Fetched.Equal(t0) {
		t.Errorf("fetched %v, want %v", first[0].Fetched, t0)
	}
	get(t, c, p, time.Minute, key)
	expectCalls(t, p, 1, "second read within a minute")

	clk.Step(30 * time.Second)
	p.set(func(p *provider) { p.values[key] = "v2" })
	if es := get(t, c, p, time.Minute, key); string(es[0].Data) != "v1" || !es[0].Fetched.Equal(t0) {
		t.Errorf("a read accepting 1m got %q fetched %v, want the 30s-old v1", es[0].Data, es[0].Fetched)
	}
	expectCalls(t, p, 1, "a reader accepting 1m, 30s later")
	if es := get(t, c, p, 10*time.Second, key); string(es[0].Data) != "v2" {
		t.Errorf("a read accepting 10s got %q, want a refetched v2", es[0].Data)
	}
	expectCalls(t, p, 2, "a reader accepting 10s, 30s later")
	if es := get(t, c, p, time.Minute, key); string(es[0].Data) != "v2" {
		t.Errorf("after the refetch, a read accepting 1m got %q", es[0].Data)
	}
	expectCalls(t, p, 2, "a reader accepting 1m after the refetch")

	clk.Step(time.Minute)
	get(t, c, p, time.Minute, key)
	expectCalls(t, p, 3, "a reader accepting 1m, 1m later")

	// Zero asks for a value read now.
	get(t, c, p, 0, key)
	expectCalls(t, p, 4, "a reader accepting nothing cached")

	// A refresh interval above --cache-max-ttl is capped by it.
	clk.Step(11 * time.Minute)
	get(t, c, p, 24*time.Hour, key)
	expectCalls(t, p, 5, "a reader accepting 24h, 11m later, with a 10m cap")
}

func TestEntriesExpireAfterTheLongestIntervalInUse(t *testing.T) {
	c, _ := newCache(t, Config{MaxTTL: time.Hour, Clock: clocktesting.NewFakeClock(time.Now())})
	p := newProvider(map[Key]string{NewKey("a"): "a", NewKey("b"): "b", NewKey("c"): "c"})
	ttl := func(k Key) time.Duration {
		t.Helper()
		d, ok := c.store.GetTTL(string(k))
		if !ok {
			t.Fatalf("no entry for %q", k)
		}
		return d
	}
	get(t, c, p, time.Minute, NewKey("a"))
	if d := ttl(NewKey("a")); d <= 50*time.Second || d > time.Minute {
		t.Errorf("with 1m in use, an entry lives %s, want 1m", d)
	}
	get(t, c, p, 20*time.Minute, NewKey("b"))
	if d := ttl(NewKey("b")); d <= 19*time.Minute || d > 20*time.Minute {
		t.Errorf("with 20m in use, an entry lives %s, want 20m", d)
	}
	get(t, c, p, 5*time.Hour, NewKey("c"))
	if d := ttl(NewKey("c")); d <= 59*time.Minute || d > time.Hour {
		t.Errorf("with 5h asked and a 1h cap, an entry lives %s, want 1h", d)
	}
}

func TestExpiredEntriesAreGone(t *testing.T) {
	c, err := New(Config{MaxBytes: 1 << 20, MaxTTL: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.store.Close() // no reader is left when it runs
	key := NewKey("short")
	p := newProvider(map[Key]string{key: "v"})
	get(t, c, p, time.Hour, key)
	if _, ok := c.store.Get(string(key)); !ok {
		t.Fatal("the entry was not stored")
	}
	time.Sleep(100 * time.Millisecond)
	if _, ok := c.store.Get(string(key)); ok {
		t.Fatal("the entry outlived its lifetime")
	}
}

func TestKeyRotationTurnsOldEntriesIntoMisses(t *testing.T) {
	c, clk := newCache(t, Config{KeyRotation: time.Hour})
	key := NewKey("a")
	p := newProvider(map[Key]string{key: "v"})
	get(t, c, p, 24*time.Hour, key)
	gen := c.keys.current().gen

	clk.Step(59 * time.Minute)
	get(t, c, p, 24*time.Hour, key)
	expectCalls(t, p, 1, "before rotation")

	clk.Step(2 * time.Minute)
	get(t, c, p, 24*time.Hour, key)
	expectCalls(t, p, 2, "after rotation")
	if c.keys.current().gen != gen+1 {
		t.Errorf("key generation %d, want %d", c.keys.current().gen, gen+1)
	}
	get(t, c, p, 24*time.Hour, key)
	expectCalls(t, p, 2, "a value sealed under the new key")
}

func TestRotatedEntriesCannotBeOpened(t *testing.T) {
	c, clk := newCache(t, Config{KeyRotation: time.Hour})
	key := NewKey("a")
	get(t, c, newProvider(map[Key]string{key: "v"}), 24*time.Hour, key)
	old, _ := c.store.Get(string(key))
	clk.Step(time.Hour)
	if _, err := c.keys.current().open(old.sealed, key); err == nil {
		t.Fatal("an entry sealed under the previous key opened under the new one")
	}
}

func TestByteBoundEvicts(t *testing.T) {
	const maxBytes = 64 << 10
	c, _ := newCache(t, Config{MaxBytes: maxBytes})
	values := map[Key]string{}
	var keys []Key
	for i := range 500 {
		k := NewKey(fmt.Sprint("key-", i))
		keys = append(keys, k)
		values[k] = strings.Repeat("x", 1024)
	}
	p := newProvider(values)
	for _, k := range keys {
		get(t, c, p, time.Hour, k)
	}
	c.store.Wait()
	if used := c.store.MaxCost() - c.store.RemainingCost(); used > maxBytes {
		t.Errorf("entries account for %d bytes, above the %d bound", used, maxBytes)
	}
	held := 0
	c.store.IterValues(func(*entry) bool { held++; return false })
	if held == 0 || held >= len(keys) || int64(held)*1024 > maxBytes {
		t.Errorf("the cache holds %d of %d 1KiB values under a %d byte bound", held, len(keys), maxBytes)
	}
	// What was evicted is read again from the provider.
	before := p.callCount()
	for _, k := range keys {
		get(t, c, p, time.Hour, k)
	}
	if p.callCount() == before {
		t.Error("no value was read again after evictions")
	}
}

// TestSingleFlight: 100 concurrent misses of one key make one provider
// call, and all 100 readers get its value.
func TestSingleFlight(t *testing.T) {
	c, _ := newCache(t, Config{})
	key := NewKey("hot")
	release := make(chan struct{})
	var calls atomic.Int32
	fetch := func(ctx context.Context, positions []int) []Outcome {
		calls.Add(1)
		<-release
		return []Outcome{{Data: []byte("v")}}
	}
	shared := func() float64 {
		v, err := testutil.GetCounterMetricValue(metrics.CacheSharedFetches)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	sharedBefore := shared()

	const readers = 100
	var wg sync.WaitGroup
	results := make([]string, readers)
	errs := make([]error, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			es, err := c.Get(context.Background(), []Key{key}, time.Hour, fetch)
			errs[i] = err
			if err == nil {
				results[i] = string(es[0].Data)
			}
		}()
	}
	// Hold the call until every other reader waits for it.
	for shared()-sharedBefore < readers-1 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("%d provider calls, want 1", n)
	}
	for i := range readers {
		if errs[i] != nil || results[i] != "v" {
			t.Fatalf("reader %d: %q, %v", i, results[i], errs[i])
		}
	}
}

// TestWaitersRespectTheirOwnContext: a reader that gives up returns at
// once, and its giving up — even the first reader's, which started the
// call — does not fail the others.
func TestWaitersRespectTheirOwnContext(t *testing.T) {
	c, _ := newCache(t, Config{})
	key := NewKey("slow")
	started, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	fetch := func(ctx context.Context, _ []int) []Outcome {
		if calls.Add(1) == 1 {
			close(started)
		}
		<-release
		return []Outcome{{Data: []byte("v")}}
	}
	read := func(ctx context.Context) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := c.Get(ctx, []Key{key}, time.Hour, fetch)
			done <- err
		}()
		return done
	}

	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leader := read(leaderCtx)
	<-started
	waiterCtx, cancelWaiter := context.WithCancel(context.Background())
	waiter := read(waiterCtx)
	patient := read(context.Background())

	cancelWaiter()
	if err := <-waiter; !errors.Is(err, context.Canceled) || providers.ReasonOf(err) != providers.Unavailable {
		t.Errorf("a cancelled waiter: %v, want Unavailable wrapping context.Canceled", err)
	}
	cancelLeader()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Errorf("the cancelled first reader: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-patient; err != nil {
		t.Errorf("a reader that kept waiting: %v", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d provider calls, want 1", n)
	}
}

func TestOnlyMissesAreFetched(t *testing.T) {
	c, _ := newCache(t, Config{NegativeTTL: time.Minute})
	a, b, missing := NewKey("a"), NewKey("b"), NewKey("missing")
	p := newProvider(map[Key]string{a: "A", b: "B"})
	get(t, c, p, time.Hour, a)
	es := get(t, c, p, time.Hour, a, b)
	if string(es[0].Data) != "A" || string(es[1].Data) != "B" {
		t.Errorf("got %q %q", es[0].Data, es[1].Data)
	}
	if len(p.asked) != 2 || len(p.asked[1]) != 1 || p.asked[1][0] != b {
		t.Errorf("the provider was asked %q, want [[a] [b]]", p.asked)
	}

	// One missing key fails the read, but what was found is kept.
	_, err := c.Get(context.Background(), []Key{missing, NewKey("c")}, time.Hour, p.fetch([]Key{missing, NewKey("c")}))
	if providers.ReasonOf(err) != providers.NotFound {
		t.Fatalf("a read with a missing key: %v, want NotFound", err)
	}
	p.set(func(p *provider) { p.values[NewKey("c")] = "C" })
	calls := p.callCount()
	get(t, c, p, time.Hour, a, b)
	expectCalls(t, p, calls, "cached values after a failed read")
}

func TestNegativeCache(t *testing.T) {
	c, clk := newCache(t, Config{NegativeTTL: 10 * time.Second})
	key := NewKey("gone")
	p := newProvider(map[Key]string{})
	read := func() error {
		_, err := c.Get(context.Background(), []Key{key}, time.Hour, p.fetch([]Key{key}))
		return err
	}
	for i := range 3 {
		if err := read(); providers.ReasonOf(err) != providers.NotFound || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("read %d: %v, want the provider's NotFound", i, err)
		}
	}
	expectCalls(t, p, 1, "NotFound within the negative TTL")

	clk.Step(11 * time.Second)
	p.set(func(p *provider) { p.values[key] = "created" })
	if err := read(); err != nil {
		t.Fatalf("after the negative TTL: %v", err)
	}
	expectCalls(t, p, 2, "after the negative TTL")

	// A reader's refresh interval shorter than the negative TTL wins.
	other := NewKey("other")
	if _, err := c.Get(context.Background(), []Key{other}, time.Hour, p.fetch([]Key{other})); err == nil {
		t.Fatal("a missing key was found")
	}
	clk.Step(5 * time.Second)
	if _, err := c.Get(context.Background(), []Key{other}, 3*time.Second, p.fetch([]Key{other})); err == nil {
		t.Fatal("a missing key was found")
	}
	expectCalls(t, p, 4, "a NotFound older than the reader's refresh interval")
}

func TestNoNegativeCaching(t *testing.T) {
	c, _ := newCache(t, Config{})
	key := NewKey("gone")
	p := newProvider(map[Key]string{})
	for range 3 {
		if _, err := c.Get(context.Background(), []Key{key}, time.Hour, p.fetch([]Key{key})); providers.ReasonOf(err) != providers.NotFound {
			t.Fatalf("got %v, want NotFound", err)
		}
	}
	expectCalls(t, p, 3, "NotFound with --negative-cache-ttl=0")
}

func TestStaleOnError(t *testing.T) {
	c, clk := newCache(t, Config{MaxStale: time.Hour})
	key := NewKey("db")
	p := newProvider(map[Key]string{key: "v1"})
	get(t, c, p, time.Minute, key)

	outage := providers.Errorf(providers.Unavailable, "vault.example: connection refused")
	p.set(func(p *provider) { p.fail = outage })
	clk.Step(10 * time.Minute)
	es := get(t, c, p, time.Minute, key)
	if string(es[0].Data) != "v1" || !es[0].Fetched.Equal(t0) || !errors.Is(es[0].Stale, outage) {
		t.Errorf("within --max-stale: %q fetched %v stale %v; want v1 from t0, stale because of the outage", es[0].Data, es[0].Fetched, es[0].Stale)
	}
	expectCalls(t, p, 2, "a stale read still asks the provider")

	clk.Step(51 * time.Minute)
	_, err := c.Get(context.Background(), []Key{key}, time.Minute, p.fetch([]Key{key}))
	if providers.ReasonOf(err) != providers.Unavailable || !errors.Is(err, outage) ||
		!strings.Contains(err.Error(), "1h1m0s old, is older than veil-apiserver's --max-stale (1h0m0s)") {
		t.Errorf("beyond --max-stale: %v, want Unavailable naming the age and --max-stale", err)
	}

	// The failure was not cached: once the provider answers, so does the cache.
	p.set(func(p *provider) { p.fail = nil; p.values[key] = "v2" })
	if es := get(t, c, p, time.Minute, key); string(es[0].Data) != "v2" || es[0].Stale != nil {
		t.Errorf("after the outage: %q stale %v", es[0].Data, es[0].Stale)
	}
}

func TestStaleOnErrorIsOffByDefault(t *testing.T) {
	c, clk := newCache(t, Config{})
	key := NewKey("db")
	p := newProvider(map[Key]string{key: "v1"})
	get(t, c, p, time.Minute, key)
	outage := providers.Errorf(providers.Unavailable, "connection refused")
	p.set(func(p *provider) { p.fail = outage })
	clk.Step(2 * time.Minute)
	if _, err := c.Get(context.Background(), []Key{key}, time.Minute, p.fetch([]Key{key})); err != outage {
		t.Errorf("got %v, want the provider's error as it was", err)
	}
}

// TestRefusalDropsTheValue: a provider that now refuses the store's
// identity must not leave its old value to readers who accept older values.
func TestRefusalDropsTheValue(t *testing.T) {
	c, clk := newCache(t, Config{MaxStale: time.Hour})
	key := NewKey("db")
	p := newProvider(map[Key]string{key: "v1"})
	get(t, c, p, time.Hour, key)

	p.set(func(p *provider) { p.fail = providers.Errorf(providers.Forbidden, "permission denied") })
	clk.Step(2 * time.Minute)
	if _, err := c.Get(context.Background(), []Key{key}, time.Minute, p.fetch([]Key{key})); providers.ReasonOf(err) != providers.Forbidden {
		t.Fatalf("got %v, want Forbidden and no stale value", err)
	}
	if _, err := c.Get(context.Background(), []Key{key}, time.Hour, p.fetch([]Key{key})); providers.ReasonOf(err) != providers.Forbidden {
		t.Fatalf("a reader accepting 1h after the refusal: %v, want Forbidden", err)
	}
	expectCalls(t, p, 3, "reads after a refusal")
}

func TestPanickingProviderFailsTheRead(t *testing.T) {
	c, _ := newCache(t, Config{})
	_, err := c.Get(context.Background(), []Key{NewKey("a")}, time.Hour, func(context.Context, []int) []Outcome { panic("boom") })
	if providers.ReasonOf(err) != providers.Unavailable || strings.Contains(err.Error(), "boom") {
		t.Errorf("got %v, want Unavailable without the panic value", err)
	}
}

func TestNilCacheCallsTheProvider(t *testing.T) {
	var c *Cache
	key := NewKey("a")
	p := newProvider(map[Key]string{key: "v"})
	for range 2 {
		if es := get(t, c, p, time.Hour, key); string(es[0].Data) != "v" {
			t.Fatalf("got %q", es[0].Data)
		}
	}
	expectCalls(t, p, 2, "without a cache")
}

// TestACallOlderThanAReaderWantsIsNotShared: a reader that wants values
// read after some moment (a change it has just seen) does not join a call
// that began before it, which may have read the value from before the
// change; it makes its own, and the older call, finishing last, does not
// replace the newer value.
func TestACallOlderThanAReaderWantsIsNotShared(t *testing.T) {
	c, clk := newCache(t, Config{})
	key := NewKey("rotated")
	releaseOld := make(chan struct{})
	oldStarted := make(chan struct{})
	oldFetch := func(ctx context.Context, positions []int) []Outcome {
		close(oldStarted)
		<-releaseOld
		return []Outcome{{Data: []byte("before")}}
	}
	oldDone := make(chan []Entry)
	go func() {
		es, err := c.Get(context.Background(), []Key{key}, time.Hour, oldFetch)
		if err != nil {
			t.Error(err)
		}
		oldDone <- es
	}()
	<-oldStarted

	clk.Step(time.Second)
	var newCalls atomic.Int32
	es, err := c.Get(context.Background(), []Key{key}, time.Millisecond, func(ctx context.Context, positions []int) []Outcome {
		newCalls.Add(1)
		return []Outcome{{Data: []byte("after")}}
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(es[0].Data) != "after" || newCalls.Load() != 1 {
		t.Fatalf("a reader wanting values younger than the call in flight got %q with %d calls of its own", es[0].Data, newCalls.Load())
	}
	close(releaseOld)
	if old := <-oldDone; string(old[0].Data) != "before" {
		t.Errorf("the older reader got %q", old[0].Data)
	}
	// The cache keeps the newer read.
	es, err = c.Get(context.Background(), []Key{key}, time.Hour, func(ctx context.Context, positions []int) []Outcome {
		t.Error("the provider was called for a cached value")
		return []Outcome{{Data: []byte("third")}}
	})
	if err != nil || string(es[0].Data) != "after" {
		t.Errorf("cached after both calls: %q, %v; want the newer read", es[0].Data, err)
	}
}
