package stores

import (
	"context"
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	veilfake "github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	_ "github.com/veil-dev/veil/pkg/providers/fake"
)

// endpointProvider stands in for a provider with endpoints (the real ones
// live in their own packages, which this package does not import). It
// takes the "vault" name, so stores with spec.provider.vault use it.
type endpointProvider struct{ providers.Provider }

func (endpointProvider) Name() string { return "vault" }

func (endpointProvider) Endpoints(s *providers.Store) ([]*url.URL, error) {
	u, err := url.Parse(s.Spec.Provider.Vault.Server)
	return []*url.URL{u}, err
}

func init() { providers.Register(endpointProvider{}) }

func fakeSpec() configv1alpha1.SecretStoreSpec {
	return configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{}}}
}

func vaultSpec(server string) configv1alpha1.SecretStoreSpec {
	return configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{Server: server}}}
}

type world struct {
	stores   []*configv1alpha1.SecretStore
	cluster  []*configv1alpha1.ClusterSecretStore
	ns       []*corev1.Namespace
	liveOnly []*configv1alpha1.SecretStore // in kube-apiserver, not yet in the informer
}

func (w world) build(t *testing.T, endpoints []string, plaintext bool) *Lookup {
	t.Helper()
	index := func(objs ...any) cache.Indexer {
		idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		for _, o := range objs {
			if err := idx.Add(o); err != nil {
				t.Fatal(err)
			}
		}
		return idx
	}
	var ss, css, ns []any
	for _, s := range w.stores {
		ss = append(ss, s)
	}
	for _, s := range w.cluster {
		css = append(css, s)
	}
	for _, n := range w.ns {
		ns = append(ns, n)
	}
	live := veilfake.NewSimpleClientset()
	for _, s := range append(w.stores, w.liveOnly...) {
		if _, err := live.ConfigV1alpha1().SecretStores(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	list, err := allowlist.Parse(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	return &Lookup{
		SecretStores:        configlisters.NewSecretStoreLister(index(ss...)),
		ClusterSecretStores: configlisters.NewClusterSecretStoreLister(index(css...)),
		Namespaces:          corelisters.NewNamespaceLister(index(ns...)),
		Live:                live.ConfigV1alpha1(),
		LiveCore:            kubefake.NewClientset().CoreV1(),
		Endpoints:           list,
		AllowPlaintext:      plaintext,
	}
}

func store(ns, name string, spec configv1alpha1.SecretStoreSpec) *configv1alpha1.SecretStore {
	return &configv1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Generation: 3}, Spec: spec}
}

func clusterStore(name string, conditions ...configv1alpha1.ClusterSecretStoreCondition) *configv1alpha1.ClusterSecretStore {
	return &configv1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Spec: configv1alpha1.ClusterSecretStoreSpec{SecretStoreSpec: fakeSpec(), Conditions: conditions}}
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func ssRef(name string) configv1alpha1.SecretStoreRef {
	return configv1alpha1.SecretStoreRef{Name: name, Kind: configv1alpha1.SecretStoreKind}
}

func cssRef(name string) configv1alpha1.SecretStoreRef {
	return configv1alpha1.SecretStoreRef{Name: name, Kind: configv1alpha1.ClusterSecretStoreKind}
}

func TestSecretStoreLookup(t *testing.T) {
	s := world{
		stores:   []*configv1alpha1.SecretStore{store("app", "demo", fakeSpec()), store("app", "empty", configv1alpha1.SecretStoreSpec{})},
		liveOnly: []*configv1alpha1.SecretStore{store("app", "fresh", fakeSpec())},
	}.build(t, nil, false)
	ctx := context.Background()

	got, err := s.For(ctx, "app", ssRef("demo"))
	if err != nil || got.Provider.Name() != "fake" || got.UID != "uid-demo" || got.Generation != 3 || got.Namespace != "app" {
		t.Fatalf("demo: %+v, %v", got, err)
	}
	if _, err := s.For(ctx, "app", configv1alpha1.SecretStoreRef{Name: "demo"}); err != nil {
		t.Errorf("a ref without kind means SecretStore: %v", err)
	}
	if _, err := s.For(ctx, "app", ssRef("fresh")); err != nil {
		t.Errorf("a store the informer has not seen yet: %v", err)
	}
	_, err = s.For(ctx, "other", ssRef("demo"))
	if providers.ReasonOf(err) != providers.NotFound || !strings.Contains(err.Error(), `SecretStore "demo" does not exist in namespace "other"`) {
		t.Errorf("another namespace's store: %v", err)
	}
	if _, err := s.For(ctx, "app", ssRef("empty")); providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), "names no provider") {
		t.Errorf("no provider: %v", err)
	}
	if _, err := s.For(ctx, "app", configv1alpha1.SecretStoreRef{Name: "demo", Kind: "Vault"}); providers.ReasonOf(err) != providers.Invalid {
		t.Errorf("bad kind: %v", err)
	}
}

func TestClusterSecretStoreConditionsDefaultDeny(t *testing.T) {
	s := world{
		cluster: []*configv1alpha1.ClusterSecretStore{
			clusterStore("open-to-none"),
			clusterStore("named", configv1alpha1.ClusterSecretStoreCondition{Namespaces: []string{"team-a"}}),
			clusterStore("selected", configv1alpha1.ClusterSecretStoreCondition{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"veil": "yes"}}}),
			clusterStore("bad-selector", configv1alpha1.ClusterSecretStoreCondition{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "k", Operator: "Bogus"}}}}),
			// ESO's namespaceRegexes: unanchored, as ESO matches them.
			clusterStore("patterns", configv1alpha1.ClusterSecretStoreCondition{NamespaceRegexes: []string{"^nomatch$", "m-[ab]"}}),
			clusterStore("bad-pattern", configv1alpha1.ClusterSecretStoreCondition{NamespaceRegexes: []string{"team-("}}),
		},
		ns: []*corev1.Namespace{namespace("team-a", nil), namespace("team-b", map[string]string{"veil": "yes"}), namespace("team-c", nil)},
	}.build(t, nil, false)
	ctx := context.Background()

	cases := []struct {
		store, ns string
		reason    providers.Reason // "" = allowed
		says      string
	}{
		{"open-to-none", "team-a", providers.Forbidden, "has no spec.conditions, so no namespace may use it"},
		{"named", "team-a", "", ""},
		{"named", "team-b", providers.Forbidden, "none of its spec.conditions matches it"},
		{"selected", "team-b", "", ""},
		{"selected", "team-c", providers.Forbidden, "none of its spec.conditions matches it"},
		{"bad-selector", "team-a", providers.Invalid, "invalid spec.conditions namespaceSelector"},
		{"patterns", "team-a", "", ""},
		{"patterns", "team-b", "", ""},
		{"patterns", "team-c", providers.Forbidden, "none of its spec.conditions matches it"},
		{"bad-pattern", "team-a", providers.Invalid, `invalid spec.conditions namespaceRegexes: "team-(" is not a regular expression`},
		{"missing", "team-a", providers.NotFound, `ClusterSecretStore "missing" does not exist`},
	}
	for _, c := range cases {
		got, err := s.For(ctx, c.ns, cssRef(c.store))
		if c.reason == "" {
			if err != nil || got.Kind != configv1alpha1.ClusterSecretStoreKind || got.Namespace != "" {
				t.Errorf("%s from %s: %+v, %v; want allowed", c.store, c.ns, got, err)
			}
			continue
		}
		if providers.ReasonOf(err) != c.reason || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s from %s: %v; want %s saying %q", c.store, c.ns, err, c.reason, c.says)
		}
	}
}

func TestEndpointPolicyBeforeAnyConnection(t *testing.T) {
	w := world{stores: []*configv1alpha1.SecretStore{
		store("app", "allowed", vaultSpec("https://vault.corp.example:8200")),
		store("app", "elsewhere", vaultSpec("https://attacker.example")),
		store("app", "plaintext", vaultSpec("http://vault.corp.example")),
		store("app", "userinfo", vaultSpec("http://user:pw@vault.corp.example/?token=t")),
	}}
	s := w.build(t, []string{"*.corp.example"}, false)
	ctx := context.Background()

	if _, err := s.For(ctx, "app", ssRef("allowed")); err != nil {
		t.Errorf("allowed endpoint: %v", err)
	}
	_, err := s.For(ctx, "app", ssRef("elsewhere"))
	if providers.ReasonOf(err) != providers.Forbidden || !strings.Contains(err.Error(), `endpoint "attacker.example", which veil-apiserver's --allowed-provider-endpoints (*.corp.example) does not allow`) {
		t.Errorf("endpoint outside the allowlist: %v", err)
	}
	_, err = s.For(ctx, "app", ssRef("plaintext"))
	if providers.ReasonOf(err) != providers.Forbidden || !strings.Contains(err.Error(), "--allow-plaintext-providers") {
		t.Errorf("plaintext endpoint: %v", err)
	}
	_, err = s.For(ctx, "app", ssRef("userinfo"))
	if err == nil || strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "token=t") {
		t.Errorf("credentials in a URL must not be echoed: %v", err)
	}

	s = w.build(t, nil, true)
	if _, err := s.For(ctx, "app", ssRef("plaintext")); err != nil {
		t.Errorf("plaintext allowed by flag, any endpoint: %v", err)
	}
}

// TestCachedLookupNeverAsksKubeAPIServer: change detection looks stores up
// for every ExternalSecret every cycle, so one naming a store that does
// not exist must not turn into a GET to kube-apiserver each time.
func TestCachedLookupNeverAsksKubeAPIServer(t *testing.T) {
	s := world{
		stores:   []*configv1alpha1.SecretStore{store("app", "demo", fakeSpec())},
		liveOnly: []*configv1alpha1.SecretStore{store("app", "fresh", fakeSpec())},
		cluster:  []*configv1alpha1.ClusterSecretStore{clusterStore("shared", configv1alpha1.ClusterSecretStoreCondition{Namespaces: []string{"app"}})},
	}.build(t, nil, false)
	ctx := context.Background()
	c := s.Cached()
	if c.Live != nil || c.LiveCore != nil || s.Live == nil {
		t.Fatal("Cached must drop the live clients of its copy only")
	}
	if _, err := c.For(ctx, "app", ssRef("demo")); err != nil {
		t.Errorf("a store the informer has: %v", err)
	}
	if _, err := c.For(ctx, "app", cssRef("shared")); err != nil {
		t.Errorf("a ClusterSecretStore the informer has: %v", err)
	}
	// "fresh" is only in kube-apiserver: For finds it, Cached does not look.
	if _, err := s.For(ctx, "app", ssRef("fresh")); err != nil {
		t.Fatalf("For reads kube-apiserver on an informer miss: %v", err)
	}
	for _, ref := range []configv1alpha1.SecretStoreRef{ssRef("fresh"), ssRef("missing"), cssRef("missing")} {
		if _, err := c.For(ctx, "app", ref); providers.ReasonOf(err) != providers.NotFound {
			t.Errorf("%s %s from the informers only: %v, want NotFound", ref.Kind, ref.Name, err)
		}
	}
}
