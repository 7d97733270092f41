package remote

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	// The provider the benchmark serves, in process and out of it.
	_ "github.com/veil-dev/veil/pkg/providers/fake"
)

// BenchmarkGet reads one 1 KiB value from the fake provider, with no
// cache in between: in process, and through gRPC with mutual TLS on
// loopback over one reused connection. It reports the p50 and p99 of a
// read; the difference between the two runs is what the protocol adds.
//
//	go test -run '^$' -bench BenchmarkGet -benchtime 20000x ./pkg/providers/remote
func BenchmarkGet(b *testing.B) {
	value := strings.Repeat("v", 1024)
	fakeSpec := &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{
		Data: []configv1alpha1.FakeProviderData{{Key: "app/db", Value: value}}}}}
	fake, err := providers.For(fakeSpec)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("in-process", func(b *testing.B) {
		store := storeRef("app", "db")
		store.Spec = fakeSpec
		c, err := fake.NewClient(context.Background(), store, nil, providers.Env{})
		if err != nil {
			b.Fatal(err)
		}
		measureGet(b, c)
	})
	b.Run("grpc-mtls", func(b *testing.B) {
		e := serve(b, fake, `
stores:
- kind: SecretStore
  namespace: app
  name: db
  keyPrefixes: ["app/"]
  provider: {fake: {data: [{key: app/db, value: "`+value+`"}]}}
  limits: {qps: 1000000, burst: 1000000, concurrency: 1024}
`)
		measureGet(b, mustClient(b, e.provider(b, e.clientTLS, providerID), "app", "db"))
	})
}

func measureGet(b *testing.B, c providers.Client) {
	ctx := context.Background()
	ref := providers.Ref{Key: "app/db"}
	// One read first: the connection and the provider's client are made
	// once, and are not what is measured.
	if _, err := c.Get(ctx, ref); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		v, err := c.Get(ctx, ref)
		lat = append(lat, time.Since(start))
		if err != nil || len(v.Data) != 1024 {
			b.Fatalf("read %d bytes: %v", len(v.Data), err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkGetParallel is the throughput of reads through one connection
// from many goroutines.
func BenchmarkGetParallel(b *testing.B) {
	fakeSpec := configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{}}
	fake, err := providers.For(&configv1alpha1.SecretStoreSpec{Provider: fakeSpec})
	if err != nil {
		b.Fatal(err)
	}
	e := serve(b, fake, `
stores:
- kind: SecretStore
  namespace: app
  name: db
  keyPrefixes: ["app/"]
  provider: {fake: {data: [{key: app/db, value: "1 KiB or so of value is not needed to measure calls"}]}}
  limits: {qps: 1000000, burst: 1000000, concurrency: 1024}
`)
	c := mustClient(b, e.provider(b, e.clientTLS, providerID), "app", "db")
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Get(context.Background(), providers.Ref{Key: "app/db"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
