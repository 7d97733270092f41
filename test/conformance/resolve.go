package conformance

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	"github.com/veil-dev/veil/pkg/credentials"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/resolve"
	"github.com/veil-dev/veil/pkg/stores"
)

// resolver is veil-apiserver's read path over the store under test as it
// is now: the SecretStore in a lister, stores.Lookup (provider lookup,
// endpoint checks), stores.Clients (credentials, the allowlist dialer) and the Resolver,
// without a cache, so every read reaches the provider.
//
// The allowlist names exactly the store's endpoints, as an administrator
// allowing this store would: the test servers listen on loopback, which a
// SecretStore reaches only when the list names it.
func (s *suite) resolver(t *testing.T, st Store) *resolve.Resolver {
	t.Helper()
	ss := &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: StoreName, UID: types.UID("uid-" + s.run), Generation: 1},
		Spec:       st.Spec,
	}
	secretStores := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	if err := secretStores.Add(ss); err != nil {
		t.Fatal(err)
	}
	empty := func() toolscache.Indexer {
		return toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	}

	p, err := providers.For(&ss.Spec)
	s.must(t, err, "the store's provider")
	urls, err := p.Endpoints(st.providerStore())
	s.must(t, err, "the store's endpoints")
	var hosts []string
	for _, u := range urls {
		hosts = append(hosts, u.Hostname())
	}
	list, err := allowlist.Parse(hosts)
	if err != nil {
		t.Fatal(err)
	}

	kube := fake.NewClientset(st.Objects...)
	clients := stores.NewClients(credentials.NewReader(kube, 0), env())
	clients.Endpoints = list
	t.Cleanup(func() { clients.Close(context.Background()) })
	return &resolve.Resolver{
		Stores: &stores.Lookup{
			SecretStores:        configlisters.NewSecretStoreLister(secretStores),
			ClusterSecretStores: configlisters.NewClusterSecretStoreLister(empty()),
			Namespaces:          corelisters.NewNamespaceLister(empty()),
			Endpoints:           list,
			AllowPlaintext:      true,
			Remotes:             registeredRemotes{},
		},
		Clients:                clients,
		Clock:                  clock.RealClock{},
		DefaultRefreshInterval: time.Hour,
	}
}

// resolveES reads an ExternalSecret of Namespace through the store under test.
func (s *suite) resolveES(t *testing.T, r *resolve.Resolver, data []configv1alpha1.ExternalSecretData, dataFrom ...configv1alpha1.ExternalSecretDataFromRemoteRef) (*externalsecrets.ExternalSecretValue, error) {
	t.Helper()
	es := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "es-" + s.run},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef: new(configv1alpha1.SecretStoreRef{Name: StoreName, Kind: configv1alpha1.SecretStoreKind}),
			Data:           data,
			DataFrom:       dataFrom,
		},
	}
	return r.Resolve(s.ctx(t), es)
}

// registeredRemotes gives a store that names a ProviderRegistration
// (spec.provider.remote) the provider registered as "remote": a test of a
// provider that has no in-process twin registers its endpoint so
// (remotetest.RunEndpoint), where veil-apiserver would look the
// registration up (pkg/stores/remotes).
type registeredRemotes struct{}

func (registeredRemotes) Provider(_ context.Context, store *providers.Store, registration string) (providers.Provider, string, error) {
	p, err := providers.For(store.Spec)
	return p, "registration/" + registration, err
}
