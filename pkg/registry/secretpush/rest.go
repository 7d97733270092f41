// Package secretpush serves secretpushes: create-only requests, like
// TokenReviews, that write values to providers. Nothing is stored.
package secretpush

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/warning"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	configclient "github.com/veil-dev/veil/pkg/generated/clientset/versioned/typed/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/registry"
)

// Pusher carries out a SecretPush; *push.Pusher (pkg/push) is one.
type Pusher interface {
	Push(ctx context.Context, ps *configv1alpha1.PushSecret, spec externalsecrets.SecretPushSpec, dryRun bool) ([]externalsecrets.SecretPushResult, error)
}

// REST is the storage of secretpushes.
type REST struct {
	pushSecrets configlisters.PushSecretLister
	live        configclient.PushSecretsGetter
	pusher      Pusher
}

// NewREST returns the storage of secretpushes.
func NewREST(pushSecrets configlisters.PushSecretLister, live configclient.PushSecretsGetter, pusher Pusher) *REST {
	return &REST{pushSecrets: pushSecrets, live: live, pusher: pusher}
}

var (
	_ rest.Storage              = &REST{}
	_ rest.Creater              = &REST{}
	_ rest.Scoper               = &REST{}
	_ rest.KindProvider         = &REST{}
	_ rest.SingularNameProvider = &REST{}
)

var resource = externalsecrets.Resource("secretpushes")

func (r *REST) New() runtime.Object     { return &externalsecrets.SecretPush{} }
func (r *REST) Destroy()                {}
func (r *REST) NamespaceScoped() bool   { return true }
func (r *REST) Kind() string            { return "SecretPush" }
func (r *REST) GetSingularName() string { return "secretpush" }

// Create pushes the request's values, or deletes the remote keys, of the
// PushSecret it names, and answers with one result per remote key. The
// values are never part of the answer.
func (r *REST) Create(ctx context.Context, obj runtime.Object, validate rest.ValidateObjectFunc, opts *metav1.CreateOptions) (runtime.Object, error) {
	req := obj.(*externalsecrets.SecretPush)
	ns, ok := genericapirequest.NamespaceFrom(ctx)
	if !ok || ns == "" {
		return nil, apierrors.NewBadRequest("secretpushes are namespaced: name a namespace")
	}
	if req.Name == "" {
		return nil, registry.APIError(resource, "", providers.Errorf(providers.Invalid, "metadata.name must name the PushSecret to push"))
	}
	if validate != nil {
		if err := validate(ctx, obj); err != nil {
			return nil, err
		}
	}
	ps, err := r.pushSecrets.PushSecrets(ns).Get(req.Name)
	if apierrors.IsNotFound(err) {
		ps, err = r.live.PushSecrets(ns).Get(ctx, req.Name, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		return nil, registry.APIError(resource, req.Name, providers.Errorf(providers.NotFound, "there is no PushSecret %q in namespace %q", req.Name, ns))
	}
	if err != nil {
		return nil, registry.APIError(resource, req.Name, providers.Wrap(providers.Unavailable, err, "reading PushSecret %s/%s", ns, req.Name))
	}

	dryRun := opts != nil && len(opts.DryRun) > 0
	results, err := r.pusher.Push(ctx, ps, req.Spec, dryRun)
	if err != nil {
		return nil, registry.APIError(resource, req.Name, providers.Within(err, "PushSecret %s/%s", ns, req.Name))
	}
	for _, res := range results {
		if res.Result == esv1alpha1.SecretPushResultFailed {
			warning.AddWarning(ctx, "", fmt.Sprintf("%s/%s %s: %s", res.StoreRef.Kind, res.StoreRef.Name, res.RemoteKey, res.Message))
		}
	}
	return &externalsecrets.SecretPush{
		ObjectMeta: metav1.ObjectMeta{Name: req.Name, Namespace: ns, CreationTimestamp: metav1.Now()},
		Spec:       externalsecrets.SecretPushSpec{Action: req.Spec.Action},
		Status:     externalsecrets.SecretPushStatus{Results: results},
	}, nil
}
