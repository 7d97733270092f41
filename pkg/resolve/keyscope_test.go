package resolve

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/cache"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/stores"
)

// scope is the key scope of namespace ns through the ClusterSecretStore
// name, whose one matching condition has remoteKeyPrefix prefix.
func scope(t *testing.T, name, ns, prefix string) *stores.KeyScope {
	t.Helper()
	css := &configv1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: name}}
	s, err := stores.ScopeFor(css, ns, []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{ns}, RemoteKeyPrefix: prefix}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestKeyScopeConfinesFind: a find through a scoped store, with no path,
// returns only the namespace's keys; and what a find returns is filtered by
// the scope even when the provider returns more than it was asked for.
func TestKeyScopeConfinesFind(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"teams/a/x": "a", "teams/b/x": "b", "teams/ab/y": "ab"}, "tok")
	w := newTenantWorld(t, remote, cache.Config{}, map[string]string{"a": "tok"})
	store := w.storeIn("a")
	store.Scope = scope(t, "shared", "a", "teams/a/")
	es := externalSecretOf("a", "found", nil)
	es.Spec.DataFrom = []configv1alpha1.ExternalSecretDataFromRemoteRef{{Find: &configv1alpha1.ExternalSecretFind{Name: &configv1alpha1.FindName{RegExp: ".*"}}}}
	got := w.mustRead(t, es, store)
	if len(got.Data) != 1 || string(got.Data["teams_a_x"]) != "a" {
		t.Errorf("find without a path: %v, want only teams/a/x", got.Data)
	}

	// A provider that returns more than it was asked for is filtered.
	src := &source{cache: w.resolver.Cache, client: sloppyFind{&tenantClient{remote: remote, token: "tok"}}, id: stores.Identity{Name: "sloppy"},
		clock: w.clock, es: es, scope: store.Scope}
	found, err := src.find(context.Background(), providers.Find{Path: "teams/a/"})
	if _, ok := found["teams/a/x"]; err != nil || !ok || len(found) != 1 {
		t.Errorf("a provider's extra keys were not filtered: %v, %v", found, err)
	}
}

// sloppyFind returns every key, whatever the find's path.
type sloppyFind struct{ *tenantClient }

func (c sloppyFind) Find(ctx context.Context, f providers.Find) (map[string]providers.Value, error) {
	f.Path = ""
	return c.tenantClient.Find(ctx, f)
}
