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
	*skeleton[*configv1alpha1.PushSecret, configv1alpha1.PushSecretStatus]
	veil    versioned.Interface
	secrets corev1client.SecretsGetter
	// namespaces tells a namespace being deleted from a grant withdrawn.
	namespaces corev1client.NamespacesGetter
	reviews    authorizationv1client.SelfSubjectAccessReviewsGetter
	lister     configlisters.PushSecretLister
	bySource   cache.Indexer
	sources    *sourceWatches
	key        []byte
	// configMaps reads the templateFrom ConfigMaps of a PushSecret's
	// template, by name, in its namespace.
	configMaps corev1client.ConfigMapsGetter
}

// sourceIndex indexes PushSecrets by "namespace/name" of their source Secret.
const sourceIndex = "source"

// defaultPushRefresh is the refresh interval of a PushSecret that sets none,
// as its API documents. The syncer's --default-refresh-interval is about
// reading values, which a push does not do.
const defaultPushRefresh = time.Hour

// newPushSecretSkeleton is the skeleton of the PushSecret controller,
// without queue or informer.
func newPushSecretSkeleton(veil versioned.Interface, recorder record.EventRecorder) *skeleton[*configv1alpha1.PushSecret, configv1alpha1.PushSecretStatus] {
	return newSkeleton(kind[*configv1alpha1.PushSecret, configv1alpha1.PushSecretStatus]{
		name: "PushSecret", plural: "PushSecrets", logKey: "pushSecret",
		failEvent: EventPushFailed, failLog: "Push failed",
		status:     func(ps *configv1alpha1.PushSecret) *configv1alpha1.PushSecretStatus { return &ps.Status },
		conditions: func(st *configv1alpha1.PushSecretStatus) *[]metav1.Condition { return &st.Conditions },
		copyStatus: (*configv1alpha1.PushSecretStatus).DeepCopy,
		applyStatus: func(ctx context.Context, ns, name string, body []byte, opts metav1.PatchOptions) (*configv1alpha1.PushSecret, error) {
			return veil.ConfigV1alpha1().PushSecrets(ns).Patch(ctx, name, types.ApplyPatchType, body, opts, "status")
		},
		refreshInterval: pushRefreshInterval,
		defaultRefresh:  defaultPushRefresh,
		duration:        pushSyncDuration,
		results:         pushSyncs,
	}, recorder)
}

// newPushController returns a controller whose source Secret watches run
// until ctx is done.
func newPushController(ctx context.Context, informer configinformers.PushSecretInformer, veil versioned.Interface, kube kubernetes.Interface,
	meta metadata.Interface, recorder record.EventRecorder, key []byte) (*PushController, error) {
	c := &PushController{
		skeleton:   newPushSecretSkeleton(veil, recorder),
		veil:       veil,
		secrets:    kube.CoreV1(),
		namespaces: kube.CoreV1(),
		reviews:    kube.AuthorizationV1(),
		lister:     informer.Lister(),
		bySource:   informer.Informer().GetIndexer(),
		key:        key,
		configMaps: kube.CoreV1(),
	}
	c.r = c
	c.queue = newWorkQueue("veil_syncer_push", reportPushDepth)
	c.synced = informer.Informer().HasSynced
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
				c.queue.AddUrgent(keyOf(ps))
			}
		},
		DeleteFunc: func(obj any) {
			if ps, ok := deleted[*configv1alpha1.PushSecret](obj); ok {
				c.sources.release(keyOf(ps))
				c.forget(keyOf(ps))
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
	key := keyOf(ps)
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
		if resourceVersion != "" && c.readyFor(ps) && ps.Status.SyncedResourceVersion == syncedVersion(ps.Generation, resourceVersion) {
			continue
		}
		c.queue.AddUrgent(keyOf(ps))
	}
}

func (c *PushController) get(namespace, name string) (*configv1alpha1.PushSecret, error) {
	return c.lister.PushSecrets(namespace).Get(name)
}

// skip: never; a PushSecret gone was released by its finalizer before.
func (c *PushController) skip(*configv1alpha1.PushSecret) bool { return false }

// requeueAfter: the next refresh, unless ps is being deleted.
func (c *PushController) requeueAfter(ps *configv1alpha1.PushSecret) (time.Duration, bool) {
	if ps.DeletionTimestamp != nil {
		return 0, false
	}
	return c.refreshAfter(ps)
}

// refreshAfter is when the next refresh of ps is due, jittered; false if it
// has none. After a failure that is not retried (a missing source), it
// counts from now: the last push may be long past.
func (c *PushController) refreshAfter(ps *configv1alpha1.PushSecret) (time.Duration, bool) {
	interval := c.refreshInterval(ps)
	if interval == 0 {
		return 0, false
	}
	if ps.Status.RefreshTime == nil || !c.readyFor(ps) {
		return jitter(interval), true
	}
	return max(jitter(interval)-c.clock.Since(ps.Status.RefreshTime.Time), minRefresh), true
}

// refreshDue says whether a sync must push even unchanged data, so that a
// remote value changed or deleted by someone else is written again. The
// earliest a jittered refresh fires counts as due.
func (c *PushController) refreshDue(ps *configv1alpha1.PushSecret) bool {
	interval := c.refreshInterval(ps)
	if interval == 0 {
		return false
	}
	if ps.Status.RefreshTime == nil {
		return true
	}
	return c.clock.Since(ps.Status.RefreshTime.Time) >= interval-interval/10
}

func sourceOf(ps *configv1alpha1.PushSecret) types.NamespacedName {
	return types.NamespacedName{Namespace: ps.Namespace, Name: ps.Spec.Selector.Secret.Name}
}

// syncedVersion is status.syncedResourceVersion: the PushSecret's
// generation and the source Secret's resourceVersion that were pushed.
func syncedVersion(generation int64, sourceResourceVersion string) string {
	return fmt.Sprintf("%d-%s", generation, sourceResourceVersion)
}
