package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// result summarises latencies of one path.
type result struct {
	n         int
	p50, p99  time.Duration
	perSecond float64
	errors    int
	firstErr  error
}

func summarise(lat []time.Duration, elapsed time.Duration, errs int, firstErr error) result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := result{n: len(lat), errors: errs, firstErr: firstErr}
	if len(lat) > 0 {
		r.p50 = lat[len(lat)*50/100]
		r.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
		r.perSecond = float64(len(lat)) / elapsed.Seconds()
	}
	return r
}

// sequential calls f n times, one at a time.
func sequential(ctx context.Context, n int, f func(context.Context) error) result {
	lat := make([]time.Duration, 0, n)
	errs := 0
	var firstErr error
	start := time.Now()
	for range n {
		t := time.Now()
		if err := f(ctx); err != nil {
			errs++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		lat = append(lat, time.Since(t))
	}
	return summarise(lat, time.Since(start), errs, firstErr)
}

// latencies collects the outcomes of calls made from several goroutines.
type latencies struct {
	mu       sync.Mutex
	lat      []time.Duration
	errs     int
	firstErr error
}

func (l *latencies) add(took time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errs++
		if l.firstErr == nil {
			l.firstErr = err
		}
		return
	}
	l.lat = append(l.lat, took)
}

func (l *latencies) result(elapsed time.Duration) result {
	return summarise(l.lat, elapsed, l.errs, l.firstErr)
}

// timed calls f and returns how long it took.
func timed(ctx context.Context, f func(context.Context) error) (time.Duration, error) {
	t := time.Now()
	err := f(ctx)
	return time.Since(t), err
}

// concurrent calls f from workers goroutines for d.
func concurrent(ctx context.Context, workers int, d time.Duration, f func(context.Context) error) result {
	var l latencies
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				l.add(timed(ctx, f))
			}
		})
	}
	wg.Wait()
	return l.result(time.Since(start))
}

// compare prints two results and the ratios of the first to the second.
func compare(label string, veil, native result, veilName, nativeName string) error {
	for _, r := range []result{veil, native} {
		if r.errors > 0 {
			return fmt.Errorf("%s: %d requests failed, first: %v", label, r.errors, r.firstErr)
		}
	}
	fmt.Printf("%-34s %8s %10s %10s %12s\n", label, "n", "p50", "p99", "req/s")
	fmt.Printf("  %-32s %8d %10s %10s %12.0f\n", veilName, veil.n, round(veil.p50), round(veil.p99), veil.perSecond)
	fmt.Printf("  %-32s %8d %10s %10s %12.0f\n", nativeName, native.n, round(native.p50), round(native.p99), native.perSecond)
	fmt.Printf("  %-32s %8s %9.2fx %9.2fx %11.2fx\n\n", "ratio", "",
		ratio(veil.p50, native.p50), ratio(veil.p99, native.p99), veil.perSecond/native.perSecond)
	return nil
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func round(d time.Duration) string { return d.Round(time.Microsecond).String() }

// paced calls f rate times a second for d, each call in its own goroutine
// (at most 64 at once), whether or not earlier calls have returned: an
// open-loop load, whose latencies are not hidden by a client waiting for
// itself, and which leaves the servers idle between calls.
func paced(ctx context.Context, rate float64, d time.Duration, f func(context.Context) error) result {
	var l latencies
	var wg sync.WaitGroup
	slots := make(chan struct{}, 64)
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	start := time.Now()
	for deadline := start.Add(d); time.Now().Before(deadline); <-tick.C {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			l.add(timed(ctx, f))
		})
	}
	wg.Wait()
	return l.result(time.Since(start))
}
