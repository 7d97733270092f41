// Package metrics holds veil-apiserver's Prometheus metrics, served on
// /metrics (authorised like any other path). Labels name providers,
// operations, results and stores — never a remote key, a user or a value,
// because keys can themselves be sensitive.
package metrics

import (
	"strconv"
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

	// ProviderThrottled counts provider calls that were not made because a
	// store, or a namespace's share of a ClusterSecretStore, was over its
	// limits (pkg/throttle).
	ProviderThrottled = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Name: "provider_throttled_total",
		Help:           "Provider calls refused before they were made, by store kind, whose limit was reached (store, or namespace: a namespace's share of a ClusterSecretStore) and which (rate or in_flight).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"store_kind", "limit", "reason"})

	// NamespaceReadsThrottled counts reads of values refused because their
	// namespace had spent its read budget (pkg/throttle.Reads).
	NamespaceReadsThrottled = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Name: "namespace_reads_throttled_total",
		Help:           "Gets and lists of externalsecretvalues refused with 429 because their namespace had spent its read budget (--namespace-read-qps, --namespace-read-burst), by verb.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"verb"})

	// ProviderCallDuration is the latency of provider API calls.
	ProviderCallDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: "veil", Name: "provider_call_duration_seconds",
		Help:           "Latency of provider API calls, by provider and API operation.",
		Buckets:        []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		StabilityLevel: metrics.ALPHA,
	}, []string{"provider", "operation"})

	// CacheHits counts reads answered from the value cache, by the kind of
	// entry: a value, or a remembered NotFound.
	CacheHits = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "cache", Name: "hits_total",
		Help:           "Remote values answered from the cache, by entry (value or not_found).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"entry"})

	// CacheMisses counts reads the cache could not answer, by why: no entry,
	// an entry older than the reader's refresh interval, an entry sealed
	// under a rotated key, or one that failed to open.
	CacheMisses = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "cache", Name: "misses_total",
		Help:           "Remote values the cache could not answer, by reason (absent, too_old, key_rotated, unreadable).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"reason"})

	// CacheEvictions counts entries removed by the cache itself: to stay
	// within --cache-max-bytes, because their lifetime ended, or refused on
	// admission because the cache was full of more frequently read entries.
	CacheEvictions = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "cache", Name: "evictions_total",
		Help:           "Cache entries removed or refused, by reason (capacity, expired, rejected).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"reason"})

	// CacheBytes is what the cache's entries account for, against
	// --cache-max-bytes.
	CacheBytes = metrics.NewGauge(&metrics.GaugeOpts{
		Namespace: "veil", Subsystem: "cache", Name: "bytes",
		Help:           "Bytes held by cache entries (sealed values and their bookkeeping).",
		StabilityLevel: metrics.ALPHA,
	})

	// CacheSharedFetches counts reads that waited for a provider call made
	// for another read of the same value instead of making their own.
	CacheSharedFetches = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "cache", Name: "shared_fetches_total",
		Help:           "Remote values a read received from a provider call another read had in flight (single-flight).",
		StabilityLevel: metrics.ALPHA,
	})

	// CacheStaleServed counts values served past their refresh interval
	// because the provider failed (--max-stale).
	CacheStaleServed = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "cache", Name: "stale_served_total",
		Help:           "Remote values served older than their refresh interval because the provider was unavailable.",
		StabilityLevel: metrics.ALPHA,
	})

	// ReadDuration is the latency of externalsecretvalues requests as
	// veil-apiserver handles them, by verb and HTTP status code.
	ReadDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: "veil", Name: "read_duration_seconds",
		Help:           "Latency of externalsecretvalues reads (resolution and provider or cache), by verb and status code.",
		Buckets:        []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		StabilityLevel: metrics.ALPHA,
	}, []string{"verb", "code"})

	// ValueWatches is the number of open watches of externalsecretvalues.
	ValueWatches = metrics.NewGauge(&metrics.GaugeOpts{
		Namespace: "veil", Name: "value_watches",
		Help:           "Watches of externalsecretvalues open now.",
		StabilityLevel: metrics.ALPHA,
	})

	// ValueWatchEvents counts the events of value watches, by type, and
	// the changes of ExternalSecrets a watch did not pass on, by why:
	// unchanged (only the ExternalSecret's status changed), forbidden (the
	// watcher may not get that value) or unresolvable (its values could not
	// be read; a get says why).
	ValueWatchEvents = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Name: "value_watch_events_total",
		Help:           "Events sent to watchers of externalsecretvalues by type (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR), and changes not sent by reason (skipped_unchanged, skipped_forbidden, skipped_unresolvable).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"event"})

	// ValueChangesDetected counts remote keys change detection found
	// changed at their provider.
	ValueChangesDetected = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: "veil", Name: "value_changes_detected_total",
		Help:           "Remote keys that change detection found changed at their provider.",
		StabilityLevel: metrics.ALPHA,
	})

	// ValueChangesMarked counts ExternalSecrets whose status was given a
	// new value change, by cause (Pushed, Detected, StoreChanged).
	ValueChangesMarked = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Name: "value_changes_marked_total",
		Help:           "ExternalSecrets given a new status.lastValueChange, by cause (Pushed, Detected, StoreChanged).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"cause"})

	// ChangeDetectionErrors counts stores whose versions a detection cycle
	// could not read, by reason.
	ChangeDetectionErrors = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Name: "change_detection_errors_total",
		Help:           "Stores whose versions a change detection cycle could not read, by reason.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"reason"})

	// ChangeDetectionStreams is how many stores change detection follows
	// by a change stream (providers.ChangeWatcher) rather than by asking
	// for versions each cycle.
	ChangeDetectionStreams = metrics.NewGauge(&metrics.GaugeOpts{
		Namespace: "veil", Name: "change_detection_streams",
		Help:           "Stores whose changes the change detection leader follows by a change stream from their provider, instead of asking for versions each cycle.",
		StabilityLevel: metrics.ALPHA,
	})

	// ProviderRequests counts the protocol requests a provider process
	// (veil-provider) received, by method, as they arrive.
	ProviderRequests = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Name: "provider_requests_total",
		Help:           "Requests of the provider protocol (veil.provider.v1) a veil-provider received, by method (Get, Versions, WatchChanges...), counted as they arrive.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"method"})

	// ChangeDetectionCycles counts change detection cycles run.
	ChangeDetectionCycles = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: "veil", Name: "change_detection_cycles_total",
		Help:           "Change detection cycles run (by the replica holding the Lease).",
		StabilityLevel: metrics.ALPHA,
	})

	// ChangeDetectionSeconds is how long one change detection cycle takes.
	ChangeDetectionSeconds = metrics.NewHistogram(&metrics.HistogramOpts{
		Namespace: "veil", Name: "change_detection_cycle_seconds",
		Help:           "Duration of one change detection cycle over every store.",
		Buckets:        []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		StabilityLevel: metrics.ALPHA,
	})

	// VaultAuditEntries counts the entries Vault's socket audit devices
	// sent (--vault-audit-feed), by what Veil made of them: write (a KV v2
	// key changed), read (a read of a key's metadata, which proves the
	// feed reaches this process), other, and lost (a line that was not an
	// entry, or was over the bound: every watch of the feed ends).
	VaultAuditEntries = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Name: "vault_audit_entries_total",
		Help:           "Entries received from Vault socket audit devices (--vault-audit-feed), by kind: write, read, other, lost.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"kind"})

	// VaultAuditConnections counts the connections Vault's socket audit
	// devices opened: accepted, refused (from an address
	// --vault-audit-sources does not name, or over the bound) or
	// not_leader (turned away by a replica that does not lead).
	VaultAuditConnections = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Name: "vault_audit_connections_total",
		Help:           "Connections from Vault socket audit devices (--vault-audit-feed), by result: accepted, refused, not_leader.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
)

var register sync.Once

// Register adds Veil's metrics to the registry /metrics serves.
func Register() {
	register.Do(func() {
		legacyregistry.MustRegister(ProviderCalls, ProviderThrottled, NamespaceReadsThrottled, ProviderCallDuration,
			CacheHits, CacheMisses, CacheEvictions, CacheBytes, CacheSharedFetches, CacheStaleServed, ReadDuration,
			ValueWatches, ValueWatchEvents, ValueChangesDetected, ValueChangesMarked, ChangeDetectionErrors, ChangeDetectionCycles, ChangeDetectionSeconds, ChangeDetectionStreams,
			VaultAuditEntries, VaultAuditConnections)
		// Series that alerts and dashboards compare with zero exist from
		// the start, rather than appearing at their first event.
		for _, verb := range []string{"get", "list", "watch"} {
			NamespaceReadsThrottled.WithLabelValues(verb)
		}
		for _, kind := range []string{"SecretStore", "ClusterSecretStore"} {
			for _, whose := range []string{"store", "namespace"} {
				for _, reason := range []string{"rate", "in_flight"} {
					ProviderThrottled.WithLabelValues(kind, whose, reason)
				}
			}
		}
		for _, cause := range []string{"Pushed", "Detected", "StoreChanged"} {
			ValueChangesMarked.WithLabelValues(cause)
		}
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

// ObserveRead records one externalsecretvalues request that started at
// start and was answered with the HTTP status code.
func ObserveRead(verb string, start time.Time, code int) {
	ReadDuration.WithLabelValues(verb, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
}
