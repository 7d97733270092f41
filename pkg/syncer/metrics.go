package syncer

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	// client-go's own metrics: leader election status, workqueue depth and
	// latency, REST client requests. None has a label that could carry a
	// value or a key.
	_ "k8s.io/component-base/metrics/prometheus/clientgo/leaderelection"
	_ "k8s.io/component-base/metrics/prometheus/restclient"
	_ "k8s.io/component-base/metrics/prometheus/workqueue"
)

// The syncer's metrics are labelled by result (a condition reason or what
// was written), SecretPush action and queue priority only: never by namespace, name or key,
// which can be sensitive and would make cardinality unbounded.
var (
	syncDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "sync_duration_seconds",
		Help:           "Time to sync one ExternalSecret: read its values, write its Secret and status, by result.",
		Buckets:        []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})

	syncResults = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "syncs_total",
		Help:           "Syncs of ExternalSecrets by result: Created, Updated (new data), Refreshed (data unchanged), Repaired (changed by someone else, written again), Deleted (values gone, deletionPolicy Delete), Gone (the ExternalSecret was deleted meanwhile), Held (a refresh held by spec.syncWindows), or the Ready reason of a failure.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})

	namespaceSyncsDelayed = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "namespace_syncs_delayed_total",
		Help:           "Syncs put off because their namespace was over --namespace-sync-qps (they are queued again for when its budget allows).",
		StabilityLevel: metrics.ALPHA,
	})

	queueDepth = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "queue_depth",
		Help:           "ExternalSecrets waiting for a worker, by priority: urgent (new or changed) or refresh (periodic refreshes and retries).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"priority"})

	pushSyncDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "push_sync_duration_seconds",
		Help:           "Time to sync one PushSecret: read its source Secret, create a SecretPush if needed and write its status, by result.",
		Buckets:        []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})

	pushSyncs = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "push_syncs_total",
		Help: "Syncs of PushSecrets by result: Pushed (a remote key was written), Refreshed (a SecretPush found every remote key as it should be), " +
			"Unchanged (same data, no refresh due: no SecretPush), Deleted (remote keys deleted with the PushSecret), Released (finalizer removed, remote keys kept), " +
			"Gone (the PushSecret was deleted meanwhile), or the Ready reason of a failure.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})

	secretPushes = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "secretpushes_total",
		Help: "SecretPushes created by action (Push or Delete) and result: Succeeded (every remote key pushed, unchanged, skipped or deleted), " +
			"Failed (some remote key failed), or Refused (the API answered with an error and nothing was written).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"action", "result"})

	pushedKeys = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "push_remote_keys_total",
		Help:           "Remote keys in the answers to SecretPushes, by action and result (Pushed, Unchanged, SkippedExists, Deleted, NotOwner, Failed).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"action", "result"})

	pushQueueDepth = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "push_queue_depth",
		Help:           "PushSecrets waiting for a worker, by priority: urgent (new or changed PushSecret or source Secret) or refresh (periodic refreshes and retries).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"priority"})

	timeToFirstSync = metrics.NewHistogram(&metrics.HistogramOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "time_to_first_sync_seconds",
		Help:           "Time from the creation of an ExternalSecret (second resolution) to the first write of its Secret.",
		Buckets:        []float64{.25, .5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600},
		StabilityLevel: metrics.ALPHA,
	})

	valueReads = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "value_reads_total",
		Help:           "Values read for syncs of ExternalSecrets, by source: watch (sent by the watch of externalsecretvalues before the sync needed them) or get (read by the sync).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"source"})

	heldValues = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "watched_values_total",
		Help: "Values the watch of externalsecretvalues sent, by what became of them: held (for a sync to take), stale (a sync had read them or newer), " +
			"over_budget (--held-values-max-bytes was reached), unused (a sync read newer, or found them expired or of another ExternalSecret), expired (not taken in time), unversioned.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})

	heldBytes = metrics.NewGauge(&metrics.GaugeOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "held_values_bytes",
		Help:           "Bytes of values held for syncs, bounded by --held-values-max-bytes.",
		StabilityLevel: metrics.ALPHA,
	})

	valueWaits = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "value_change_waits_total",
		Help:           "Syncs for a recorded value change that waited for the watch of values to send the new values (waiting), and those it did not send within the grace period, which read by GET (timed_out).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})

	firstSyncWaits = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "first_sync_waits_total",
		Help:           "First syncs of new ExternalSecrets that waited for the watch of values to send their values (waiting), and those it did not send within the grace period, which read by GET (timed_out).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})

	valueWatchStarts = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: "veil", Subsystem: "syncer", Name: "value_watches_total",
		Help:           "Watches of externalsecretvalues the leader opened (opened) or could not open (failed).",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
)

var registerMetrics sync.Once

func register() {
	registerMetrics.Do(func() {
		legacyregistry.MustRegister(syncDuration, syncResults, queueDepth, timeToFirstSync,
			pushSyncDuration, pushSyncs, secretPushes, pushedKeys, pushQueueDepth, namespaceSyncsDelayed,
			valueReads, heldValues, heldBytes, valueWatchStarts, valueWaits, firstSyncWaits)
	})
}

func reportDepth(urgent, refresh int) {
	queueDepth.WithLabelValues("urgent").Set(float64(urgent))
	queueDepth.WithLabelValues("refresh").Set(float64(refresh))
}

func reportPushDepth(urgent, refresh int) {
	pushQueueDepth.WithLabelValues("urgent").Set(float64(urgent))
	pushQueueDepth.WithLabelValues("refresh").Set(float64(refresh))
}
