package syncer

import (
	"context"
	"fmt"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	configinformers "github.com/veil-dev/veil/pkg/generated/informers/externalversions/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
)

// PushController carries out PushSecrets. It reads each one's source Secret
// — by name, and only in namespaces that granted it that — and asks
// veil-apiserver to write the values by creating a SecretPush as the
// syncer's ServiceAccount. It never holds provider credentials, and every
// provider write is an API request that RBAC authorises and the audit log
// records.
type PushController struct {
	veil    versioned.Interface
	secrets corev1client.SecretsGetter
	// namespaces tells a namespace being deleted from a grant withdrawn.
	namespaces corev1client.NamespacesGetter
	reviews    authorizationv1client.SelfSubjectAccessReviewsGetter
	lister     configlisters.PushSecretLister
	bySource   cache.Indexer
	synced     cache.InformerSynced
	sources    *sourceWatches
	recorder   record.EventRecorder
	queue      *workQueue
	key        []byte
	clock      clock.PassiveClock

	// written is the status this process last wrote to each PushSecret.
	written *writtenStatuses[*configv1alpha1.PushSecretStatus]
}

// sourceIndex indexes PushSecrets by "namespace/name" of their source Secret.
const sourceIndex = "source"

// defaultPushRefresh is the refresh interval of a PushSecret that sets none,
// as its API documents. The syncer's --default-refresh-interval is about
// reading values, which a push does not do.
const defaultPushRefresh = time.Hour

// newPushController returns a controller whose source Secret watches run
// until ctx is done.
func newPushController(ctx context.Context, informer configinformers.PushSecretInformer, veil versioned.Interface, kube kubernetes.Interface,
	meta metadata.Interface, recorder record.EventRecorder, key []byte) (*PushController, error) {
	c := &PushController{
		veil:       veil,
		secrets:    kube.CoreV1(),
		namespaces: kube.CoreV1(),
		reviews:    kube.AuthorizationV1(),
		lister:     informer.Lister(),
		bySource:   informer.Informer().GetIndexer(),
		synced:     informer.Informer().HasSynced,
		recorder:   recorder,
		queue:      newWorkQueue("veil_syncer_push", reportPushDepth),
		key:        key,
		clock:      clock.RealClock{},
		written:    newWrittenStatuses[*configv1alpha1.PushSecretStatus](),
	}
	c.sources = newSourceWatches(ctx, meta, c.sourceChanged)
	if err := informer.Informer().AddIndexers(cache.Indexers{sourceIndex: func(obj any) ([]string, error) {
		ps, ok := obj.(*configv1alpha1.PushSecret)
		if !ok {
			return nil, nil
		}
		return []string{sourceOf(ps).String()}, nil
	}}); err != nil {
		return nil, err
	}
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if ps, ok := obj.(*configv1alpha1.PushSecret); ok {
				c.schedule(ps)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*configv1alpha1.PushSecret)
			ps, ok2 := newObj.(*configv1alpha1.PushSecret)
			if !ok1 || !ok2 {
				return
			}
			// Our status and finalizer writes change neither.
			if old.Generation != ps.Generation || (old.DeletionTimestamp == nil) != (ps.DeletionTimestamp == nil) {
				c.queue.AddUrgent(pushKeyOf(ps))
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if ps, ok := obj.(*configv1alpha1.PushSecret); ok {
				c.sources.release(pushKeyOf(ps))
				c.forget(pushKeyOf(ps))
			}
		},
	})
	return c, err
}

// schedule queues a PushSecret the informer lists or sees created. One never
// pushed for its generation, or being deleted, is urgent; one pushed before
// (seen again after a restart or a failover) waits for its refresh, unless
// its source Secret changed meanwhile, which the source watch reports.
func (c *PushController) schedule(ps *configv1alpha1.PushSecret) {
	key := pushKeyOf(ps)
	ps = c.current(ps)
	ready := apimeta.FindStatusCondition(ps.Status.Conditions, configv1alpha1.ConditionReady)
	switch {
	case ps.DeletionTimestamp != nil, ready == nil, ready.ObservedGeneration != ps.Generation:
		c.queue.AddUrgent(key)
	case ready.Status == metav1.ConditionTrue:
		if d, ok := c.refreshAfter(ps); ok {
			c.queue.AddAfter(key, d)
		}
	default:
		c.queue.Add(key)
	}
}

// sourceChanged queues the PushSecrets of a source Secret that was listed,
// created, changed or deleted. A listed Secret at the resourceVersion a
// PushSecret last pushed (as after a restart) queues nothing.
func (c *PushController) sourceChanged(src types.NamespacedName, resourceVersion string) {
	objs, err := c.bySource.ByIndex(sourceIndex, src.String())
	if err != nil {
		return
	}
	for _, obj := range objs {
		ps := c.current(obj.(*configv1alpha1.PushSecret))
		if resourceVersion != "" && pushedFor(ps) && ps.Status.SyncedResourceVersion == syncedVersion(ps.Generation, resourceVersion) {
			continue
		}
		c.queue.AddUrgent(pushKeyOf(ps))
	}
}

// Run processes the queue with workers until ctx is done, then waits for
// the syncs in progress to end.
func (c *PushController) Run(ctx context.Context, workers int) {
	runWorkers(ctx, "PushSecrets", c.synced, c.queue, workers, c.next)
}

func (c *PushController) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		c.queue.Forget(key)
		return true
	}
	ps, err := c.lister.PushSecrets(ns).Get(name)
	if err != nil {
		// Gone: deleting it is the finalizer's business, done before.
		c.queue.Forget(key)
		return true
	}
	ps = c.current(ps)
	start := c.clock.Now()
	res := c.sync(ctx, ps)
	pushSyncDuration.WithLabelValues(res.result).Observe(c.clock.Since(start).Seconds())
	pushSyncs.WithLabelValues(res.result).Inc()
	if ctx.Err() != nil {
		// Stopping: leave the key for whoever leads next.
		return true
	}
	if res.retry {
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	if ps.DeletionTimestamp == nil {
		if d, ok := c.refreshAfter(c.current(ps)); ok {
			c.queue.AddAfter(key, d)
		}
	}
	return true
}

// refreshInterval is the PushSecret's, or the default; zero means push on
// changes only.
func refreshInterval(ps *configv1alpha1.PushSecret) time.Duration {
	d := defaultPushRefresh
	if ps.Spec.RefreshInterval != nil {
		d = ps.Spec.RefreshInterval.Duration
	}
	if d <= 0 {
		return 0
	}
	return max(d, minRefresh)
}

// refreshAfter is when the next refresh of ps is due, jittered; false if it
// has none. After a failure that is not retried (a missing source), it
// counts from now: the last push may be long past.
func (c *PushController) refreshAfter(ps *configv1alpha1.PushSecret) (time.Duration, bool) {
	interval := refreshInterval(ps)
	if interval == 0 {
		return 0, false
	}
	if ps.Status.RefreshTime == nil || !pushedFor(ps) {
		return jitter(interval), true
	}
	return max(jitter(interval)-c.clock.Since(ps.Status.RefreshTime.Time), minRefresh), true
}

// refreshDue says whether a sync must push even unchanged data, so that a
// remote value changed or deleted by someone else is written again. The
// earliest a jittered refresh fires counts as due.
func (c *PushController) refreshDue(ps *configv1alpha1.PushSecret) bool {
	interval := refreshInterval(ps)
	if interval == 0 {
		return false
	}
	if ps.Status.RefreshTime == nil {
		return true
	}
	return c.clock.Since(ps.Status.RefreshTime.Time) >= interval-interval/10
}

// current is the informer's PushSecret with the status this process last
// wrote. Only the leader writes status, so ours is the newest.
func (c *PushController) current(ps *configv1alpha1.PushSecret) *configv1alpha1.PushSecret {
	out := ps.DeepCopy()
	if st, ok := c.written.get(pushKeyOf(ps), ps.UID); ok {
		st.DeepCopyInto(&out.Status)
	}
	return out
}

func (c *PushController) remember(ps *configv1alpha1.PushSecret) {
	c.written.remember(pushKeyOf(ps), ps.UID, ps.Status.DeepCopy())
}

func (c *PushController) forget(key string) { c.written.forget(key) }

func pushKeyOf(ps *configv1alpha1.PushSecret) string { return ps.Namespace + "/" + ps.Name }

func sourceOf(ps *configv1alpha1.PushSecret) types.NamespacedName {
	return types.NamespacedName{Namespace: ps.Namespace, Name: ps.Spec.Selector.Secret.Name}
}

// syncedVersion is status.syncedResourceVersion: the PushSecret's
// generation and the source Secret's resourceVersion that were pushed.
func syncedVersion(generation int64, sourceResourceVersion string) string {
	return fmt.Sprintf("%d-%s", generation, sourceResourceVersion)
}

// pushedFor: the last sync of this generation pushed everything.
func pushedFor(ps *configv1alpha1.PushSecret) bool {
	r := apimeta.FindStatusCondition(ps.Status.Conditions, configv1alpha1.ConditionReady)
	return r != nil && r.Status == metav1.ConditionTrue && r.ObservedGeneration == ps.Generation
}
