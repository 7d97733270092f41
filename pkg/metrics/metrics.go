// Package metrics holds veil-apiserver's Prometheus metrics, served on
// /metrics (authorised like any other path). Labels name providers,
// operations, results and stores — never a remote key, a user or a value,
// because keys can themselves be sensitive.
package metrics

import (
	"sync"
	"time"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/veil-dev/veil/pkg/providers"
)

var (
	// ProviderCalls counts calls to provider APIs, by provider, API
	// operation (GetSecretValue, kv-get, login, ...) and result.
	ProviderCalls = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Name: "provider_calls_total",
		Help:           "Calls to provider APIs, by provider, API operation and result (success or the failure reason).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"provider", "operation", "result"})

	// ProviderCallDuration is the latency of provider API calls.
	ProviderCallDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: "veil", Name: "provider_call_duration_seconds",
		Help:           "Latency of provider API calls, by provider and API operation.",
		Buckets:        []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		StabilityLevel: metrics.ALPHA,
	}, []string{"provider", "operation"})
)

var register sync.Once

// Register adds Veil's metrics to the registry /metrics serves.
func Register() {
	register.Do(func() {
		legacyregistry.MustRegister(ProviderCalls, ProviderCallDuration)
	})
}

// ObserveProviderCall records one provider API call that started at start
// and ended with err. Providers call it around every request they make.
func ObserveProviderCall(provider, operation string, start time.Time, err error) {
	result := "success"
	if err != nil {
		result = string(providers.ReasonOf(err))
	}
	ProviderCalls.WithLabelValues(provider, operation, result).Inc()
	ProviderCallDuration.WithLabelValues(provider, operation).Observe(time.Since(start).Seconds())
}
