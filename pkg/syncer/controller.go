package syncer

import (
	"context"
	"math/rand/v2"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/sets"
	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	configinformers "github.com/veil-dev/veil/pkg/generated/informers/externalversions/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
)

// Controller keeps the target Secrets of ExternalSecrets in sync with their
// values, which it reads through the aggregated API like any other client.
type Controller struct {
	veil     versioned.Interface
	apps     appsv1client.AppsV1Interface
	writer   *secretWriter
	lister   configlisters.ExternalSecretLister
	synced   cache.InformerSynced
	recorder record.EventRecorder
	queue    *workQueue
	key      []byte
	clock    clock.PassiveClock

	defaultRefresh time.Duration
	// excluded namespaces are never written in (--excluded-namespaces).
	excluded sets.Set[string]

	// written is the status this process last wrote to each ExternalSecret.
	written *writtenStatuses[*configv1alpha1.ExternalSecretStatus]
}

// minRefresh keeps a tiny refreshInterval from turning into a busy loop
// against the API servers.
const minRefresh = time.Second

func newController(informer configinformers.ExternalSecretInformer, veil versioned.Interface, apps appsv1client.AppsV1Interface,
	writer *secretWriter, recorder record.EventRecorder, key []byte, defaultRefresh time.Duration) (*Controller, error) {
	c := &Controller{
		veil:           veil,
		apps:           apps,
		writer:         writer,
		lister:         informer.Lister(),
		synced:         informer.Informer().HasSynced,
		recorder:       recorder,
		queue:          newWorkQueue("veil_syncer", reportDepth),
		key:            key,
		clock:          clock.RealClock{},
		defaultRefresh: defaultRefresh,
		written:        newWrittenStatuses[*configv1alpha1.ExternalSecretStatus](),
	}
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if es, ok := obj.(*configv1alpha1.ExternalSecret); ok {
				c.schedule(es)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*configv1alpha1.ExternalSecret)
			es, ok2 := newObj.(*configv1alpha1.ExternalSecret)
			// Status writes (ours) do not change the generation; only spec
			// changes are urgent.
			if ok1 && ok2 && old.Generation != es.Generation && es.Spec.Target != nil {
				c.queue.AddUrgent(keyOf(es))
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if es, ok := obj.(*configv1alpha1.ExternalSecret); ok {
				c.forget(keyOf(es))
			}
		},
	})
	return c, err
}

// schedule queues an ExternalSecret the informer lists or sees created. One
// never synced for its generation is urgent; one synced before (seen again
// after a restart or a failover) is refreshed when its refresh is due, so a
// new leader does not redo every ExternalSecret ahead of new ones.
func (c *Controller) schedule(es *configv1alpha1.ExternalSecret) {
	if es.Spec.Target == nil {
		return
	}
	key := keyOf(es)
	ready := apimeta.FindStatusCondition(es.Status.Conditions, configv1alpha1.ConditionReady)
	switch {
	case ready == nil || ready.ObservedGeneration != es.Generation:
		c.queue.AddUrgent(key)
	case ready.Status == "True" && es.Status.RefreshTime != nil:
		c.queue.AddAfter(key, es.Status.RefreshTime.Add(c.refreshInterval(es)).Sub(c.clock.Now()))
	default:
		c.queue.Add(key)
	}
}

// Run processes the queue with workers until ctx is done, then waits for
// the syncs in progress to end.
func (c *Controller) Run(ctx context.Context, workers int) {
	runWorkers(ctx, "ExternalSecrets", c.synced, c.queue, workers, c.next)
}

func (c *Controller) next(ctx context.Context) bool {
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
	es, err := c.lister.ExternalSecrets(ns).Get(name)
	if err != nil || es.Spec.Target == nil || es.DeletionTimestamp != nil {
		// Gone, no longer materialised, or being deleted: the garbage
		// collector, not the syncer, deals with an owned target.
		c.queue.Forget(key)
		return true
	}
	es = c.current(es)
	start := c.clock.Now()
	res := c.sync(ctx, es)
	syncDuration.WithLabelValues(res.result).Observe(c.clock.Since(start).Seconds())
	syncResults.WithLabelValues(res.result).Inc()
	if ctx.Err() != nil {
		// Stopping: leave the key for whoever leads next.
		return true
	}
	if res.retry {
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	if interval := c.refreshInterval(es); interval > 0 {
		c.queue.AddAfter(key, jitter(interval))
	}
	return true
}

// refreshInterval is the ExternalSecret's, or the default; zero means sync
// on changes only.
func (c *Controller) refreshInterval(es *configv1alpha1.ExternalSecret) time.Duration {
	d := c.defaultRefresh
	if es.Spec.RefreshInterval != nil {
		d = es.Spec.RefreshInterval.Duration
	}
	if d <= 0 {
		return 0
	}
	return max(d, minRefresh)
}

// jitter spreads refreshes by ±10%, so ExternalSecrets created together do
// not refresh together forever.
func jitter(d time.Duration) time.Duration {
	spread := int64(d / 5)
	if spread <= 0 {
		return d
	}
	return d - d/10 + time.Duration(rand.Int64N(spread))
}

// current is the informer's ExternalSecret with the status this process
// last wrote. Only the leader writes status, so ours is the newest.
func (c *Controller) current(es *configv1alpha1.ExternalSecret) *configv1alpha1.ExternalSecret {
	out := es.DeepCopy()
	if st, ok := c.written.get(keyOf(es), es.UID); ok {
		st.DeepCopyInto(&out.Status)
	}
	return out
}

func (c *Controller) remember(es *configv1alpha1.ExternalSecret) {
	c.written.remember(keyOf(es), es.UID, es.Status.DeepCopy())
}

func (c *Controller) forget(key string) { c.written.forget(key) }

func keyOf(es *configv1alpha1.ExternalSecret) string { return es.Namespace + "/" + es.Name }
