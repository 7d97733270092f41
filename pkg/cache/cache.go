// Package cache keeps the remote values veil-apiserver read from providers,
// sealed, so that provider calls grow with the number of distinct remote
// values rather than with the number of readers or ExternalSecrets.
//
// Entries are shared by every reader that names the same value through the
// same store identity; each read says how old a value it accepts. Values
// are sealed with AES-256-GCM under a per-process key that rotates, with
// the cache key as associated data. Concurrent misses of one key make one
// provider call. Errors are never cached as values: only NotFound is
// remembered, briefly, and a provider outage may be bridged with a value
// no older than MaxStale.
package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

// Key names one cached remote value or find result. It is also the GCM
// associated data of its entry, so a sealed value opens only under the key
// it was stored under: an entry can never be served for another key, even
// if the two collided in the cache's hash table.
type Key string

// NewKey joins fields into a Key. Each field is length-prefixed, so no two
// different lists of fields give the same Key.
func NewKey(fields ...string) Key {
	bs := make([][]byte, len(fields))
	for i, f := range fields {
		bs[i] = []byte(f)
	}
	return Key(Pack(bs...))
}

// Pack encodes fields, each length-prefixed, as one byte string: several
// values can then be cached, and sealed, as one entry.
func Pack(fields ...[]byte) []byte {
	n := 0
	for _, f := range fields {
		n += binary.MaxVarintLen64 + len(f)
	}
	b := make([]byte, 0, n)
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// Unpack reverses Pack. The fields share b's memory.
func Unpack(b []byte) ([][]byte, error) {
	var fields [][]byte
	for len(b) > 0 {
		l, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < l {
			return nil, errors.New("malformed packed fields")
		}
		fields = append(fields, b[w:w+int(l)])
		b = b[w+int(l):]
	}
	return fields, nil
}

// Config tunes a Cache.
type Config struct {
	// MaxBytes bounds what the entries hold, sealed values and bookkeeping
	// (--cache-max-bytes).
	MaxBytes int64
	// MaxTTL bounds how old a value any read accepts and so how long an
	// entry is kept (--cache-max-ttl).
	MaxTTL time.Duration
	// NegativeTTL is how long a NotFound is remembered; 0 never
	// (--negative-cache-ttl).
	NegativeTTL time.Duration
	// MaxStale is how old a value may be and still be served when the
	// provider is unavailable; 0 never (--max-stale).
	MaxStale time.Duration
	// KeyRotation is how long one sealing key is used; 0 never rotates
	// (--cache-key-rotation).
	KeyRotation time.Duration
	// Clock is the real clock when nil.
	Clock clock.PassiveClock
}

// Entry is one value as a read receives it.
type Entry struct {
	// Data is the plaintext. Concurrent readers may share it: it must not
	// be modified.
	Data []byte
	// Fetched is when the provider returned it.
	Fetched time.Time
	// Stale is the provider failure this value stands in for, when it is
	// older than the read asked for; nil otherwise.
	Stale error
}

// Outcome is what the provider returned for one key.
type Outcome struct {
	Data []byte
	Err  error
}

// Fetch reads from the provider the values at the given positions of the
// keys passed to Get, and returns one Outcome per position, in order.
// Errors must be *providers.Error: their reason decides what is cached.
type Fetch func(ctx context.Context, positions []int) []Outcome

// Cache is the sealed value cache. A nil *Cache caches nothing: every Get
// calls fetch.
type Cache struct {
	cfg   Config
	clock clock.PassiveClock
	store *ristretto.Cache[string, *entry]
	keys  *keyring
	// longest is the longest refresh interval a read has asked for, capped
	// by MaxTTL: no read accepts an entry older than that, so entries
	// expire after it (or MaxStale, when longer).
	longest atomic.Int64

	mu       sync.Mutex // guards inflight, and orders stores before hand-offs
	inflight map[Key]*call
}

// entry is what the cache holds for one key: a sealed value, or a NotFound.
type entry struct {
	sealed   []byte // nonce, ciphertext and tag; nil for a NotFound
	notFound error
	fetched  int64 // Unix nanoseconds
	gen      uint64
}

// entrySize is what an entry costs besides its sealed bytes.
const entrySize = int64(unsafe.Sizeof(entry{}))

// typicalEntryBytes sizes the admission policy's counters: ristretto wants
// about ten per entry it will hold, and most remote values are small.
const typicalEntryBytes = 1024

// fetchTimeout bounds a provider call. The call is not bound to the request
// that started it, because other readers may be waiting for its result.
const fetchTimeout = 30 * time.Second

// call is one provider read in flight, which concurrent misses share.
type call struct {
	done  chan struct{}
	entry Entry
	err   error
	// started is when the call began: a reader that wants values no older
	// than a time after it does not share it.
	started time.Time
}

// New returns an empty cache.
func New(cfg Config) (*Cache, error) {
	if cfg.MaxBytes <= 0 || cfg.MaxTTL <= 0 {
		return nil, fmt.Errorf("the cache needs a positive byte bound and maximum TTL, not %d bytes and %s", cfg.MaxBytes, cfg.MaxTTL)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	c := &Cache{cfg: cfg, clock: cfg.Clock, keys: newKeyring(cfg.Clock, cfg.KeyRotation), inflight: map[Key]*call{}}
	store, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters: max(10*cfg.MaxBytes/typicalEntryBytes, 1000),
		MaxCost:     cfg.MaxBytes,
		BufferItems: 64,
		OnEvict: func(it *ristretto.Item[*entry]) {
			// Victims of the byte bound carry no expiration; entries whose
			// lifetime ended do.
			reason := "capacity"
			if !it.Expiration.IsZero() {
				reason = "expired"
			}
			metrics.CacheEvictions.WithLabelValues(reason).Inc()
			c.reportBytes()
		},
		OnReject: func(*ristretto.Item[*entry]) {
			metrics.CacheEvictions.WithLabelValues("rejected").Inc()
		},
	})
	if err != nil {
		return nil, err
	}
	c.store = store
	return c, nil
}

// Get returns the values of keys, each no older than maxAge, reading those
// the cache cannot answer through fetch. A value older than maxAge is
// refetched; if the provider is then unavailable and the value is younger
// than MaxStale, it is returned with Stale set. Get fails with the first
// failing key's error, in the order of keys.
func (c *Cache) Get(ctx context.Context, keys []Key, maxAge time.Duration, fetch Fetch) ([]Entry, error) {
	if c == nil {
		return passThrough(ctx, len(keys), fetch)
	}
	maxAge = c.use(maxAge)
	out := make([]Entry, len(keys))
	var missing []int
	now := c.clock.Now()
	for i, k := range keys {
		e, miss, err := c.lookup(k, maxAge, now)
		if miss != "" {
			metrics.CacheMisses.WithLabelValues(miss).Inc()
			missing = append(missing, i)
			continue
		}
		if err != nil {
			// A remembered NotFound fails the read; the other keys need
			// not be fetched for it.
			metrics.CacheHits.WithLabelValues("not_found").Inc()
			return nil, err
		}
		metrics.CacheHits.WithLabelValues("value").Inc()
		out[i] = e
	}
	if len(missing) == 0 {
		return out, nil
	}
	if err := c.load(ctx, keys, missing, maxAge, fetch, out); err != nil {
		return nil, err
	}
	return out, nil
}

func passThrough(ctx context.Context, n int, fetch Fetch) ([]Entry, error) {
	positions := make([]int, n)
	for i := range positions {
		positions[i] = i
	}
	now := time.Now()
	out := make([]Entry, n)
	for i, o := range fetch(ctx, positions) {
		if o.Err != nil {
			return nil, o.Err
		}
		out[i] = Entry{Data: o.Data, Fetched: now}
	}
	return out, nil
}

// use caps a read's maximum age and records it as in use.
func (c *Cache) use(maxAge time.Duration) time.Duration {
	maxAge = min(max(maxAge, 0), c.cfg.MaxTTL)
	for {
		cur := c.longest.Load()
		if int64(maxAge) <= cur || c.longest.CompareAndSwap(cur, int64(maxAge)) {
			return maxAge
		}
	}
}

// lookup answers key from the cache with a value, or with a remembered
// NotFound as notFound; when it cannot, miss says why.
func (c *Cache) lookup(key Key, maxAge time.Duration, now time.Time) (_ Entry, miss string, notFound error) {
	e, ok := c.store.Get(string(key))
	if !ok {
		return Entry{}, "absent", nil
	}
	k := c.keys.current()
	if e.gen != k.gen {
		return Entry{}, "key_rotated", nil
	}
	fetched := time.Unix(0, e.fetched)
	age := now.Sub(fetched)
	if e.sealed == nil {
		if age < min(maxAge, c.cfg.NegativeTTL) {
			return Entry{}, "", e.notFound
		}
		return Entry{}, "too_old", nil
	}
	if age >= maxAge {
		return Entry{}, "too_old", nil
	}
	data, err := k.open(e.sealed, key)
	if err != nil {
		return Entry{}, "unreadable", nil
	}
	return Entry{Data: data, Fetched: fetched}, "", nil
}

// load answers the keys at positions missing, sharing provider calls that
// are already in flight and starting one for the rest. Each reader waits
// only as long as its own context allows; the call itself carries on for
// the others.
func (c *Cache) load(ctx context.Context, keys []Key, missing []int, maxAge time.Duration, fetch Fetch, out []Entry) error {
	calls := make([]*call, len(missing))
	var lead []int
	var leadCalls []*call
	c.mu.Lock()
	now := c.clock.Now()
	for j, i := range missing {
		k := keys[i]
		// A call that began too long ago for this reader (one that asks
		// for values read after a change it has just seen) is not shared;
		// a new one takes its place for later readers.
		if cl, ok := c.inflight[k]; ok && now.Sub(cl.started) < maxAge {
			metrics.CacheSharedFetches.Inc()
			calls[j] = cl
			continue
		}
		// A call that finished since the lookup above stored its value
		// before leaving inflight, under mu: look again rather than call
		// the provider a second time.
		if e, miss, err := c.lookup(k, maxAge, now); miss == "" {
			done := make(chan struct{})
			close(done)
			calls[j] = &call{done: done, entry: e, err: err}
			continue
		}
		cl := &call{done: make(chan struct{}), started: now}
		c.inflight[k] = cl
		calls[j] = cl
		lead = append(lead, i)
		leadCalls = append(leadCalls, cl)
	}
	c.mu.Unlock()
	if len(lead) > 0 {
		go c.run(context.WithoutCancel(ctx), keys, lead, leadCalls, fetch)
	}

	for j, i := range missing {
		select {
		case <-calls[j].done:
		case <-ctx.Done():
			return providers.Wrap(providers.Unavailable, ctx.Err(), "the request ended while waiting for the provider")
		}
		if calls[j].err != nil {
			return calls[j].err
		}
		out[i] = calls[j].entry
	}
	return nil
}

// run makes one provider call for the keys at positions lead, stores what
// it returned, and hands the results to every reader waiting on calls.
func (c *Cache) run(ctx context.Context, keys []Key, lead []int, calls []*call, fetch Fetch) {
	outcomes := callProvider(ctx, lead, fetch)
	now := c.clock.Now()
	for j, i := range lead {
		// A value is as old as the call that read it: one read before a
		// change but stored after it must not pass for newer.
		calls[j].entry, calls[j].err = c.settle(keys[i], outcomes[j], calls[j].started, now)
	}
	// Stores become visible to lookups only once ristretto has applied
	// them; until then the calls stay in flight, so no reader misses in
	// between and calls the provider again.
	c.store.Wait()
	c.reportBytes()
	c.mu.Lock()
	for j, i := range lead {
		if c.inflight[keys[i]] == calls[j] {
			delete(c.inflight, keys[i])
		}
	}
	c.mu.Unlock()
	for _, cl := range calls {
		close(cl.done)
	}
}

// callProvider runs fetch with a deadline of its own. A provider client
// that panics fails the read instead of the process: this runs outside the
// request's goroutine, where the server's panic recovery does not reach.
func callProvider(ctx context.Context, positions []int, fetch Fetch) (out []Outcome) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	failAll := func() []Outcome {
		err := providers.Errorf(providers.Unavailable, "the provider client failed unexpectedly; see veil-apiserver's log")
		out := make([]Outcome, len(positions))
		for j := range out {
			out[j].Err = err
		}
		return out
	}
	defer func() {
		if p := recover(); p != nil {
			// The stack, not the panic value, which could quote a value.
			klog.ErrorS(nil, "Provider read panicked", "stack", string(debug.Stack()))
			out = failAll()
		}
	}()
	out = fetch(ctx, positions)
	if len(out) != len(positions) {
		klog.ErrorS(nil, "Provider read returned the wrong number of results", "want", len(positions), "got", len(out))
		return failAll()
	}
	return out
}

// settle stores what the provider returned for key and decides what the
// readers get.
// fetched is when the call began.
func (c *Cache) settle(key Key, o Outcome, fetched, now time.Time) (Entry, error) {
	if o.Err == nil {
		k := c.keys.current()
		// A call that a newer one overtook leaves the newer value.
		if e, ok := c.store.Get(string(key)); !ok || e.gen != k.gen || e.fetched <= fetched.UnixNano() {
			c.put(key, &entry{sealed: k.seal(o.Data, key), fetched: fetched.UnixNano(), gen: k.gen}, c.lifetime())
		}
		return Entry{Data: o.Data, Fetched: fetched}, nil
	}
	switch providers.ReasonOf(o.Err) {
	case providers.NotFound:
		if c.cfg.NegativeTTL > 0 {
			c.put(key, &entry{notFound: o.Err, fetched: fetched.UnixNano(), gen: c.keys.current().gen}, c.cfg.NegativeTTL)
		} else {
			c.store.Del(string(key))
		}
		return Entry{}, o.Err
	case providers.Unavailable, providers.Throttled:
		// A throttled call was never made: like an outage, it is answered
		// with the last value when there is one young enough.
		return c.stale(key, now, o.Err)
	default:
		// The provider refused this identity or this request: a value it
		// served before must not outlive that for readers who accept
		// older values.
		c.store.Del(string(key))
		return Entry{}, o.Err
	}
}

// stale returns the last value of key in place of an unavailable provider,
// if it is younger than MaxStale.
func (c *Cache) stale(key Key, now time.Time, cause error) (Entry, error) {
	if c.cfg.MaxStale <= 0 {
		return Entry{}, cause
	}
	e, ok := c.store.Get(string(key))
	k := c.keys.current()
	if !ok || e.sealed == nil || e.gen != k.gen {
		return Entry{}, cause
	}
	fetched := time.Unix(0, e.fetched)
	if age := now.Sub(fetched); age >= c.cfg.MaxStale {
		if providers.ReasonOf(cause) == providers.Throttled {
			return Entry{}, cause
		}
		return Entry{}, providers.Wrap(providers.Unavailable, cause,
			"the provider is unavailable, and the last value read from it, %s old, is older than veil-apiserver's --max-stale (%s)",
			age.Round(time.Second), c.cfg.MaxStale)
	}
	data, err := k.open(e.sealed, key)
	if err != nil {
		return Entry{}, cause
	}
	metrics.CacheStaleServed.Inc()
	return Entry{Data: data, Fetched: fetched, Stale: cause}, nil
}

// lifetime is how long a new value is kept: as long as the longest refresh
// interval in use, or MaxStale when that is longer.
func (c *Cache) lifetime() time.Duration {
	return max(time.Duration(c.longest.Load()), c.cfg.MaxStale)
}

// put stores an entry for ttl. A ttl of zero means no read could use the
// entry (every read so far wants a fresh value and stale serving is off),
// and ristretto would keep it forever, so nothing is stored.
func (c *Cache) put(key Key, e *entry, ttl time.Duration) {
	if ttl <= 0 {
		c.store.Del(string(key))
		return
	}
	cost := entrySize + int64(len(e.sealed))
	if e.notFound != nil {
		cost += int64(len(e.notFound.Error()))
	}
	c.store.SetWithTTL(string(key), e, cost, ttl)
}

// reportBytes publishes what the entries account for.
func (c *Cache) reportBytes() {
	metrics.CacheBytes.Set(float64(c.store.MaxCost() - c.store.RemainingCost()))
}
