package syncer

import (
	"context"
	"maps"
	"sync"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	configinformers "github.com/veil-dev/veil/pkg/generated/informers/externalversions/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
)

// Controller keeps the target Secrets of ExternalSecrets in sync with their
// values, which it reads through the aggregated API like any other client.
type Controller struct {
	*skeleton[*configv1alpha1.ExternalSecret, configv1alpha1.ExternalSecretStatus]
	veil   versioned.Interface
	apps   appsv1client.AppsV1Interface
	writer *secretWriter
	lister configlisters.ExternalSecretLister
	// configMaps reads templateFrom ConfigMaps, by name, in an
	// ExternalSecret's own namespace.
	configMaps corev1client.ConfigMapsGetter
	key        []byte

	// feed holds the values the watch of externalsecretvalues sent, for
	// the syncs that need them; nil when that watch is off.
	feed *valueFeed

	// excluded namespaces are never written in (--excluded-namespaces).
	excluded sets.Set[string]

	// forced are the ExternalSecrets whose labels or annotations changed
	// since their last sync: a sync window does not hold that sync.
	forcedMu sync.Mutex
	forced   map[string]bool
}

// newExternalSecretSkeleton is the skeleton of the ExternalSecret
// controller, without queue or informer.
func newExternalSecretSkeleton(veil versioned.Interface, recorder record.EventRecorder, defaultRefresh time.Duration) *skeleton[*configv1alpha1.ExternalSecret, configv1alpha1.ExternalSecretStatus] {
	return newSkeleton(kind[*configv1alpha1.ExternalSecret, configv1alpha1.ExternalSecretStatus]{
		name: "ExternalSecret", plural: "ExternalSecrets", logKey: "externalSecret",
		failEvent: EventSyncError, failLog: "Sync failed",
		status:     func(es *configv1alpha1.ExternalSecret) *configv1alpha1.ExternalSecretStatus { return &es.Status },
		conditions: func(st *configv1alpha1.ExternalSecretStatus) *[]metav1.Condition { return &st.Conditions },
		copyStatus: ownedExternalSecretStatus,
		applyStatus: func(ctx context.Context, ns, name string, body []byte, opts metav1.PatchOptions) (*configv1alpha1.ExternalSecret, error) {
			return veil.ConfigV1alpha1().ExternalSecrets(ns).Patch(ctx, name, types.ApplyPatchType, body, opts, "status")
		},
		refreshInterval: func(es *configv1alpha1.ExternalSecret) *metav1.Duration { return es.Spec.RefreshInterval },
		defaultRefresh:  defaultRefresh,
		duration:        syncDuration,
		results:         syncResults,
	}, recorder)
}

func newController(informer configinformers.ExternalSecretInformer, veil versioned.Interface, apps appsv1client.AppsV1Interface,
	writer *secretWriter, recorder record.EventRecorder, key []byte, defaultRefresh time.Duration) (*Controller, error) {
	c := &Controller{
		skeleton: newExternalSecretSkeleton(veil, recorder, defaultRefresh),
		veil:     veil,
		apps:     apps,
		writer:   writer,
		lister:   informer.Lister(),
		key:      key,
	}
	c.r = c
	c.queue = newWorkQueue("veil_syncer", reportDepth)
	c.synced = informer.Informer().HasSynced
	_, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, listed bool) {
			if es, ok := obj.(*configv1alpha1.ExternalSecret); ok {
				c.schedule(es, listed)
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, ok1 := oldObj.(*configv1alpha1.ExternalSecret)
			es, ok2 := newObj.(*configv1alpha1.ExternalSecret)
			// Status writes (ours) do not change the generation; spec
			// changes are urgent, and so is a change of the values
			// veil-apiserver records (status.lastValueChange): a rotation
			// reaches the Secret now, not at the next refresh. A change of
			// labels or annotations is too, as in External Secrets
			// Operator (whose users annotate to force a sync).
			if ok1 && ok2 && es.Spec.Target != nil && (old.Generation != es.Generation || metadataChanged(old, es) || valueChanged(old, es) && periodic(es)) {
				key := keyOf(es)
				if metadataChanged(old, es) && es.Spec.SyncWindows != nil {
					c.markForced(key)
				}
				// Only a recorded value change: the watch of values
				// sends the new values, and its event queues the sync.
				if old.Generation == es.Generation && !metadataChanged(old, es) && c.feed.awaits(key, es.ResourceVersion, func() { c.queue.AddUrgent(key) }) {
					return
				}
				c.queue.AddUrgent(key)
			}
		},
		DeleteFunc: func(obj any) {
			if es, ok := deleted[*configv1alpha1.ExternalSecret](obj); ok {
				c.forget(keyOf(es))
				c.takeForced(keyOf(es))
				c.feed.forget(keyOf(es))
			}
		},
	})
	return c, err
}

// useFeed makes syncs take the values f holds, and queues the sync of an
// ExternalSecret synced on changes whose new values f was sent.
func (c *Controller) useFeed(f *valueFeed) {
	c.feed = f
	f.changed = func(key string) {
		ns, name, err := cache.SplitMetaNamespaceKey(key)
		if err != nil {
			return
		}
		if es, err := c.get(ns, name); err == nil && !c.skip(es) && periodic(es) {
			c.queue.AddUrgent(key)
		}
	}
}

// schedule queues an ExternalSecret the informer lists or sees created. One
// never synced for its generation is urgent; one synced before (seen again
// after a restart or a failover) is refreshed when its refresh is due, so a
// new leader does not redo every ExternalSecret ahead of new ones. The
// first sync of one created while the watch of values is open is queued
// when the watch sends its values (awaitsFirst), not before: it would
// read them by GET.
func (c *Controller) schedule(es *configv1alpha1.ExternalSecret, listed bool) {
	if es.Spec.Target == nil {
		return
	}
	key := keyOf(es)
	ready := apimeta.FindStatusCondition(es.Status.Conditions, configv1alpha1.ConditionReady)
	switch {
	case ready == nil && !listed && c.feed.awaitsFirst(es, func() { c.queue.AddUrgent(key) }):
	case ready == nil || ready.ObservedGeneration != es.Generation:
		c.queue.AddUrgent(key)
	case ready.Status == "True" && es.Status.RefreshTime != nil:
		if periodic(es) {
			c.queue.AddAfter(key, es.Status.RefreshTime.Add(c.refreshInterval(es)).Sub(c.clock.Now()))
		}
	default:
		c.queue.Add(key)
	}
}

func (c *Controller) get(namespace, name string) (*configv1alpha1.ExternalSecret, error) {
	return c.lister.ExternalSecrets(namespace).Get(name)
}

// skip: no longer materialised, or being deleted: the garbage collector,
// not the syncer, deals with an owned target.
func (c *Controller) skip(es *configv1alpha1.ExternalSecret) bool {
	return es.Spec.Target == nil || es.DeletionTimestamp != nil
}

// requeueAfter: the refresh interval, jittered; never for refreshPolicy
// CreatedOnce or OnChange, which sync only when the ExternalSecret changes.
func (c *Controller) requeueAfter(es *configv1alpha1.ExternalSecret) (time.Duration, bool) {
	interval := c.refreshInterval(es)
	if interval <= 0 {
		return 0, false
	}
	// Held by a sync window: looked at again when that may change.
	if d, held := c.windowRequeue(es); held {
		return d, true
	}
	return jitter(interval), interval > 0 && periodic(es)
}

// periodic: es is synced on its refresh interval and when its values
// change (refreshPolicy Periodic, the default).
func periodic(es *configv1alpha1.ExternalSecret) bool {
	p := es.Spec.RefreshPolicy
	return p == "" || p == configv1alpha1.RefreshPeriodic
}

// metadataChanged says whether es's labels or annotations changed.
func metadataChanged(old, es *configv1alpha1.ExternalSecret) bool {
	return !maps.Equal(old.Labels, es.Labels) || !maps.Equal(old.Annotations, es.Annotations)
}

// valueChanged says whether veil-apiserver recorded a new change of es's
// values between old and es.
func valueChanged(old, es *configv1alpha1.ExternalSecret) bool {
	a, b := old.Status.LastValueChange, es.Status.LastValueChange
	return b != nil && (a == nil || a.ID != b.ID)
}

// ownedExternalSecretStatus copies the fields of st veil-syncer writes:
// all but lastValueChange, which is veil-apiserver's. Applying a copy of
// it from the informer, forced, would put back an older change over a
// newer one.
func ownedExternalSecretStatus(st *configv1alpha1.ExternalSecretStatus) *configv1alpha1.ExternalSecretStatus {
	owned := st.DeepCopy()
	owned.LastValueChange = nil
	return owned
}
