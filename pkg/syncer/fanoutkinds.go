package syncer

import (
	"context"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	configinformers "github.com/veil-dev/veil/pkg/generated/informers/externalversions/config/v1alpha1"
)

type (
	ces = configv1alpha1.ClusterExternalSecret
	cps = configv1alpha1.ClusterPushSecret
	es  = configv1alpha1.ExternalSecret
	ps  = configv1alpha1.PushSecret
)

// deleteOptions delete only the object of this UID: one recreated
// meanwhile, by anyone, is left alone.
func deleteOptions(uid types.UID) metav1.DeleteOptions {
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr.To(uid)}}
}

func writeOptions() metav1.CreateOptions { return metav1.CreateOptions{FieldManager: fieldManager} }

func clusterExternalSecretKind(veil versioned.Interface, parents configinformers.ClusterExternalSecretInformer,
	children configinformers.ExternalSecretInformer) fanOutKind[*ces, *es] {
	pl, cl := parents.Lister(), children.Lister()
	return fanOutKind[*ces, *es]{
		name: "ClusterExternalSecret", child: "ExternalSecret", label: configv1alpha1.ClusterExternalSecretLabel,
		getParent:  pl.Get,
		listParent: func() ([]*ces, error) { return pl.List(labels.Everything()) },
		owned: func(sel labels.Selector) ([]*es, error) {
			req, _ := labels.NewRequirement(configv1alpha1.ClusterExternalSecretLabel, selection.Exists, nil)
			return cl.List(sel.Add(*req))
		},
		getChild:    func(ns, name string) (*es, error) { return cl.ExternalSecrets(ns).Get(name) },
		selection:   func(p *ces) *configv1alpha1.NamespaceSelection { return &p.Spec.NamespaceSelection },
		childName:   func(p *ces) string { return nameOr(p.Spec.ExternalSecretName, p.Name) },
		metadata:    func(p *ces) configv1alpha1.ClusterSecretMetadata { return p.Spec.ExternalSecretMetadata },
		refreshTime: func(p *ces) *metav1.Duration { return p.Spec.RefreshTime },
		status:      func(p *ces) *configv1alpha1.ClusterSecretFanOutStatus { return &p.Status },
		newChild: func(p *ces, ns, name string) *es {
			return &es{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: *p.Spec.ExternalSecretSpec.DeepCopy()}
		},
		sameSpec: func(have, want *es) bool { return equality.Semantic.DeepEqual(have.Spec, want.Spec) },
		setSpec:  func(have, want *es) { have.Spec = want.Spec },
		create: func(ctx context.Context, c *es) error {
			_, err := veil.ConfigV1alpha1().ExternalSecrets(c.Namespace).Create(ctx, c, writeOptions())
			return err
		},
		update: func(ctx context.Context, c *es) error {
			_, err := veil.ConfigV1alpha1().ExternalSecrets(c.Namespace).Update(ctx, c, metav1.UpdateOptions{FieldManager: fieldManager})
			return err
		},
		delete: func(ctx context.Context, ns, name string, uid types.UID) error {
			return veil.ConfigV1alpha1().ExternalSecrets(ns).Delete(ctx, name, deleteOptions(uid))
		},
		applyStatus: func(ctx context.Context, name string, body []byte, opts metav1.PatchOptions) error {
			_, err := veil.ConfigV1alpha1().ClusterExternalSecrets().Patch(ctx, name, types.ApplyPatchType, body, opts, "status")
			return err
		},
	}
}

func clusterPushSecretKind(veil versioned.Interface, parents configinformers.ClusterPushSecretInformer,
	children configinformers.PushSecretInformer) fanOutKind[*cps, *ps] {
	pl, cl := parents.Lister(), children.Lister()
	return fanOutKind[*cps, *ps]{
		name: "ClusterPushSecret", child: "PushSecret", label: configv1alpha1.ClusterPushSecretLabel,
		getParent:  pl.Get,
		listParent: func() ([]*cps, error) { return pl.List(labels.Everything()) },
		owned: func(sel labels.Selector) ([]*ps, error) {
			req, _ := labels.NewRequirement(configv1alpha1.ClusterPushSecretLabel, selection.Exists, nil)
			return cl.List(sel.Add(*req))
		},
		getChild:    func(ns, name string) (*ps, error) { return cl.PushSecrets(ns).Get(name) },
		selection:   func(p *cps) *configv1alpha1.NamespaceSelection { return &p.Spec.NamespaceSelection },
		childName:   func(p *cps) string { return nameOr(p.Spec.PushSecretName, p.Name) },
		metadata:    func(p *cps) configv1alpha1.ClusterSecretMetadata { return p.Spec.PushSecretMetadata },
		refreshTime: func(p *cps) *metav1.Duration { return p.Spec.RefreshTime },
		status:      func(p *cps) *configv1alpha1.ClusterSecretFanOutStatus { return &p.Status },
		newChild: func(p *cps, ns, name string) *ps {
			return &ps{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: *p.Spec.PushSecretSpec.DeepCopy()}
		},
		sameSpec: func(have, want *ps) bool { return equality.Semantic.DeepEqual(have.Spec, want.Spec) },
		setSpec:  func(have, want *ps) { have.Spec = want.Spec },
		create: func(ctx context.Context, c *ps) error {
			_, err := veil.ConfigV1alpha1().PushSecrets(c.Namespace).Create(ctx, c, writeOptions())
			return err
		},
		update: func(ctx context.Context, c *ps) error {
			_, err := veil.ConfigV1alpha1().PushSecrets(c.Namespace).Update(ctx, c, metav1.UpdateOptions{FieldManager: fieldManager})
			return err
		},
		delete: func(ctx context.Context, ns, name string, uid types.UID) error {
			return veil.ConfigV1alpha1().PushSecrets(ns).Delete(ctx, name, deleteOptions(uid))
		},
		applyStatus: func(ctx context.Context, name string, body []byte, opts metav1.PatchOptions) error {
			_, err := veil.ConfigV1alpha1().ClusterPushSecrets().Patch(ctx, name, types.ApplyPatchType, body, opts, "status")
			return err
		},
	}
}

func nameOr(name, fallback string) string {
	if name != "" {
		return name
	}
	return fallback
}

// fanOutControllers are the ClusterExternalSecret and ClusterPushSecret
// controllers.
type fanOutControllers struct {
	ces *fanOutController[*ces, *es]
	cps *fanOutController[*cps, *ps]
}

func newFanOutControllers(veil versioned.Interface, v1 configinformers.Interface, namespaces coreinformers.NamespaceInformer,
	recorder record.EventRecorder, excluded sets.Set[string]) (*fanOutControllers, error) {
	cesCtrl, err := newFanOutController(clusterExternalSecretKind(veil, v1.ClusterExternalSecrets(), v1.ExternalSecrets()),
		v1.ClusterExternalSecrets().Informer(), v1.ExternalSecrets().Informer(), namespaces.Informer(), namespaces.Lister(), recorder, excluded)
	if err != nil {
		return nil, err
	}
	cpsCtrl, err := newFanOutController(clusterPushSecretKind(veil, v1.ClusterPushSecrets(), v1.PushSecrets()),
		v1.ClusterPushSecrets().Informer(), v1.PushSecrets().Informer(), namespaces.Informer(), namespaces.Lister(), recorder, excluded)
	if err != nil {
		return nil, err
	}
	return &fanOutControllers{ces: cesCtrl, cps: cpsCtrl}, nil
}

// fanOutWorkers: provisioning is a few cache reads and, rarely, a write.
const fanOutWorkers = 2
