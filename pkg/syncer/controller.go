package syncer

import (
	"context"
	"math/rand/v2"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/component-base/metrics"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// object is an ExternalSecret or a PushSecret.
type object interface {
	metav1.Object
	runtime.Object
}

// kind is what the skeleton knows of the objects one controller syncs, O
// with status S.
type kind[O object, S any] struct {
	// name is the Kind; plural names them in logs, logKey one of them.
	name, plural, logKey string
	// failEvent and failLog are the Event reason and log message of a failed sync.
	failEvent, failLog string

	status     func(O) *S
	conditions func(*S) *[]metav1.Condition
	copyStatus func(*S) *S
	// applyStatus applies body to the status subresource of namespace/name.
	applyStatus func(ctx context.Context, namespace, name string, body []byte, opts metav1.PatchOptions) (O, error)

	// refreshInterval is the object's spec.refreshInterval; defaultRefresh
	// applies when it is unset.
	refreshInterval func(O) *metav1.Duration
	defaultRefresh  time.Duration

	// duration and results are the metrics of syncs, by result.
	duration *metrics.HistogramVec
	results  *metrics.CounterVec
}

// reconciler is what a controller adds to the skeleton: its own sync.
type reconciler[O object] interface {
	// get returns the object of a key from the informer's cache.
	get(namespace, name string) (O, error)
	// skip says the object needs no sync: the key is dropped.
	skip(O) bool
	sync(context.Context, O) result
	// requeueAfter is when to sync again after a sync that needs no retry;
	// false for never, until something changes.
	requeueAfter(O) (time.Duration, bool)
}

// skeleton is what the ExternalSecret and PushSecret controllers share: the
// fair work queue and its workers, retries with backoff, refresh
// intervals, the Ready condition, and status, written one way (status.go)
// and remembered, since the informer's copy lags behind our own writes.
type skeleton[O object, S any] struct {
	kind     kind[O, S]
	r        reconciler[O]
	queue    *workQueue
	synced   cache.InformerSynced
	recorder record.EventRecorder
	clock    clock.PassiveClock
	// written is the status this process last wrote to each object.
	written *writtenStatuses[*S]
	// rate bounds each namespace's syncs; nil for no bound.
	rate *namespaceRate
}

func newSkeleton[O object, S any](k kind[O, S], recorder record.EventRecorder) *skeleton[O, S] {
	return &skeleton[O, S]{kind: k, recorder: recorder, clock: clock.RealClock{}, written: newWrittenStatuses[*S]()}
}

// minRefresh keeps a tiny refreshInterval from turning into a busy loop
// against the API servers.
const minRefresh = time.Second

// Run processes the queue with workers until ctx is done, then waits for
// the syncs in progress to end.
func (s *skeleton[O, S]) Run(ctx context.Context, workers int) {
	runWorkers(ctx, s.kind.plural, s.synced, s.queue, workers, s.next)
}

func (s *skeleton[O, S]) next(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		s.queue.Forget(key)
		return true
	}
	obj, err := s.r.get(ns, name)
	if err != nil || s.r.skip(obj) {
		s.rate.forget(key)
		s.queue.Forget(key)
		return true
	}
	if d := s.rate.wait(ns, key, s.clock.Now()); d > 0 {
		// Over its namespace's rate: back when its turn comes.
		s.queue.AddAfter(key, d)
		return true
	}
	obj = s.current(obj)
	start := s.clock.Now()
	res := s.r.sync(ctx, obj)
	s.kind.duration.WithLabelValues(res.result).Observe(s.clock.Since(start).Seconds())
	s.kind.results.WithLabelValues(res.result).Inc()
	if ctx.Err() != nil {
		// Stopping: leave the key for whoever leads next.
		return true
	}
	if res.retry {
		s.queue.AddRateLimited(key)
		return true
	}
	s.queue.Forget(key)
	if d, ok := s.r.requeueAfter(s.current(obj)); ok {
		s.queue.AddAfter(key, d)
	}
	return true
}

// refreshInterval is the object's, or the default; zero means sync on
// changes only.
func (s *skeleton[O, S]) refreshInterval(obj O) time.Duration {
	d := s.kind.defaultRefresh
	if set := s.kind.refreshInterval(obj); set != nil {
		d = set.Duration
	}
	if d <= 0 {
		return 0
	}
	return max(d, minRefresh)
}

// jitter spreads refreshes by ±10%, so objects created together do not
// refresh together forever.
func jitter(d time.Duration) time.Duration {
	spread := int64(d / 5)
	if spread <= 0 {
		return d
	}
	return d - d/10 + time.Duration(rand.Int64N(spread))
}

// setReady sets the Ready condition of st, for the generation of obj.
func (s *skeleton[O, S]) setReady(st *S, obj O, status metav1.ConditionStatus, reason, msg string) {
	apimeta.SetStatusCondition(s.kind.conditions(st), metav1.Condition{
		Type: configv1alpha1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: obj.GetGeneration(),
	})
}

// readyFor: the last sync of this generation succeeded.
func (s *skeleton[O, S]) readyFor(obj O) bool {
	r := apimeta.FindStatusCondition(*s.kind.conditions(s.kind.status(obj)), configv1alpha1.ConditionReady)
	return r != nil && r.Status == metav1.ConditionTrue && r.ObservedGeneration == obj.GetGeneration()
}

// fail records a failed sync: Ready=False, a Warning Event, a log line.
func (s *skeleton[O, S]) fail(ctx context.Context, obj O, st *S, reason, msg string, retry bool) result {
	s.setReady(st, obj, metav1.ConditionFalse, reason, msg)
	s.recorder.Eventf(obj, corev1.EventTypeWarning, s.kind.failEvent, "%s: %s", reason, msg)
	klog.FromContext(ctx).Info(s.kind.failLog, s.kind.logKey, klog.KObj(obj), "reason", reason, "message", msg)
	return s.finish(ctx, obj, st, reason, retry)
}

// finish writes the status when it changed.
func (s *skeleton[O, S]) finish(ctx context.Context, obj O, st *S, res string, retry bool) result {
	if equality.Semantic.DeepEqual(*st, *s.kind.status(obj)) {
		return result{result: res, retry: retry}
	}
	_, err := s.writeStatus(ctx, obj, st)
	if apierrors.IsNotFound(err) {
		return result{result: resultGone}
	}
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status", s.kind.logKey, klog.KObj(obj))
		return result{result: res, retry: true}
	}
	return result{result: res, retry: retry}
}

// writeStatus applies st as the status of obj (status.go) and remembers it.
func (s *skeleton[O, S]) writeStatus(ctx context.Context, obj O, st *S) (O, error) {
	var none O
	body, err := applyStatusBody(s.kind.name, obj.GetNamespace(), obj.GetName(), st, s.kind.conditions, s.kind.copyStatus)
	if err != nil {
		return none, err
	}
	updated, err := s.kind.applyStatus(ctx, obj.GetNamespace(), obj.GetName(), body, applyOptions())
	if err != nil {
		return none, err
	}
	s.written.remember(keyOf(updated), updated.GetUID(), s.kind.copyStatus(s.kind.status(updated)))
	return updated, nil
}

// current is the informer's object with the status this process last
// wrote. Only the leader writes status, so ours is the newest.
func (s *skeleton[O, S]) current(obj O) O {
	out := obj.DeepCopyObject().(O)
	if st, ok := s.written.get(keyOf(obj), obj.GetUID()); ok {
		*s.kind.status(out) = *s.kind.copyStatus(st)
	}
	return out
}

func (s *skeleton[O, S]) forget(key string) { s.written.forget(key) }

// keyOf is the queue key of an object: "namespace/name".
func keyOf(obj metav1.Object) string { return obj.GetNamespace() + "/" + obj.GetName() }

// deleted is the object of a delete event, also when the informer missed
// the delete (a tombstone).
func deleted[O object](obj any) (O, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(O)
	return o, ok
}
