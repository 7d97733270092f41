package convert

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// vaultStoreWithAuth is ESO's documentation's Vault SecretStore with
// auth set to the flow-style YAML given.
func vaultStoreWithAuth(auth string) string {
	return `apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: vault-backend, namespace: example}
spec:
  provider:
    vault:
      server: "https://vault.acme.org"
      path: "secret"
      version: "v2"
      auth: ` + auth + "\n"
}

func newConverter(t *testing.T) *Converter {
	t.Helper()
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// convertOne converts the one object manifest holds.
func convertOne(t *testing.T, c *Converter, manifest string) (*unstructured.Unstructured, []Difference) {
	t.Helper()
	in, err := Read(strings.NewReader(manifest))
	if err != nil || len(in) != 1 {
		t.Fatalf("%d objects, %v", len(in), err)
	}
	return c.Convert(context.Background(), in[0])
}

// TestVaultUserPassSchema checks the CRD's bounds on auth.userPass: ESO's
// documentation example is taken with only apiVersion changed, and what
// Veil could not use is refused at admission.
func TestVaultUserPassSchema(t *testing.T) {
	c := newConverter(t)
	for _, tc := range []struct {
		name, auth string
		refused    string // the field refused; "" when the object is taken as it is
	}{
		// ESO's docs/snippets/vault-userpass-store.yaml.
		{"eso example", `{userPass: {path: "userpass", username: "username", secretRef: {name: "my-secret", key: "password"}}}`, ""},
		{"default path", `{userPass: {username: "a.b@example.com", secretRef: {name: "s", key: "password"}}}`, ""},
		{"two methods", `{userPass: {username: "u", secretRef: {name: "s", key: "p"}}, tokenSecretRef: {name: "s", key: "t"}}`, "spec.provider.vault.auth"},
		{"no username", `{userPass: {secretRef: {name: "s", key: "p"}}}`, "spec.provider.vault.auth.userPass.username"},
		{"no secretRef", `{userPass: {username: "u"}}`, "spec.provider.vault.auth.userPass.secretRef"},
		{"username with a path", `{userPass: {username: "../sys/u", secretRef: {name: "s", key: "p"}}}`, "spec.provider.vault.auth.userPass.username"},
		{"username too long", `{userPass: {username: "` + strings.Repeat("u", 257) + `", secretRef: {name: "s", key: "p"}}}`, "spec.provider.vault.auth.userPass.username"},
		{"path too long", `{userPass: {path: "` + strings.Repeat("p", 257) + `", username: "u", secretRef: {name: "s", key: "p"}}}`, "spec.provider.vault.auth.userPass.path"},
	} {
		out, diffs := convertOne(t, c, vaultStoreWithAuth(tc.auth))
		if tc.refused == "" {
			for _, d := range diffs {
				if d.Severity == Refused || d.Severity == Dropped {
					t.Errorf("%s: %v", tc.name, d)
				}
			}
		} else if !has(diffs, Refused, tc.refused, "") {
			t.Errorf("%s: want %s refused, got %v", tc.name, tc.refused, diffs)
		}
		if tc.name == "default path" {
			if p, _, _ := unstructured.NestedString(out.Object, "spec", "provider", "vault", "auth", "userPass", "path"); p != "userpass" {
				t.Errorf("default path: %q, want userpass", p)
			}
		}
	}
}
