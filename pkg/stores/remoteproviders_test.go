package stores

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// registrations stands in for pkg/stores/remotes: registration name to
// stamp; the provider is the endpointProvider of these tests.
type registrations map[string]string

func (r registrations) Provider(_ context.Context, store *providers.Store, name string) (providers.Provider, string, error) {
	stamp, ok := r[name]
	if !ok {
		return nil, "", providers.Errorf(providers.NotFound, "%s names ProviderRegistration %q, which does not exist", store, name)
	}
	return endpointProvider{}, stamp, nil
}

func remoteStore(namespace, name, registration string) *configv1alpha1.SecretStore {
	return &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID("uid-" + name), Generation: 1},
		Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{
			Remote: &configv1alpha1.RemoteProvider{Registration: registration}}},
	}
}

// A store naming a registration gets its provider and stamp, and the stamp
// is part of the store's cache keys: a value read before the registration
// changed is never served after. Its errors come through as they are.
func TestLookupRemoteStore(t *testing.T) {
	w := world{stores: []*configv1alpha1.SecretStore{remoteStore("team", "vault", "vault"), remoteStore("team", "missing", "nope")}}
	// The allowlist of in-process endpoints does not apply: the
	// registration's endpoint is RemoteProviders' to check.
	l := w.build(t, []string{"only.example"}, false)
	regs := registrations{"vault": "uid/1"}
	l.Remotes = regs
	ctx := context.Background()

	st, err := l.For(ctx, "team", configv1alpha1.SecretStoreRef{Name: "vault"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Registration != "uid/1" {
		t.Fatalf("store has registration stamp %q, want uid/1", st.Registration)
	}
	id := Identity{Kind: "SecretStore", Namespace: "team", Name: "vault", UID: st.UID, Generation: 1, Registration: st.Registration}
	before := id.ValueKey(providers.Ref{Key: "k"})

	regs["vault"] = "uid/2"
	st, err = l.For(ctx, "team", configv1alpha1.SecretStoreRef{Name: "vault"})
	if err != nil {
		t.Fatal(err)
	}
	id.Registration = st.Registration
	if id.ValueKey(providers.Ref{Key: "k"}) == before {
		t.Error("a changed registration leaves the cache key of a value as it was")
	}

	_, err = l.For(ctx, "team", configv1alpha1.SecretStoreRef{Name: "missing"})
	if providers.ReasonOf(err) != providers.NotFound || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("a store naming an unknown registration: %v", err)
	}

	l.Remotes = nil
	_, err = l.For(ctx, "team", configv1alpha1.SecretStoreRef{Name: "vault"})
	if providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), "does not reach provider processes") {
		t.Errorf("without RemoteProviders: %v", err)
	}
}
