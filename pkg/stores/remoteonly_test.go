package stores

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// TestRemoteOnlyRefusesInProcessStores: with --in-process-providers=false,
// a store whose provider would run in veil-apiserver's process is refused
// as Invalid, saying what to change, before anything is built for it (no
// provider, so no client, credential read or call); change detection's
// cached lookup refuses it too; a store naming a registration is served.
func TestRemoteOnlyRefusesInProcessStores(t *testing.T) {
	css := clusterStore("shared", configv1alpha1.ClusterSecretStoreCondition{Namespaces: []string{"app"}})
	w := world{
		stores: []*configv1alpha1.SecretStore{
			store("app", "fake", fakeSpec()),
			store("app", "vault", vaultSpec("https://vault.corp.example:8200")),
			// Refused whatever else is wrong with it: the endpoint
			// policy is never consulted.
			store("app", "plaintext", vaultSpec("http://attacker.example")),
			remoteStore("app", "remote", "vault"),
		},
		cluster: []*configv1alpha1.ClusterSecretStore{css},
		ns:      []*corev1.Namespace{namespace("app", nil)},
	}
	l := w.build(t, nil, false)
	l.Remotes = registrations{"vault": "uid/1"}
	ctx := context.Background()

	// In process by default: the flag's default keeps today's behaviour.
	if _, err := l.For(ctx, "app", ssRef("fake")); err != nil {
		t.Fatalf("in-process store with RemoteOnly unset: %v", err)
	}

	l.RemoteOnly = true
	for _, c := range []struct {
		ref      configv1alpha1.SecretStoreRef
		provider string
	}{{ssRef("fake"), "fake"}, {ssRef("vault"), "vault"}, {ssRef("plaintext"), "vault"}, {cssRef("shared"), "fake"}} {
		for name, lookup := range map[string]*Lookup{"For": l, "Cached": l.Cached()} {
			st, err := lookup.For(ctx, "app", c.ref)
			if st != nil || providers.ReasonOf(err) != providers.Invalid {
				t.Errorf("%s %s %s: store %v, error %v; want Invalid", name, c.ref.Kind, c.ref.Name, st, err)
				continue
			}
			for _, want := range []string{"the " + c.provider + " provider in veil-apiserver's process", "--in-process-providers=false", "name a ProviderRegistration in spec.provider.remote.registration"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s %s %s: %q does not say %q", name, c.ref.Kind, c.ref.Name, err, want)
				}
			}
		}
	}
	st, err := l.For(ctx, "app", ssRef("remote"))
	if err != nil || st.Registration != "uid/1" {
		t.Fatalf("store naming a registration, remote only: %v, %v", st, err)
	}
}
