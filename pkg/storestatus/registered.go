package storestatus

import (
	"context"
	"encoding/json"
	"fmt"
	"net"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	configclient "github.com/veil-dev/veil/pkg/generated/clientset/versioned/typed/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/stores"
)

// RegisteredFieldManager owns the ProviderRegistered condition. It is not
// FieldManager: an apply drops what its manager applied before and left
// out, so one manager per condition lets each be written alone.
const RegisteredFieldManager = "veil-apiserver-registrations"

// storeKey names a SecretStore (namespace set) or a ClusterSecretStore.
type storeKey struct{ namespace, name string }

// Registered keeps the ProviderRegistered condition in the status of every
// SecretStore and ClusterSecretStore that names a ProviderRegistration, so
// a store naming a missing one says so where its author looks, not only
// on reads. It removes the condition from a store that stops naming one,
// unless RemoteOnly: then a store naming none is not served, and its
// condition says so.
type Registered struct {
	Client        configclient.ConfigV1alpha1Interface
	SecretStores  configlisters.SecretStoreLister
	ClusterStores configlisters.ClusterSecretStoreLister
	Registrations configlisters.ProviderRegistrationLister
	// Endpoints is --allowed-provider-endpoints.
	Endpoints *allowlist.List
	// HasClientCertificate: --provider-client-cert-file is set.
	HasClientCertificate bool
	// RemoteOnly is --in-process-providers=false: a store that names no
	// registration gets the condition too, False, saying it is not served
	// and what to change (stores.RemoteOnlyMessage).
	RemoteOnly bool

	clock clock.PassiveClock
	queue workqueue.TypedRateLimitingInterface[storeKey]
}

// NewRegistered returns a Registered fed by the three informers' events.
func NewRegistered(r *Registered, stores, clusterStores, registrations cache.SharedIndexInformer) (*Registered, error) {
	r.clock = clock.RealClock{}
	r.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[storeKey](),
		workqueue.TypedRateLimitingQueueConfig[storeKey]{Name: "store-registration-status"})
	enqueueStore := func(obj any) {
		switch s := obj.(type) {
		case *configv1alpha1.SecretStore:
			r.queue.Add(storeKey{s.Namespace, s.Name})
		case *configv1alpha1.ClusterSecretStore:
			r.queue.Add(storeKey{"", s.Name})
		}
	}
	storeEvents := cache.ResourceEventHandlerFuncs{AddFunc: enqueueStore, UpdateFunc: func(_, obj any) { enqueueStore(obj) }}
	if _, err := stores.AddEventHandler(storeEvents); err != nil {
		return nil, err
	}
	if _, err := clusterStores.AddEventHandler(storeEvents); err != nil {
		return nil, err
	}
	// A registration's events reach the stores that name it.
	enqueueNaming := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if reg, ok := obj.(*configv1alpha1.ProviderRegistration); ok {
			r.enqueueNaming(reg.Name)
		}
	}
	_, err := registrations.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueNaming, UpdateFunc: func(_, obj any) { enqueueNaming(obj) }, DeleteFunc: enqueueNaming,
	})
	return r, err
}

func (r *Registered) enqueueNaming(registration string) {
	ss, _ := r.SecretStores.List(labels.Everything())
	for _, s := range ss {
		if names(&s.Spec) == registration {
			r.queue.Add(storeKey{s.Namespace, s.Name})
		}
	}
	css, _ := r.ClusterStores.List(labels.Everything())
	for _, s := range css {
		if names(&s.Spec.SecretStoreSpec) == registration {
			r.queue.Add(storeKey{"", s.Name})
		}
	}
}

func names(spec *configv1alpha1.SecretStoreSpec) string {
	if spec.Provider.Remote == nil {
		return ""
	}
	return spec.Provider.Remote.Registration
}

// Run writes conditions until ctx is done.
func (r *Registered) Run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		r.queue.ShutDown()
	}()
	for r.next(ctx) {
	}
}

func (r *Registered) next(ctx context.Context) bool {
	key, quit := r.queue.Get()
	if quit {
		return false
	}
	defer r.queue.Done(key)
	var err error
	if key.namespace == "" {
		var css *configv1alpha1.ClusterSecretStore
		if css, err = r.ClusterStores.Get(key.name); err == nil {
			err = r.sync(ctx, configv1alpha1.ClusterSecretStoreKind, "", css.Name, css.Generation, &css.Spec.SecretStoreSpec, css.Status.Conditions)
		}
	} else {
		var ss *configv1alpha1.SecretStore
		if ss, err = r.SecretStores.SecretStores(key.namespace).Get(key.name); err == nil {
			err = r.sync(ctx, configv1alpha1.SecretStoreKind, ss.Namespace, ss.Name, ss.Generation, &ss.Spec, ss.Status.Conditions)
		}
	}
	if apierrors.IsNotFound(err) {
		r.queue.Forget(key)
		return true
	}
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing the ProviderRegistered condition of a store", "store", klog.KRef(key.namespace, key.name))
		r.queue.AddRateLimited(key)
		return true
	}
	r.queue.Forget(key)
	return true
}

// Want is the condition a store naming registration should have; with
// registration empty (a store with a provider in process, when RemoteOnly),
// the False condition that says it is not served.
func (r *Registered) Want(registration string, generation int64) metav1.Condition {
	c := metav1.Condition{Type: configv1alpha1.ConditionProviderRegistered, ObservedGeneration: generation, Status: metav1.ConditionFalse}
	if registration == "" {
		c.Reason = configv1alpha1.ReasonInProcessProvidersDisabled
		c.Message = "the store's provider would run in veil-apiserver's process, so it is not served: " + stores.RemoteOnlyMessage
		return c
	}
	reg, err := r.Registrations.Get(registration)
	switch {
	case !r.HasClientCertificate:
		c.Reason = configv1alpha1.ReasonNoClientCertificate
		c.Message = "veil-apiserver has no client certificate for provider processes: its operator sets --provider-client-cert-file and --provider-client-key-file"
	case err != nil:
		c.Reason = configv1alpha1.ReasonRegistrationNotFound
		c.Message = fmt.Sprintf("ProviderRegistration %q does not exist: a cluster administrator creates it, or spec.provider.remote.registration names another", registration)
	default:
		host, _, _ := net.SplitHostPort(reg.Spec.Endpoint)
		if err := r.Endpoints.Check(allowlist.Cluster, host); err != nil {
			c.Reason = configv1alpha1.ReasonEndpointNotAllowed
			c.Message = fmt.Sprintf("ProviderRegistration %q has endpoint %s, which veil-apiserver's --allowed-provider-endpoints refuses: %v", registration, reg.Spec.Endpoint, err)
		} else {
			c.Status, c.Reason = metav1.ConditionTrue, configv1alpha1.ReasonRegistered
			c.Message = fmt.Sprintf("ProviderRegistration %q: the %s provider at %s, as %s", registration, reg.Spec.Provider, reg.Spec.Endpoint, reg.Spec.ServerName)
		}
	}
	return c
}

// sync applies the condition a store should have, or removes it from a
// store that no longer names a registration; it writes nothing when the
// status already says so.
func (r *Registered) sync(ctx context.Context, kind configv1alpha1.StoreKind, namespace, name string, generation int64, spec *configv1alpha1.SecretStoreSpec, conditions []metav1.Condition) error {
	have := apimeta.FindStatusCondition(conditions, configv1alpha1.ConditionProviderRegistered)
	apply := []metav1.Condition{}
	registration := names(spec)
	if registration != "" || r.RemoteOnly {
		want := r.Want(registration, generation)
		if have != nil && have.Status == want.Status && have.Reason == want.Reason && have.Message == want.Message && have.ObservedGeneration == want.ObservedGeneration {
			return nil
		}
		want.LastTransitionTime = metav1.NewTime(r.clock.Now())
		if have != nil && have.Status == want.Status {
			want.LastTransitionTime = have.LastTransitionTime
		}
		apply = append(apply, want)
	} else if have == nil {
		return nil
	}
	meta := map[string]any{"name": name}
	if namespace != "" {
		meta["namespace"] = namespace
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": configv1alpha1.SchemeGroupVersion.String(),
		"kind":       string(kind),
		"metadata":   meta,
		"status":     map[string]any{"conditions": apply},
	})
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: RegisteredFieldManager, Force: &force}
	if kind == configv1alpha1.ClusterSecretStoreKind {
		_, err = r.Client.ClusterSecretStores().Patch(ctx, name, types.ApplyPatchType, body, opts, "status")
	} else {
		_, err = r.Client.SecretStores(namespace).Patch(ctx, name, types.ApplyPatchType, body, opts, "status")
	}
	return err
}
