package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/veil-dev/veil/test/harness"
)

// startVaultDemo starts a local Vault server with demo data, configures its
// Kubernetes auth method against the cluster, and applies
// artifacts/examples/vault pointed at it. The returned function stops Vault.
func startVaultDemo(ctx context.Context, c *harness.Cluster) (stop func(), err error) {
	v, err := c.StartVault(ctx, "demo")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			v.Stop()
		}
	}()
	for _, w := range []struct {
		key  string
		data map[string]any
	}{
		{"demo/db", map[string]any{"username": "app", "password": "demo-password-v1-not-secret"}},
		{"demo/db", map[string]any{"username": "app", "password": "demo-password-v2-not-secret"}},
		{"demo/app-config", map[string]any{"log-level": "info", "feature-x": "true"}},
		{"demo/api/payments", map[string]any{"key": "demo-payments-key-not-secret"}},
		{"demo/api/search", map[string]any{"key": "demo-search-key-not-secret"}},
	} {
		if _, err := v.PutKV(ctx, "secret", w.key, w.data); err != nil {
			return nil, err
		}
	}
	if err := v.ConfigureKubernetesAuth(ctx, c, "kubernetes"); err != nil {
		return nil, err
	}
	if err := v.Policy(ctx, "demo-reader", `
path "secret/data/demo/*"     { capabilities = ["read"] }
path "secret/metadata/demo/*" { capabilities = ["read", "list"] }
`); err != nil {
		return nil, err
	}
	if _, err := v.Write(ctx, "auth/kubernetes/role/demo", map[string]any{
		"bound_service_account_names":      []string{"vault-reader"},
		"bound_service_account_namespaces": []string{"demo-vault"},
		"audience":                         "vault",
		"token_policies":                   []string{"demo-reader"},
		"token_ttl":                        "1h",
	}); err != nil {
		return nil, err
	}

	// The example names a placeholder server and a ConfigMap for Vault's
	// CA; here they are this Vault's.
	err = c.ApplyKustomization(ctx, filepath.Join(c.Root, "artifacts", "examples", "vault"), func(u *unstructured.Unstructured) (bool, error) {
		if u.GetKind() == "SecretStore" {
			return true, unstructured.SetNestedField(u.Object, v.HTTPSURL, "spec", "provider", "vault", "server")
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "vault-ca", Namespace: "demo-vault"}, Data: map[string]string{"ca.crt": string(v.CA.CertPEM)}}
	if _, err := c.KubeClient.CoreV1().ConfigMaps("demo-vault").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return nil, err
	}

	// The root token of this throwaway server goes to a file only its
	// owner can read, never to the terminal or a log.
	tokenFile := filepath.Join(v.Dir, "root-token")
	if err := os.WriteFile(tokenFile, []byte(v.Root.Token()), 0o600); err != nil {
		return nil, err
	}
	fmt.Printf(`
Vault demo (namespace demo-vault, Kubernetes auth, KV v2 at secret/demo/):

  kubectl get externalsecretvalues -n demo-vault
  kubectl get externalsecretvalue -n demo-vault db -o yaml
  kubectl get externalsecretvalue -n demo-vault app -o yaml      # dataFrom extract and find

  VAULT_ADDR=%s VAULT_CACERT=%s VAULT_TOKEN=$(cat %s) \
    %s kv put secret/demo/db username=app password=changed
  kubectl get externalsecretvalue -n demo-vault db -o jsonpath='{.data.password}' | base64 -d   # changed, within its refreshInterval (1m)

Vault's files and log: %s
`, v.HTTPSURL, v.CA.CertFile, tokenFile, v.Binary, v.Dir)
	return v.Stop, nil
}
