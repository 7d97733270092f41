package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

// remoteVaultConfig is a veil-provider configuration serving one
// SecretStore from Vault, with a token the provider alone holds.
func remoteVaultConfig(v *harness.Vault, ns, store, prefix string) string {
	return fmt.Sprintf(`stores:
- kind: SecretStore
  namespace: %s
  name: %s
  keyPrefixes: [%q]
  provider:
    vault:
      server: %s
      caBundle: %s
      path: secret
      version: v2
      auth:
        tokenSecretRef: {name: vault-token, key: token}
  credentialsDir: "{{dir}}/creds"
`, ns, store, prefix, v.HTTPSURL, base64.StdEncoding.EncodeToString(v.CA.CertPEM))
}

// vaultTokenFile writes token where remoteVaultConfig's store reads it.
func vaultTokenFile(token string) func(dir string) error {
	return func(dir string) error {
		tokenDir := filepath.Join(dir, "creds", "secrets", "vault-token")
		if err := os.MkdirAll(tokenDir, 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tokenDir, "token"), []byte(token), 0o600)
	}
}

// providerMetrics scrapes a provider process's /metrics.
func providerMetrics(t *testing.T, p *harness.Provider) *harness.Metrics {
	t.Helper()
	m, err := p.Metrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func createRegistration(t *testing.T, name string, p *harness.Provider) {
	t.Helper()
	reg := &configv1alpha1.ProviderRegistration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: configv1alpha1.ProviderRegistrationSpec{Provider: "vault", Endpoint: p.Address,
			ServerName: p.ServerName, CABundle: string(p.CAPEM)},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ProviderRegistrations().Create(ctxFor(t), reg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.VeilClient.ConfigV1alpha1().ProviderRegistrations().Delete(ctxFor(t), name, metav1.DeleteOptions{})
	})
}

func remoteStoreNaming(t *testing.T, ns, name, registration string) {
	t.Helper()
	s := &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{
			Remote: &configv1alpha1.RemoteProvider{Registration: registration}}},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Create(ctxFor(t), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A SecretStore names a ProviderRegistration; a veil-provider process,
// reached over mutual TLS, reads Vault with a token only it holds. The
// tenant reads the value through kube-apiserver's aggregation, and the
// token is nowhere in the cluster: not in the store, etcd or any log.
func TestRemoteProviderVault(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	token, err := v.Token(ctx, time.Hour, "reader")
	if err != nil {
		t.Fatal(err)
	}
	value := "remote-canary-" + unique("v")
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": value}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutKV(ctx, "secret", "other/db", map[string]any{"password": "not-served"}); err != nil {
		t.Fatal(err)
	}

	ns := vaultNamespace(t, "remote-")
	name := unique("vault-provider-")
	p, err := cluster.StartProvider(ctx, name, "vault", remoteVaultConfig(v, ns, "vault", "app/"), vaultTokenFile(token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	createRegistration(t, name, p)

	// The store the provider serves, one it does not, and one naming a
	// registration nobody created.
	remoteStoreNaming(t, ns, "vault", name)
	remoteStoreNaming(t, ns, "unlisted", name)
	remoteStoreNaming(t, ns, "nowhere", "no-such-registration")
	vaultData(t, ns, "app", "vault", dataRef("password", "app/db", "password"))
	vaultData(t, ns, "outside", "vault", dataRef("password", "other/db", "password"))
	vaultData(t, ns, "unlisted", "unlisted", dataRef("password", "app/db", "password"))
	vaultData(t, ns, "nowhere", "nowhere", dataRef("password", "app/db", "password"))

	tenant := unique("tenant-")
	for _, role := range []string{"admin", "veil:stores-admin", "veil:definitions-editor", "veil:values-reader"} {
		bind(t, ns, tenant, role)
	}
	tc := userClient(t, tenant)

	t.Run("the tenant reads the value through the provider process", func(t *testing.T) {
		var got string
		eventually(t, func() error {
			esv, err := tc.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), "app", metav1.GetOptions{})
			if err != nil {
				return err
			}
			got = string(esv.Data["password"])
			return nil
		})
		if got != value {
			t.Fatalf("read %d bytes that are not the value in Vault", len(got))
		}
	})

	t.Run("the provider refuses what its configuration does not list", func(t *testing.T) {
		for _, es := range []struct{ name, want string }{
			{"unlisted", "does not serve SecretStore " + ns + "/unlisted"},
			{"outside", "other/db"},
		} {
			_, err := readValue(t, ns, es.name)
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), es.want) {
				t.Errorf("ExternalSecret %s: %v, want Forbidden naming %q", es.name, err, es.want)
			}
		}
	})

	t.Run("a store naming an unknown registration says so", func(t *testing.T) {
		_, err := readValue(t, ns, "nowhere")
		if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `ProviderRegistration "no-such-registration", which does not exist`) {
			t.Errorf("read through a store naming no registration: %v", err)
		}
		// And the store says so itself, as the one that works does.
		for store, want := range map[string]string{"nowhere": configv1alpha1.ReasonRegistrationNotFound, "vault": configv1alpha1.ReasonRegistered} {
			eventually(t, func() error {
				st, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Get(ctxFor(t), store, metav1.GetOptions{})
				if err != nil {
					return err
				}
				c := apimeta.FindStatusCondition(st.Status.Conditions, configv1alpha1.ConditionProviderRegistered)
				if c == nil || c.Reason != want || c.ObservedGeneration != st.Generation {
					return fmt.Errorf("store %s has condition %+v, want reason %s", store, c, want)
				}
				return nil
			})
		}
	})

	t.Run("a tenant cannot create a ProviderRegistration", func(t *testing.T) {
		reg := &configv1alpha1.ProviderRegistration{
			ObjectMeta: metav1.ObjectMeta{Name: unique("tenant-reg-")},
			Spec: configv1alpha1.ProviderRegistrationSpec{Provider: "vault", Endpoint: "evil.example:443",
				ServerName: "evil.example", CABundle: string(p.CAPEM)},
		}
		_, err := tc.ConfigV1alpha1().ProviderRegistrations().Create(ctxFor(t), reg, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("tenant created a ProviderRegistration: %v, want Forbidden", err)
		}
	})

	t.Run("the schema refuses a registration that cannot work", func(t *testing.T) {
		for _, tc := range []struct {
			spec configv1alpha1.ProviderRegistrationSpec
			want string
		}{
			{configv1alpha1.ProviderRegistrationSpec{Provider: "vault", Endpoint: "https://p.example:8443", ServerName: "p.example", CABundle: string(p.CAPEM)}, "endpoint must be host:port"},
			{configv1alpha1.ProviderRegistrationSpec{Provider: "vault", Endpoint: "p.example:99999", ServerName: "p.example", CABundle: string(p.CAPEM)}, "between 1 and 65535"},
			{configv1alpha1.ProviderRegistrationSpec{Provider: "vault", Endpoint: "p.example:8443", ServerName: "*.example", CABundle: string(p.CAPEM)}, "serverName must be a DNS name"},
			{configv1alpha1.ProviderRegistrationSpec{Provider: "vault", Endpoint: "p.example:8443", ServerName: "p.example", CABundle: string(p.CAPEM) + "-----BEGIN PRIVATE KEY-----"}, "remove the private key"},
			{configv1alpha1.ProviderRegistrationSpec{Provider: "Vault Provider", Endpoint: "p.example:8443", ServerName: "p.example", CABundle: string(p.CAPEM)}, "spec.provider"},
		} {
			reg := &configv1alpha1.ProviderRegistration{ObjectMeta: metav1.ObjectMeta{Name: unique("bad-")}, Spec: tc.spec}
			_, err := cluster.VeilClient.ConfigV1alpha1().ProviderRegistrations().Create(ctxFor(t), reg, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%+v: %v, want Invalid saying %q", tc.spec, err, tc.want)
			}
		}
	})

	t.Run("the Vault token is nowhere in the cluster", func(t *testing.T) {
		st, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Get(ctxFor(t), "vault", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Spec.Provider.Vault != nil {
			t.Errorf("the remote store carries a Vault block")
		}
		for what, canary := range map[string]string{"Vault token": token, "value": value} {
			s, err := cluster.FindCanary(ctxFor(t), canary)
			if err != nil {
				t.Fatal(err)
			}
			if s.Total() != 0 {
				t.Errorf("the %s was found in the cluster: %s", what, s)
			}
		}
	})
	t.Run("a deleted registration serves nothing more", func(t *testing.T) {
		if err := cluster.VeilClient.ConfigV1alpha1().ProviderRegistrations().Delete(ctxFor(t), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() error {
			_, err := readValue(t, ns, "app")
			if apierrors.IsNotFound(err) && strings.Contains(err.Error(), "does not exist") {
				return nil
			}
			return fmt.Errorf("read after the registration was deleted: %v", err)
		})
	})
}

// A registration that changes is followed at once: the store's next read
// goes to the new endpoint, even for a value cached for an hour, because
// the registration is part of the store's cache identity. A registration
// naming another kind than the process serves reads as Invalid.
func TestRemoteRegistrationChange(t *testing.T) {
	ctx := ctxFor(t)
	ns := newNamespace(t, nil)
	start := func(value string) *harness.Provider {
		t.Helper()
		var config strings.Builder
		config.WriteString("stores:\n")
		// "mislabelled" is served too, so that only the kind is wrong.
		for _, store := range []string{"fake", "mislabelled"} {
			fmt.Fprintf(&config, `- kind: SecretStore
  namespace: %s
  name: %s
  keyPrefixes: ["app/"]
  provider:
    fake:
      data: [{key: app/db, value: %q}]
`, ns, store, value)
		}
		p, err := cluster.StartProvider(ctx, unique("fake-provider-"), "fake", config.String(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		return p
	}
	first, second := unique("first-"), unique("second-")
	a, b := start(first), start(second)

	name := unique("fake-")
	reg := &configv1alpha1.ProviderRegistration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       configv1alpha1.ProviderRegistrationSpec{Provider: "fake", Endpoint: a.Address, ServerName: a.ServerName, CABundle: string(a.CAPEM)},
	}
	regs := cluster.VeilClient.ConfigV1alpha1().ProviderRegistrations()
	if _, err := regs.Create(ctx, reg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = regs.Delete(ctxFor(t), name, metav1.DeleteOptions{}) })
	remoteStoreNaming(t, ns, "fake", name)
	// The default refresh interval (an hour): a second read is served from
	// the cache.
	createExternalSecret(t, ns, "app", storeRef("fake"), nil, dataRef("v", "app/db", ""))

	read := func() (string, error) {
		esv, err := readValue(t, ns, "app")
		if err != nil {
			return "", err
		}
		return string(esv.Data["v"]), nil
	}
	eventually(t, func() error {
		got, err := read()
		if err != nil || got != first {
			return fmt.Errorf("read %q, %v; want the first provider's value", got, err)
		}
		return nil
	})

	// A registration that says the process serves another kind is refused
	// at the handshake, before any read reaches it.
	wrong := unique("wrong-kind-")
	mislabelled := reg.DeepCopy()
	mislabelled.Name, mislabelled.Spec.Provider = wrong, "vault"
	if _, err := regs.Create(ctx, mislabelled, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = regs.Delete(ctxFor(t), wrong, metav1.DeleteOptions{}) })
	remoteStoreNaming(t, ns, "mislabelled", wrong)
	createExternalSecret(t, ns, "mislabelled", storeRef("mislabelled"), nil, dataRef("v", "app/db", ""))
	eventually(t, func() error {
		_, err := readValue(t, ns, "mislabelled")
		if apierrors.IsInvalid(err) && strings.Contains(err.Error(), `serves the "fake" provider`) {
			return nil
		}
		return fmt.Errorf("read through a registration of the wrong kind: %v", err)
	})

	cur, err := regs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Endpoint, cur.Spec.ServerName = b.Address, b.ServerName
	if _, err := regs.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		got, err := read()
		if err != nil || got != second {
			return fmt.Errorf("read %q, %v after the registration moved; want the second provider's value", got, err)
		}
		return nil
	})
}
