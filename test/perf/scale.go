package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/cache"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	"github.com/veil-dev/veil/test/harness"
)

var (
	p3Readers = flag.Int("p3-readers", 100, "P3: ExternalSecrets reading the same remote keys")
	p3Keys    = flag.Int("p3-keys", 20, "P3: unique remote keys every ExternalSecret reads")
	p3Rounds  = flag.Int("p3-rounds", 3, "P3: times each ExternalSecret is read within the refresh window")
)

func init() {
	scenarios = append(scenarios,
		scenario{"P3", "provider calls for N ExternalSecrets x M unique remote keys, each read several times within one refresh window (goal: exactly M)", providerCallsPerUniqueValue},
		scenario{"P5", "memory per cached 1 KiB value at 10k and 100k entries, measured in-process around filling a pkg/cache instance (goal: <= 2 KiB overhead)", memoryPerValue},
	)
}

// cacheActivity is what veil-apiserver's metrics say about provider calls
// to fake stores and the cache.
type cacheActivity struct{ gets, hits, shared float64 }

func readActivity(ctx context.Context, c *harness.Cluster) (cacheActivity, error) {
	return replicaActivity(ctx, c, 0)
}

// replicaActivity is readActivity of replica i.
func replicaActivity(ctx context.Context, c *harness.Cluster, i int) (cacheActivity, error) {
	m, err := c.VeilReplicaMetrics(ctx, i)
	if err != nil {
		return cacheActivity{}, err
	}
	return cacheActivity{
		gets:   m.Sum("veil_provider_calls_total", map[string]string{"provider": "fake", "operation": "get"}),
		hits:   m.Sum("veil_cache_hits_total", nil),
		shared: m.Sum("veil_cache_shared_fetches_total", nil),
	}, nil
}

// duringMeasurement runs f and prints what the provider and the cache did
// meanwhile, so a reader can tell the measured reads were answered from the
// cache and not by something else.
func duringMeasurement(ctx context.Context, c *harness.Cluster, f func() error) error {
	before, err := readActivity(ctx, c)
	if err != nil {
		return err
	}
	if err := f(); err != nil {
		return err
	}
	after, err := readActivity(ctx, c)
	if err != nil {
		return err
	}
	fmt.Printf("  during these measurements veil-apiserver made %.0f provider calls and answered %.0f remote values from its cache\n\n",
		after.gets-before.gets, after.hits-before.hits)
	return nil
}

// providerCallsPerUniqueValue is P3: a fresh store (so a cold cache) with M
// keys, N ExternalSecrets naming all of them with a refresh interval longer
// than the run, each read several times by concurrent clients.
func providerCallsPerUniqueValue(ctx context.Context, c *harness.Cluster) error {
	l, err := readSharedKeys(ctx, c, func(ctx context.Context) (cacheActivity, error) { return readActivity(ctx, c) })
	if err != nil {
		return err
	}
	fmt.Printf("%d ExternalSecrets x %d unique remote keys, each ExternalSecret read %d times by %d concurrent clients in %s (refresh interval %s)\n",
		*p3Readers, *p3Keys, *p3Rounds, *concurrency, l.elapsed.Round(time.Millisecond), p3Window)
	fmt.Printf("  reads of ExternalSecretValues:        %d (%d remote values)\n", l.reads, l.reads**p3Keys)
	fmt.Printf("  provider calls:                       %.0f (goal: exactly %d)\n", l.activity.gets, *p3Keys)
	fmt.Printf("  remote values answered by the cache:  %.0f\n", l.activity.hits)
	fmt.Printf("  misses that shared a call in flight:  %.0f\n\n", l.activity.shared)
	return nil
}

// p3Window is the refresh interval of P3's ExternalSecrets: longer than
// the reads take, so every provider call counted is a cache miss.
const p3Window = 10 * time.Minute

// sharedKeysLoad is what one run of P3's read load did.
type sharedKeysLoad struct {
	reads    int
	elapsed  time.Duration
	activity cacheActivity // what veil-apiserver (every replica) did meanwhile
}

// readSharedKeys runs P3's read load in a new namespace with its own store,
// and counts what activity reports over it.
func readSharedKeys(ctx context.Context, c *harness.Cluster, activity func(context.Context) (cacheActivity, error)) (sharedKeysLoad, error) {
	var l sharedKeysLoad
	ns := fmt.Sprintf("perf-p3-%d", time.Now().UnixNano())
	if _, err := c.KubeClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return l, err
	}
	keys := make([]configv1alpha1.FakeProviderData, *p3Keys)
	refs := make([]configv1alpha1.ExternalSecretData, *p3Keys)
	for k := range keys {
		keys[k] = configv1alpha1.FakeProviderData{Key: fmt.Sprintf("app/key-%d", k), Value: printable(*valueSize)}
		refs[k] = configv1alpha1.ExternalSecretData{SecretKey: fmt.Sprintf("k%d", k), RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: keys[k].Key}}
	}
	if _, err := c.VeilClient.ConfigV1alpha1().SecretStores(ns).Create(ctx, &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "store"},
		Spec:       configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{Data: keys}}},
	}, metav1.CreateOptions{}); err != nil {
		return l, err
	}
	for i := range *p3Readers {
		if _, err := c.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctx, &configv1alpha1.ExternalSecret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("reader-%d", i)},
			Spec: configv1alpha1.ExternalSecretSpec{
				SecretStoreRef:  new(configv1alpha1.SecretStoreRef{Name: "store", Kind: configv1alpha1.SecretStoreKind}),
				RefreshInterval: &metav1.Duration{Duration: p3Window},
				Data:            refs,
			},
		}, metav1.CreateOptions{}); err != nil {
			return l, err
		}
	}
	cfg := rest.CopyConfig(c.Admin)
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	client, err := versioned.NewForConfig(cfg)
	if err != nil {
		return l, err
	}

	before, err := activity(ctx)
	if err != nil {
		return l, err
	}
	start := time.Now()
	work := make(chan string)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range *concurrency {
		wg.Go(func() {
			for name := range work {
				v, err := client.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctx, name, metav1.GetOptions{})
				if err == nil && len(v.Data) != *p3Keys {
					err = fmt.Errorf("%s: %d keys, want %d", name, len(v.Data), *p3Keys)
				}
				mu.Lock()
				l.reads++
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	for range *p3Rounds {
		for i := range *p3Readers {
			work <- fmt.Sprintf("reader-%d", i)
		}
	}
	close(work)
	wg.Wait()
	l.elapsed = time.Since(start)
	if firstErr != nil {
		return l, firstErr
	}
	if l.elapsed >= p3Window {
		return l, fmt.Errorf("the reads took %s, longer than the %s refresh window", l.elapsed, p3Window)
	}
	after, err := activity(ctx)
	if err != nil {
		return l, err
	}
	l.activity = cacheActivity{gets: after.gets - before.gets, hits: after.hits - before.hits, shared: after.shared - before.shared}
	return l, nil
}

// memoryPerValue is P5: the heap a pkg/cache instance holds per 1 KiB value
// once filled through its read path (sealing included), sized, as an
// operator would size --cache-max-bytes, to hold them all.
func memoryPerValue(context.Context, *harness.Cluster) error {
	fmt.Printf("%-10s %8s %14s %16s %22s\n", "entries", "held", "heap bytes", "bytes per value", "overhead per value")
	for _, n := range []int{10_000, 100_000} {
		held, heap, err := fillCache(n, 1024)
		if err != nil {
			return err
		}
		per := float64(heap) / float64(held)
		fmt.Printf("%-10d %8d %14d %16.0f %22.0f\n", n, held, heap, per, per-1024)
	}
	fmt.Println()
	return nil
}

// fillCache fills a new cache with n values of size bytes and returns how
// many it holds and how much the heap grew, cache structures included.
func fillCache(n, size int) (held int, heap uint64, err error) {
	value := []byte(printable(size))
	keys := make([]cache.Key, n)
	for i := range keys {
		// Shaped like the keys stores.Identity makes: store identity, then the remote key.
		keys[i] = cache.NewKey("SecretStore", "team-namespace", "vault", "6f1c2a4e-7d0b-4c55-9a43-1f0e5b8d2c71", "3",
			"9d4c1e0f2b7a6c5d8e3f1a0b9c8d7e6f", "get", fmt.Sprintf("apps/team/service-%06d/credentials", i), "")
	}
	ctx := context.Background()
	fetch := func(context.Context, []int) []cache.Outcome { return []cache.Outcome{{Data: value}} }

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c, err := cache.New(cache.Config{MaxBytes: int64(n) * (int64(size) + 512), MaxTTL: time.Hour})
	if err != nil {
		return 0, 0, err
	}
	for _, k := range keys {
		if _, err := c.Get(ctx, []cache.Key{k}, time.Hour, fetch); err != nil {
			return 0, 0, err
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)

	missed := 0
	countMiss := func(context.Context, []int) []cache.Outcome { missed++; return []cache.Outcome{{Data: value}} }
	for _, k := range keys {
		if _, err := c.Get(ctx, []cache.Key{k}, time.Hour, countMiss); err != nil {
			return 0, 0, err
		}
	}
	return n - missed, after.HeapAlloc - before.HeapAlloc, nil
}
