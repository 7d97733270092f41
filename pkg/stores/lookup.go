package stores

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	configclient "github.com/veil-dev/veil/pkg/generated/clientset/versioned/typed/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// Lookup finds the store an object refers to and decides whether its
// namespace may use it. Reads and pushes share it, so they share the rules.
type Lookup struct {
	SecretStores        configlisters.SecretStoreLister
	ClusterSecretStores configlisters.ClusterSecretStoreLister
	Namespaces          corelisters.NamespaceLister
	// Live is read when an informer does not have an object yet, so a store
	// or namespace created a moment ago is not taken for missing. Without
	// Live (and LiveCore), only the informers are read: see Cached.
	Live     configclient.ConfigV1alpha1Interface
	LiveCore corev1client.NamespacesGetter
	// Endpoints is --allowed-provider-endpoints.
	Endpoints *allowlist.List
	// AllowPlaintext is --allow-plaintext-providers.
	AllowPlaintext bool
	// Remotes serves the stores that name a ProviderRegistration
	// (pkg/stores/remotes); without it, such stores cannot be used.
	Remotes RemoteProviders
	// RemoteOnly is --in-process-providers=false: a store whose provider
	// would run in veil-apiserver's process (spec.provider.vault, .aws,
	// .fake) is refused as Invalid before anything is built for it, so no
	// credential is read, no token requested and no provider called on its
	// behalf. Reads, pushes and change detection all look stores up here.
	RemoteOnly bool
}

// RemoteOnlyMessage says why a store with an in-process provider is not
// served by a veil-apiserver run with --in-process-providers=false, and what
// to change.
const RemoteOnlyMessage = "this veil-apiserver serves only out-of-process providers (--in-process-providers=false): " +
	"name a ProviderRegistration in spec.provider.remote.registration"

// RemoteProviders gives the provider of a ProviderRegistration, reached
// out of process, and a stamp that changes whenever the registration does.
// Its errors are *providers.Error that say what to fix.
type RemoteProviders interface {
	Provider(ctx context.Context, store *providers.Store, registration string) (p providers.Provider, stamp string, err error)
}

// Store is a store that a namespace may use, with its provider.
type Store struct {
	providers.Store
	UID      types.UID
	Provider providers.Provider
	// Scope is the remote keys the namespace may use through the store;
	// nil allows all.
	Scope *KeyScope
	// Registration is the stamp of the ProviderRegistration the store
	// names (RemoteProviders), empty for a provider in process.
	Registration string
}

// For returns the store ref names, if namespace may use it. Its errors are
// *providers.Error: NotFound when the store does not exist, Forbidden when
// the namespace may not use it or its endpoint is not allowed, Invalid when
// its spec cannot work.
func (s *Lookup) For(ctx context.Context, namespace string, ref configv1alpha1.SecretStoreRef) (*Store, error) {
	var (
		store Store
		err   error
	)
	switch ref.Kind {
	case configv1alpha1.SecretStoreKind, "":
		var ss *configv1alpha1.SecretStore
		var live func() (*configv1alpha1.SecretStore, error)
		if s.Live != nil {
			live = func() (*configv1alpha1.SecretStore, error) {
				return s.Live.SecretStores(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			}
		}
		ss, err = informerElseLive(
			func() (*configv1alpha1.SecretStore, error) {
				return s.SecretStores.SecretStores(namespace).Get(ref.Name)
			}, live)
		if err == nil {
			store = Store{Store: providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: ss.Namespace, Name: ss.Name, Generation: ss.Generation, Spec: &ss.Spec}, UID: ss.UID}
		}
	case configv1alpha1.ClusterSecretStoreKind:
		var css *configv1alpha1.ClusterSecretStore
		var live func() (*configv1alpha1.ClusterSecretStore, error)
		if s.Live != nil {
			live = func() (*configv1alpha1.ClusterSecretStore, error) {
				return s.Live.ClusterSecretStores().Get(ctx, ref.Name, metav1.GetOptions{})
			}
		}
		css, err = informerElseLive(
			func() (*configv1alpha1.ClusterSecretStore, error) { return s.ClusterSecretStores.Get(ref.Name) }, live)
		if err == nil {
			scope, err := s.namespaceMayUse(ctx, namespace, css)
			if err != nil {
				return nil, err
			}
			warnIfOpen(ctx, css)
			store = Store{Store: providers.Store{Kind: configv1alpha1.ClusterSecretStoreKind, Name: css.Name, Generation: css.Generation, Spec: &css.Spec.SecretStoreSpec}, UID: css.UID, Scope: scope}
		}
	default:
		return nil, providers.Errorf(providers.Invalid, "secretStoreRef.kind %q is neither SecretStore nor ClusterSecretStore", ref.Kind)
	}
	if apierrors.IsNotFound(err) {
		if ref.Kind == configv1alpha1.ClusterSecretStoreKind {
			return nil, providers.Errorf(providers.NotFound, "ClusterSecretStore %q does not exist", ref.Name)
		}
		return nil, providers.Errorf(providers.NotFound, "SecretStore %q does not exist in namespace %q", ref.Name, namespace)
	}
	if err != nil {
		return nil, providers.Wrap(providers.Unavailable, err, "looking up store %q", ref.Name)
	}

	if r := store.Spec.Provider.Remote; r != nil {
		// The registration's endpoint is checked by Remotes, with the
		// trust of its author, a cluster administrator.
		if s.Remotes == nil {
			return nil, providers.Errorf(providers.Invalid, "%s names ProviderRegistration %q, but this veil-apiserver does not reach provider processes", &store.Store, r.Registration)
		}
		p, stamp, err := s.Remotes.Provider(ctx, &store.Store, r.Registration)
		if err != nil {
			return nil, err
		}
		store.Provider, store.Registration = p, stamp
		return &store, nil
	}
	store.Provider, err = providers.For(store.Spec)
	if err != nil {
		return nil, err
	}
	if s.RemoteOnly {
		return nil, providers.Errorf(providers.Invalid, "%s uses the %s provider in veil-apiserver's process, but %s", &store.Store, store.Provider.Name(), RemoteOnlyMessage)
	}
	if err := s.checkEndpoints(&store); err != nil {
		return nil, err
	}
	return &store, nil
}

// Cached is a Lookup that reads only its informers, for work no request
// waits on (change detection, every few seconds over every
// ExternalSecret): there, a store the informer has not seen yet is seen
// next time, and an ExternalSecret naming a store that does not exist must
// not make veil-apiserver ask kube-apiserver for it again and again.
func (s *Lookup) Cached() *Lookup {
	c := *s
	c.Live, c.LiveCore = nil, nil
	return &c
}

// informerElseLive reads an object from an informer's lister and, when the
// informer does not have it yet, from kube-apiserver (when live is not
// nil), so that a store or namespace created a moment ago is not taken for
// missing. Every lookup of Lookup goes through it.
func informerElseLive[T any](informer, live func() (T, error)) (T, error) {
	v, err := informer()
	if apierrors.IsNotFound(err) && live != nil {
		return live()
	}
	return v, err
}

// namespaceMayUse applies spec.conditions of a ClusterSecretStore and
// returns the key scope of the conditions that match. Unlike External
// Secrets Operator, no conditions means no namespace.
func (s *Lookup) namespaceMayUse(ctx context.Context, namespace string, css *configv1alpha1.ClusterSecretStore) (*KeyScope, error) {
	if len(css.Spec.Conditions) == 0 {
		return nil, providers.Errorf(providers.Forbidden, "ClusterSecretStore %q has no spec.conditions, so no namespace may use it; add a condition that matches namespace %q", css.Name, namespace)
	}
	var live func() (*corev1.Namespace, error)
	if s.LiveCore != nil {
		live = func() (*corev1.Namespace, error) {
			return s.LiveCore.Namespaces().Get(ctx, namespace, metav1.GetOptions{})
		}
	}
	ns, err := informerElseLive(
		func() (*corev1.Namespace, error) { return s.Namespaces.Get(namespace) }, live)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, providers.Wrap(providers.Unavailable, err, "looking up namespace %q", namespace)
	}
	var matched []configv1alpha1.ClusterSecretStoreCondition
	for _, c := range css.Spec.Conditions {
		match := slices.Contains(c.Namespaces, namespace)
		if !match && len(c.NamespaceRegexes) > 0 {
			match, err = matchesRegexes(c.NamespaceRegexes, namespace)
			if err != nil {
				return nil, providers.Errorf(providers.Invalid, "ClusterSecretStore %q has an invalid spec.conditions namespaceRegexes: %v", css.Name, err)
			}
		}
		if !match && c.NamespaceSelector != nil && ns != nil {
			sel, err := metav1.LabelSelectorAsSelector(c.NamespaceSelector)
			if err != nil {
				return nil, providers.Errorf(providers.Invalid, "ClusterSecretStore %q has an invalid spec.conditions namespaceSelector: %v", css.Name, err)
			}
			match = sel.Matches(labels.Set(ns.Labels))
		}
		if match {
			matched = append(matched, c)
		}
	}
	if len(matched) > 0 {
		return ScopeFor(css, namespace, matched)
	}
	return nil, providers.Errorf(providers.Forbidden, "ClusterSecretStore %q may not be used from namespace %q: none of its spec.conditions matches it", css.Name, namespace)
}

// checkEndpoints refuses a store before any connection when one of its
// endpoints is plaintext (unless allowed) or outside the allowlist.
func (s *Lookup) checkEndpoints(store *Store) error {
	urls, err := store.Provider.Endpoints(&store.Store)
	if err != nil {
		return err
	}
	for _, u := range urls {
		if err := (providers.Env{AllowPlaintext: s.AllowPlaintext}).CheckPlaintext(&store.Store, u); err != nil {
			return err
		}
		if !s.Endpoints.Allows(u.Hostname()) {
			return providers.Errorf(providers.Forbidden, "%s uses endpoint %q, which veil-apiserver's --allowed-provider-endpoints (%s) does not allow", &store.Store, u.Hostname(), s.Endpoints)
		}
		if err := s.Endpoints.Check(trustOf(store.Kind), u.Hostname()); err != nil {
			return providers.Wrap(providers.Forbidden, err, "%s may not use its endpoint", &store.Store)
		}
	}
	return nil
}

// trustOf is how far a store's author is trusted with addresses: anyone
// who administers a namespace may write a SecretStore.
func trustOf(kind configv1alpha1.StoreKind) allowlist.Trust {
	if kind == configv1alpha1.ClusterSecretStoreKind {
		return allowlist.Cluster
	}
	return allowlist.Namespaced
}
