// Package storestatus keeps the MatchesAllNamespaces condition in every
// ClusterSecretStore's status, so that a store whose spec.conditions let
// in every namespace says so where its administrator looks.
package storestatus

import (
	"context"
	"encoding/json"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	configclient "github.com/veil-dev/veil/pkg/generated/clientset/versioned/typed/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/stores"
)

// FieldManager owns the condition. Every replica of veil-apiserver applies
// the same condition under it, so they never fight over it.
const FieldManager = "veil-apiserver"

// Writer applies the condition with server-side apply, only when it
// differs from what the status holds: replicas that see the same store
// write at most once each, and then nothing.
type Writer struct {
	client configclient.ClusterSecretStoresGetter
	lister configlisters.ClusterSecretStoreLister
	clock  clock.PassiveClock
	queue  workqueue.TypedRateLimitingInterface[string]
}

// New returns a Writer fed by the informer's events.
func New(client configclient.ClusterSecretStoresGetter, informer cache.SharedIndexInformer, lister configlisters.ClusterSecretStoreLister) (*Writer, error) {
	w := &Writer{client: client, lister: lister, clock: clock.RealClock{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "clustersecretstore-status"})}
	enqueue := func(obj any) {
		if css, ok := obj.(*configv1alpha1.ClusterSecretStore); ok {
			w.queue.Add(css.Name)
		}
	}
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	return w, err
}

// Run writes conditions until ctx is done.
func (w *Writer) Run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for w.next(ctx) {
	}
}

func (w *Writer) next(ctx context.Context) bool {
	name, quit := w.queue.Get()
	if quit {
		return false
	}
	defer w.queue.Done(name)
	css, err := w.lister.Get(name)
	if apierrors.IsNotFound(err) {
		w.queue.Forget(name)
		return true
	}
	if err == nil {
		err = w.Sync(ctx, css)
	}
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing the status of a ClusterSecretStore", "clusterSecretStore", name)
		w.queue.AddRateLimited(name)
		return true
	}
	w.queue.Forget(name)
	return true
}

// Want is the condition css should have.
func Want(css *configv1alpha1.ClusterSecretStore) metav1.Condition {
	c := metav1.Condition{
		Type:               configv1alpha1.ConditionMatchesAllNamespaces,
		Status:             metav1.ConditionFalse,
		Reason:             configv1alpha1.ReasonNamespacesChosen,
		Message:            "every condition names its namespaces or needs labels that a new namespace does not have",
		ObservedGeneration: css.Generation,
	}
	if i := stores.OpenCondition(css); i >= 0 {
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, configv1alpha1.ReasonOpenNamespaceSelector, stores.OpenConditionMessage(css, i)
	}
	return c
}

// Sync applies the condition css should have, unless it has it.
func (w *Writer) Sync(ctx context.Context, css *configv1alpha1.ClusterSecretStore) error {
	want := Want(css)
	have := apimeta.FindStatusCondition(css.Status.Conditions, want.Type)
	if have != nil && have.Status == want.Status && have.Reason == want.Reason && have.Message == want.Message && have.ObservedGeneration == want.ObservedGeneration {
		return nil
	}
	want.LastTransitionTime = metav1.NewTime(w.clock.Now())
	if have != nil && have.Status == want.Status {
		want.LastTransitionTime = have.LastTransitionTime
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": configv1alpha1.SchemeGroupVersion.String(),
		"kind":       "ClusterSecretStore",
		"metadata":   map[string]any{"name": css.Name},
		"status":     map[string]any{"conditions": []metav1.Condition{want}},
	})
	if err != nil {
		return err
	}
	force := true
	_, err = w.client.ClusterSecretStores().Patch(ctx, css.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: FieldManager, Force: &force}, "status")
	return err
}
