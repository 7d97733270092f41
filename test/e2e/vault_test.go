package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

// The Vault tests run a real Vault server each (hack/install-vault.sh),
// whose files live under the cluster's directory but outside logs/, which
// FindCanary searches.

// startVault starts a Vault server for one test.
func startVault(t *testing.T) *harness.Vault {
	t.Helper()
	v, err := cluster.StartVault(ctxFor(t), unique("vault-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	return v
}

// vaultPolicy is what the tests' Vault identities may do.
const vaultPolicy = `
path "secret/data/*"     { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read", "list"] }
path "kv/*"              { capabilities = ["read", "list"] }
path "secret/data/denied/*" { capabilities = ["deny"] }
`

// vaultNamespace creates a namespace named prefix plus a random suffix.
func vaultNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique(prefix)}}
	if _, err := cluster.KubeClient.CoreV1().Namespaces().Create(ctxFor(t), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.KubeClient.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

func vaultSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
	if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Create(ctxFor(t), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func vaultStore(t *testing.T, ns, name string, spec configv1alpha1.VaultProvider) {
	t.Helper()
	s := &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &spec}},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Create(ctxFor(t), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// vaultTokenStore creates a store on v's TLS listener (trusting its CA)
// that authenticates with a token of vaultPolicy held in a Secret.
func vaultTokenStore(t *testing.T, v *harness.Vault, ns, name string, edit func(*configv1alpha1.VaultProvider)) {
	t.Helper()
	ctx := ctxFor(t)
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	tok, err := v.Token(ctx, time.Hour, "reader")
	if err != nil {
		t.Fatal(err)
	}
	vaultSecret(t, ns, name+"-token", map[string]string{"token": tok})
	spec := configv1alpha1.VaultProvider{
		Server: v.HTTPSURL, CABundle: v.CA.CertPEM,
		Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: name + "-token", Key: "token"}},
	}
	if edit != nil {
		edit(&spec)
	}
	vaultStore(t, ns, name, spec)
}

// vaultExternalSecret creates an ExternalSecret that asks for values read
// now (refreshInterval 1ns, with the suite's --min-refresh-interval=0), so
// every read goes to Vault. (refreshInterval 0 means "read once".)
func vaultExternalSecret(t *testing.T, ns, name, store string, spec configv1alpha1.ExternalSecretSpec) {
	t.Helper()
	spec.SecretStoreRef = new(storeRef(store))
	spec.RefreshInterval = &metav1.Duration{Duration: time.Nanosecond}
	es := &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func vaultData(t *testing.T, ns, name, store string, data ...configv1alpha1.ExternalSecretData) {
	t.Helper()
	vaultExternalSecret(t, ns, name, store, configv1alpha1.ExternalSecretSpec{Data: data})
}

func readValue(t *testing.T, ns, name string) (*esv1alpha1.ExternalSecretValue, error) {
	t.Helper()
	return cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), name, metav1.GetOptions{})
}

// mustValue reads an ExternalSecretValue through the aggregator, waiting
// for veil-apiserver's informers to see what the test just created.
func mustValue(t *testing.T, ns, name string) *esv1alpha1.ExternalSecretValue {
	t.Helper()
	var v *esv1alpha1.ExternalSecretValue
	eventually(t, func() (err error) {
		v, err = readValue(t, ns, name)
		return err
	})
	return v
}

// valueError waits until reading ns/name fails as is says (the objects it
// needs may take a moment to reach veil-apiserver's informers) and returns
// the error.
func valueError(t *testing.T, ns, name string, is func(error) bool, says string) error {
	t.Helper()
	var got error
	eventually(t, func() error {
		_, got = readValue(t, ns, name)
		if got == nil || !is(got) || !strings.Contains(got.Error(), says) {
			return fmt.Errorf("got %v, want an error saying %q", got, says)
		}
		return nil
	})
	t.Logf("%s/%s: %v", ns, name, got)
	return got
}

func wantData(t *testing.T, v *esv1alpha1.ExternalSecretValue, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for k, b := range v.Data {
		got[k] = string(b)
	}
	if len(got) != len(want) {
		t.Errorf("%s has keys %v, want %v", v.Name, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: data[%s] = %q, want %q", v.Name, k, got[k], w)
		}
	}
}

// vaultCalls is veil-apiserver's count of requests to Vault since the
// baseline, by operation ("" for all).
func vaultCalls(since *harness.Baseline, operation string) float64 {
	labels := map[string]string{"provider": "vault"}
	if operation != "" {
		labels["operation"] = operation
	}
	return since.Delta("veil_provider_calls_total", labels)
}

func vaultLogins(t *testing.T, v *harness.Vault, mount string) int {
	t.Helper()
	n, err := v.Logins(mount)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestVaultKVv2(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	old, current := unique("old-"), unique("current-")
	for _, w := range []struct {
		key  string
		data map[string]any
	}{
		{"app/db", map[string]any{"password": old}},
		{"app/db", map[string]any{"password": current, "host": "db.internal", "port": 5432, "conn": map[string]any{"user": "app"}}},
		{"app/api", map[string]any{"token": "api-token"}},
		{"app/cache", map[string]any{"url": "redis://cache"}},
		{"other/x", map[string]any{"x": "1"}},
		{"denied/y", map[string]any{"y": "1"}},
	} {
		if _, err := v.PutKV(ctx, "secret", w.key, w.data); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"app/db", "other/x"} {
		if err := v.TagKV(ctx, "secret", k, map[string]string{"team": "a"}); err != nil {
			t.Fatal(err)
		}
	}
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "vault", nil)

	versioned := func(secretKey, key, property, version string) configv1alpha1.ExternalSecretData {
		d := dataRef(secretKey, key, property)
		d.RemoteRef.Version = version
		return d
	}
	vaultData(t, ns, "properties", "vault",
		dataRef("password", "app/db", "password"), dataRef("host", "app/db", "host"),
		dataRef("port", "app/db", "port"), dataRef("user", "app/db", "conn.user"), dataRef("whole", "app/api", ""))
	vaultData(t, ns, "versions", "vault", versioned("old", "app/db", "password", "1"), versioned("current", "app/db", "password", "2"))
	vaultExternalSecret(t, ns, "extract", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
		{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: "app/db"}},
	}})
	vaultExternalSecret(t, ns, "find-name", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
		{Find: &configv1alpha1.ExternalSecretFind{Path: ptrTo("app"), Name: &configv1alpha1.FindName{RegExp: "^app/(api|cache)$"}}},
	}})
	vaultExternalSecret(t, ns, "find-tags", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
		{Find: &configv1alpha1.ExternalSecretFind{Tags: map[string]string{"team": "a"}}},
	}})
	vaultData(t, ns, "missing", "vault", dataRef("k", "app/nope", ""))
	vaultData(t, ns, "missing-version", "vault", versioned("k", "app/db", "", "7"))
	vaultData(t, ns, "denied", "vault", dataRef("k", "denied/y", ""))

	t.Run("properties", func(t *testing.T) {
		wantData(t, mustValue(t, ns, "properties"), map[string]string{
			"password": current, "host": "db.internal", "port": "5432", "user": "app", "whole": `{"token":"api-token"}`,
		})
		// The same through kubectl, as a user would.
		out := kubectl(t, "", "get", "externalsecretvalue", "properties", "-n", ns, "-o", "jsonpath={.data.password}")
		if b, err := base64.StdEncoding.DecodeString(out); err != nil || string(b) != current {
			t.Errorf("kubectl jsonpath: %q", out)
		}
	})
	t.Run("versions", func(t *testing.T) {
		val := mustValue(t, ns, "versions")
		wantData(t, val, map[string]string{"old": old, "current": current})
		var versions []string
		for _, r := range val.Source.Remote {
			versions = append(versions, r.Key+"@"+r.Version)
		}
		slices.Sort(versions)
		if !slices.Equal(versions, []string{"app/db@1", "app/db@2"}) {
			t.Errorf("source.remote = %v, want both versions of app/db", versions)
		}
		props := mustValue(t, ns, "properties")
		if i := slices.IndexFunc(props.Source.Remote, func(r esv1alpha1.RemoteValue) bool { return r.Key == "app/db" }); i < 0 || props.Source.Remote[i].Version != "2" {
			t.Errorf("the latest read names no version 2: %v", props.Source.Remote)
		}
	})
	t.Run("extract", func(t *testing.T) {
		wantData(t, mustValue(t, ns, "extract"), map[string]string{"password": current, "host": "db.internal", "port": "5432", "conn": `{"user":"app"}`})
	})
	t.Run("find by name", func(t *testing.T) {
		wantData(t, mustValue(t, ns, "find-name"), map[string]string{"app_api": `{"token":"api-token"}`, "app_cache": `{"url":"redis://cache"}`})
	})
	t.Run("find by tags", func(t *testing.T) {
		val := mustValue(t, ns, "find-tags")
		if len(val.Data) != 2 || !strings.Contains(string(val.Data["app_db"]), current) || string(val.Data["other_x"]) != `{"x":"1"}` {
			t.Errorf("find by tags: keys %d, other_x %s", len(val.Data), val.Data["other_x"])
		}
	})
	t.Run("errors", func(t *testing.T) {
		valueError(t, ns, "missing", apierrors.IsNotFound, `ExternalSecret `+ns+`/missing: key "app/nope" does not exist in SecretStore `+ns+`/vault`)
		valueError(t, ns, "missing-version", apierrors.IsNotFound, `version 7 of key "app/db" does not exist`)
		err := valueError(t, ns, "denied", apierrors.IsForbidden, `lacks access; its policies must grant "read" on "secret/data/denied/y"`)
		if strings.Contains(err.Error(), current) || strings.Contains(err.Error(), "hvs.") {
			t.Errorf("the error carries a secret: %v", err)
		}
	})
}

func ptrTo[T any](v T) *T { return &v }

func TestVaultKVv1(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	if err := v.EnableKV(ctx, "kv", 1); err != nil {
		t.Fatal(err)
	}
	for key, data := range map[string]map[string]any{
		"team/db":  {"user": "app", "password": "kv1-password"},
		"team/api": {"token": "kv1-token"},
	} {
		if err := v.PutKVv1(ctx, "kv", key, data); err != nil {
			t.Fatal(err)
		}
	}
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "vault", func(s *configv1alpha1.VaultProvider) {
		s.Path, s.Version = ptrTo("kv"), configv1alpha1.VaultKVv1
	})
	vaultData(t, ns, "property", "vault", dataRef("password", "team/db", "password"))
	vaultExternalSecret(t, ns, "extract", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
		{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: "team/db"}},
	}})
	vaultExternalSecret(t, ns, "find", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
		{Find: &configv1alpha1.ExternalSecretFind{Name: &configv1alpha1.FindName{RegExp: "api"}}},
	}})
	versioned := dataRef("k", "team/db", "")
	versioned.RemoteRef.Version = "1"
	vaultData(t, ns, "versioned", "vault", versioned)

	wantData(t, mustValue(t, ns, "property"), map[string]string{"password": "kv1-password"})
	wantData(t, mustValue(t, ns, "extract"), map[string]string{"user": "app", "password": "kv1-password"})
	wantData(t, mustValue(t, ns, "find"), map[string]string{"team_api": `{"token":"kv1-token"}`})
	valueError(t, ns, "versioned", apierrors.IsInvalid, "KV v1 mount, which has no versions")
}

// TestVaultKubernetesAuth: Vault's Kubernetes auth method, configured
// against this cluster's kube-apiserver, checks the ServiceAccount tokens
// Veil requests with a TokenReview. A store may only request tokens for
// ServiceAccounts of its own namespace, and Veil refuses one that names
// another namespace's before anything reaches Vault.
func TestVaultKubernetesAuth(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	teamA, teamB := vaultNamespace(t, "team-a-"), vaultNamespace(t, "team-b-")
	for _, ns := range []string{teamA, teamB} {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "vault-reader", Namespace: ns}}
		if _, err := cluster.KubeClient.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.ConfigureKubernetesAuth(ctx, cluster, "kubernetes"); err != nil {
		t.Fatal(err)
	}
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Write(ctx, "auth/kubernetes/role/team-a", map[string]any{
		"bound_service_account_names":      []string{"vault-reader"},
		"bound_service_account_namespaces": []string{teamA},
		"audience":                         "vault",
		"token_policies":                   []string{"reader"},
		"token_ttl":                        "1h",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutKV(ctx, "secret", "team-a/db", map[string]any{"password": "team-a-password"}); err != nil {
		t.Fatal(err)
	}
	kubeStore := func(ns, name, server string, sa configv1alpha1.ServiceAccountSelector) {
		vaultStore(t, ns, name, configv1alpha1.VaultProvider{Server: server, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
			Kubernetes: &configv1alpha1.VaultKubernetesAuth{Path: "kubernetes", Role: "team-a", ServiceAccountRef: &sa},
		}})
	}

	kubeStore(teamA, "vault", v.HTTPSURL, configv1alpha1.ServiceAccountSelector{Name: "vault-reader"})
	vaultData(t, teamA, "db", "vault", dataRef("password", "team-a/db", "password"))
	wantData(t, mustValue(t, teamA, "db"), map[string]string{"password": "team-a-password"})
	if n := vaultLogins(t, v, "kubernetes"); n != 1 {
		t.Fatalf("%d Kubernetes logins, want 1", n)
	}

	// ESO's own example names both a ServiceAccount and a Secret: as in
	// ESO, the ServiceAccount's token is used (the Secret does not exist).
	// With neither, ESO would log in as itself; Veil refuses, saying what
	// to set, and Vault is asked nothing.
	both := configv1alpha1.ServiceAccountSelector{Name: "vault-reader"}
	vaultStore(t, teamA, "both", configv1alpha1.VaultProvider{Server: v.HTTPSURL, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
		Kubernetes: &configv1alpha1.VaultKubernetesAuth{Path: "kubernetes", Role: "team-a", ServiceAccountRef: &both,
			SecretRef: &configv1alpha1.SecretKeySelector{Name: "absent", Key: "vault"}},
	}})
	vaultData(t, teamA, "both", "both", dataRef("password", "team-a/db", "password"))
	wantData(t, mustValue(t, teamA, "both"), map[string]string{"password": "team-a-password"})
	// Each refused store reaches Vault through a proxy of its own: what
	// it counts is that store's, not change detection's for the others.
	neitherServer, neitherConns := countingProxy(t, v.HTTPSURL)
	vaultStore(t, teamA, "neither", configv1alpha1.VaultProvider{Server: neitherServer, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
		Kubernetes: &configv1alpha1.VaultKubernetesAuth{Path: "kubernetes", Role: "team-a"},
	}})
	vaultData(t, teamA, "neither", "neither", dataRef("password", "team-a/db", "password"))
	valueError(t, teamA, "neither", apierrors.IsInvalid, `names neither serviceAccountRef nor secretRef: External Secrets Operator would log in with its own ServiceAccount token, but Veil never lends its own identity to a store; set serviceAccountRef`)
	if n := neitherConns(); n != 0 {
		t.Errorf("veil-apiserver opened %v connections to Vault for a store with neither token source, want none", n)
	}

	// team-b names team-a's ServiceAccount: Veil refuses, and neither
	// kube-apiserver's TokenRequest nor Vault is asked anything.
	attempts, _, err := v.Responses("auth/kubernetes/login")
	if err != nil {
		t.Fatal(err)
	}
	borrowedServer, borrowedConns := countingProxy(t, v.HTTPSURL)
	kubeStore(teamB, "borrowed", borrowedServer, configv1alpha1.ServiceAccountSelector{Name: "vault-reader", Namespace: &teamA})
	vaultData(t, teamB, "db", "borrowed", dataRef("password", "team-a/db", "password"))
	valueError(t, teamB, "db", apierrors.IsForbidden, `ServiceAccount vault-reader is in namespace "`+teamA+`", but a SecretStore may only use credentials of its own namespace "`+teamB+`"`)
	if after, _, err := v.Responses("auth/kubernetes/login"); err != nil || after != attempts {
		t.Errorf("Vault saw %d login attempts for the refused store, want none (%v)", after-attempts, err)
	}
	if n := borrowedConns(); n != 0 {
		t.Errorf("veil-apiserver opened %v connections to Vault for the refused store, want none", n)
	}

	// team-b's own ServiceAccount is a real one, but Vault's role is not
	// bound to it: Vault refuses it after its TokenReview.
	kubeStore(teamB, "own", v.HTTPSURL, configv1alpha1.ServiceAccountSelector{Name: "vault-reader"})
	vaultData(t, teamB, "own", "own", dataRef("password", "team-a/db", "password"))
	valueError(t, teamB, "own", apierrors.IsForbidden, `Vault refused to log in as role "team-a" of the kubernetes auth method at auth/kubernetes`)
}

// TestVaultJWTAuth: Vault's JWT auth method trusts the key that signs this
// cluster's ServiceAccount tokens; Veil requests one with audience "vault".
func TestVaultJWTAuth(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "vault-reader", Namespace: ns}}
	if _, err := cluster.KubeClient.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	signingKey, err := os.ReadFile(filepath.Join(cluster.Dir, "pki", "sa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.EnableAuth(ctx, "jwt", "jwt"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Write(ctx, "auth/jwt/config", map[string]any{"jwt_validation_pubkeys": []string{string(signingKey)}, "bound_issuer": "https://kubernetes.default.svc"}); err != nil {
		t.Fatal(err)
	}
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Write(ctx, "auth/jwt/role/app", map[string]any{
		"role_type": "jwt", "user_claim": "sub", "bound_audiences": []string{"vault"},
		"bound_subject": "system:serviceaccount:" + ns + ":vault-reader", "token_policies": []string{"reader"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "jwt-password"}); err != nil {
		t.Fatal(err)
	}
	vaultStore(t, ns, "vault", configv1alpha1.VaultProvider{Server: v.HTTPSURL, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
		JWT: &configv1alpha1.VaultJWTAuth{Path: "jwt", Role: "app", KubernetesServiceAccountToken: &configv1alpha1.VaultKubernetesServiceAccountTokenAuth{
			ServiceAccountRef: configv1alpha1.ServiceAccountSelector{Name: "vault-reader"},
		}},
	}})
	vaultData(t, ns, "db", "vault", dataRef("password", "app/db", "password"))
	wantData(t, mustValue(t, ns, "db"), map[string]string{"password": "jwt-password"})
	if n := vaultLogins(t, v, "jwt"); n != 1 {
		t.Errorf("%d JWT logins, want 1", n)
	}
}

func TestVaultAppRoleAndToken(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := v.AppRole(ctx, "approle", "app", map[string]any{"token_policies": "reader", "token_ttl": "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "approle-password"}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultSecret(t, ns, "approle", map[string]string{"role-id": roleID, "secret-id": secretID, "wrong-secret-id": secretID + "x"})
	appRoleStore := func(name string, r configv1alpha1.VaultAppRole) {
		vaultStore(t, ns, name, configv1alpha1.VaultProvider{Server: v.HTTPSURL, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{AppRole: &r}})
		vaultData(t, ns, name, name, dataRef("password", "app/db", "password"))
	}
	appRoleStore("inline-role", configv1alpha1.VaultAppRole{RoleID: roleID, SecretRef: configv1alpha1.SecretKeySelector{Name: "approle", Key: "secret-id"}})
	appRoleStore("role-ref", configv1alpha1.VaultAppRole{
		RoleRef:   &configv1alpha1.SecretKeySelector{Name: "approle", Key: "role-id"},
		SecretRef: configv1alpha1.SecretKeySelector{Name: "approle", Key: "secret-id"},
	})
	appRoleStore("wrong", configv1alpha1.VaultAppRole{RoleID: roleID, SecretRef: configv1alpha1.SecretKeySelector{Name: "approle", Key: "wrong-secret-id"}})
	// ESO's auth.namespace beside the KV namespace: kube-apiserver admits
	// both and the read goes through (Vault without Enterprise ignores the
	// header; vault.TestAuthNamespace checks which request carries which).
	authNS, kvNS := "team-auth", "team-kv"
	// With ESO's headers and forwardInconsistent too.
	vaultStore(t, ns, "namespaces", configv1alpha1.VaultProvider{Server: v.HTTPSURL, CABundle: v.CA.CertPEM, Namespace: &kvNS,
		ForwardInconsistent: true, Headers: map[string]string{"X-Team": "web"},
		Auth: configv1alpha1.VaultAuth{Namespace: &authNS, AppRole: &configv1alpha1.VaultAppRole{RoleID: roleID, SecretRef: configv1alpha1.SecretKeySelector{Name: "approle", Key: "secret-id"}}}})
	// A header that is Vault's own would change whom Veil acts as.
	_, err = cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Create(ctx, &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-header"},
		Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{
			Server: v.HTTPSURL, Headers: map[string]string{"X-Vault-Token": "header-canary"},
			Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "approle", Key: "secret-id"}}}}},
	}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "none starting X-Vault-") {
		t.Errorf("a store setting X-Vault-Token: %v, want refused by the CRD", err)
	}
	vaultData(t, ns, "namespaces", "namespaces", dataRef("password", "app/db", "password"))
	vaultTokenStore(t, v, ns, "token", nil)
	vaultData(t, ns, "token", "token", dataRef("password", "app/db", "password"))

	for _, name := range []string{"inline-role", "role-ref", "namespaces", "token"} {
		wantData(t, mustValue(t, ns, name), map[string]string{"password": "approle-password"})
	}
	err = valueError(t, ns, "wrong", apierrors.IsForbidden, "Vault refused to log in as the AppRole at auth/approle")
	if strings.Contains(err.Error(), secretID) {
		t.Errorf("the error carries the secret id: %v", err)
	}
}

func TestVaultTLS(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "tls-password"}); err != nil {
		t.Fatal(err)
	}
	wrongCA, err := harness.NewCA(t.TempDir(), "wrong-ca")
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "vault-ca", Namespace: ns}, Data: map[string]string{"ca.crt": string(v.CA.CertPEM)}}
	if _, err := cluster.KubeClient.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*configv1alpha1.VaultProvider){
		"right-ca": nil,
		"ca-provider": func(s *configv1alpha1.VaultProvider) {
			s.CABundle, s.CAProvider = nil, &configv1alpha1.CAProvider{Type: "ConfigMap", Name: "vault-ca", Key: "ca.crt"}
		},
		"wrong-ca": func(s *configv1alpha1.VaultProvider) { s.CABundle = wrongCA.CertPEM },
		"no-ca":    func(s *configv1alpha1.VaultProvider) { s.CABundle = nil },
	} {
		vaultTokenStore(t, v, ns, name, edit)
		vaultData(t, ns, name, name, dataRef("password", "app/db", "password"))
	}
	wantData(t, mustValue(t, ns, "right-ca"), map[string]string{"password": "tls-password"})
	wantData(t, mustValue(t, ns, "ca-provider"), map[string]string{"password": "tls-password"})
	for _, name := range []string{"wrong-ca", "no-ca"} {
		valueError(t, ns, name, apierrors.IsServiceUnavailable, "cannot verify the TLS certificate of Vault at "+v.HTTPSURL+"; set spec.provider.vault.caBundle or caProvider to the CA that signed it")
	}

	// Mutual TLS: the client certificate of spec.tls logs in with Vault's
	// cert auth method.
	clientCA, err := harness.NewCA(t.TempDir(), "client-ca")
	if err != nil {
		t.Fatal(err)
	}
	client, err := clientCA.Issue(t.TempDir(), "veil", "veil", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.EnableAuth(ctx, "cert", "cert"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Write(ctx, "auth/cert/certs/veil", map[string]any{"certificate": string(clientCA.CertPEM), "token_policies": "reader"}); err != nil {
		t.Fatal(err)
	}
	vaultSecret(t, ns, "client-cert", map[string]string{"tls.crt": string(client.CertPEM), "tls.key": string(client.KeyPEM)})
	vaultStore(t, ns, "mtls", configv1alpha1.VaultProvider{
		Server: v.HTTPSURL, CABundle: v.CA.CertPEM,
		TLS:  &configv1alpha1.VaultClientTLS{CertSecretRef: configv1alpha1.SecretKeySelector{Name: "client-cert", Key: "tls.crt"}, KeySecretRef: configv1alpha1.SecretKeySelector{Name: "client-cert", Key: "tls.key"}},
		Auth: configv1alpha1.VaultAuth{Cert: &configv1alpha1.VaultCertAuth{Path: "cert", Name: "veil"}},
	})
	vaultData(t, ns, "mtls", "mtls", dataRef("password", "app/db", "password"))
	wantData(t, mustValue(t, ns, "mtls"), map[string]string{"password": "tls-password"})
}

// TestVaultUserPass: ESO's userPass store logs in with the password of a
// Secret of the store's namespace; a wrong password is 403 without it.
func TestVaultUserPass(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	if err := v.EnableAuth(ctx, "userpass", "userpass"); err != nil {
		t.Fatal(err)
	}
	canary := "userpass-canary-password"
	if _, err := v.Write(ctx, "auth/userpass/users/app", map[string]any{"password": canary, "token_policies": "reader", "token_ttl": "1h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "userpass-value"}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultSecret(t, ns, "userpass", map[string]string{"password": canary, "wrong": "wrong-" + canary})
	for name, key := range map[string]string{"userpass": "password", "wrong": "wrong"} {
		// No path: the CRD's default, "userpass".
		vaultStore(t, ns, name, configv1alpha1.VaultProvider{Server: v.HTTPSURL, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
			UserPass: &configv1alpha1.VaultUserPassAuth{Username: "app", SecretRef: configv1alpha1.SecretKeySelector{Name: "userpass", Key: key}},
		}})
		vaultData(t, ns, name, name, dataRef("password", "app/db", "password"))
	}
	wantData(t, mustValue(t, ns, "userpass"), map[string]string{"password": "userpass-value"})
	err := valueError(t, ns, "wrong", apierrors.IsForbidden, `Vault refused to log in as user "app" of the userpass auth method at auth/userpass`)
	if strings.Contains(err.Error(), canary) {
		t.Errorf("the error carries the password: %v", err)
	}
}

// TestVaultUnavailable stops Vault under a store in use: reads fail with
// 503 and say why, and recover once Vault is back, with the same
// veil-apiserver and the same Vault token.
func TestVaultUnavailable(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := v.AppRole(ctx, "approle", "app", map[string]any{"token_policies": "reader", "token_ttl": "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "before"}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultSecret(t, ns, "approle", map[string]string{"secret-id": secretID})
	vaultStore(t, ns, "vault", configv1alpha1.VaultProvider{Server: v.HTTPSURL, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
		AppRole: &configv1alpha1.VaultAppRole{RoleID: roleID, SecretRef: configv1alpha1.SecretKeySelector{Name: "approle", Key: "secret-id"}},
	}})
	vaultData(t, ns, "db", "vault", dataRef("password", "app/db", "password"))
	wantData(t, mustValue(t, ns, "db"), map[string]string{"password": "before"})
	veil := cluster.Veil

	v.Stop()
	_, err = readValue(t, ns, "db")
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "cannot reach Vault at "+v.HTTPSURL+` to read key "app/db"; check that Vault is running`) {
		t.Fatalf("with Vault stopped: %v, want 503 saying Vault cannot be reached", err)
	}
	t.Logf("with Vault stopped: %v", err)

	if err := v.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "after"}); err != nil {
		t.Fatal(err)
	}
	wantData(t, mustValue(t, ns, "db"), map[string]string{"password": "after"})
	if cluster.Veil != veil {
		t.Error("veil-apiserver was restarted")
	}
	if n := vaultLogins(t, v, "approle"); n != 1 {
		t.Errorf("%d logins, want 1: the token outlives Vault's restart", n)
	}
}

// TestCanaryVault: a value that exists only in Vault, read several times
// through the aggregator, is found nowhere: not in etcd, not in any log,
// not in either audit log.
func TestCanaryVault(t *testing.T) {
	canary := unique("veil-canary-vault-")
	v := startVault(t)
	if _, err := v.PutKV(ctxFor(t), "secret", "app/secret", map[string]any{"value": canary}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "vault", nil)
	vaultData(t, ns, "app", "vault", dataRef("secret", "app/secret", "value"))

	readCanary(t, ns, "app", "secret", canary)
	assertOnlyInProvider(t, canary)
}

// vaultAppRoleStore creates a namespace with a SecretStore "vault" that logs
// in to v with AppRole as a reader, and returns the namespace.
func vaultAppRoleStore(t *testing.T, v *harness.Vault) string {
	t.Helper()
	ctx := ctxFor(t)
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	roleID, secretID, err := v.AppRole(ctx, "approle", "app", map[string]any{"token_policies": "reader", "token_ttl": "1h"})
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultSecret(t, ns, "approle", map[string]string{"secret-id": secretID})
	vaultStore(t, ns, "vault", configv1alpha1.VaultProvider{Server: v.HTTPSURL, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
		AppRole: &configv1alpha1.VaultAppRole{RoleID: roleID, SecretRef: configv1alpha1.SecretKeySelector{Name: "approle", Key: "secret-id"}},
	}})
	return ns
}

// TestVaultOneLoginForManyReads: 100 reads across 10 ExternalSecrets of
// one store are 100 Vault reads and one login; deleting the store revokes
// the token.
func TestVaultOneLoginForManyReads(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	ns := vaultAppRoleStore(t, v)
	for i := range 10 {
		if _, err := v.PutKV(ctx, "secret", fmt.Sprintf("app/k%d", i), map[string]any{"v": fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
		vaultData(t, ns, fmt.Sprintf("es%d", i), "vault", dataRef("v", fmt.Sprintf("app/k%d", i), "v"))
	}
	// Every ExternalSecret is read once, so veil-apiserver has seen them all
	// and built the store's client, before counting.
	for i := range 10 {
		mustValue(t, ns, fmt.Sprintf("es%d", i))
	}
	calls := veilMetricsSince(t)
	if vaultLogins(t, v, "approle") != 1 {
		t.Fatal("more than one login before the reads")
	}

	for round := range 10 {
		for i := range 10 {
			val, err := readValue(t, ns, fmt.Sprintf("es%d", i))
			if err != nil {
				t.Fatalf("round %d, es%d: %v", round, i, err)
			}
			if string(val.Data["v"]) != fmt.Sprint(i) {
				t.Fatalf("es%d: %q", i, val.Data["v"])
			}
		}
	}
	if n := vaultCalls(calls, "login"); n != 0 {
		t.Errorf("veil-apiserver logged in %v more times for 100 reads, want 0", n)
	}
	if n := vaultCalls(calls, "kv-get"); n != 100 {
		t.Errorf("%v Vault reads for 100 reads at refreshInterval 1ns, want 100", n)
	}
	if n := vaultLogins(t, v, "approle"); n != 1 {
		t.Errorf("Vault's audit log shows %d logins, want 1", n)
	}

	// Deleting the store closes its client, after a grace period for reads
	// in flight, and the client revokes its token.
	if err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Delete(ctx, "vault", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, failed, err := v.Responses("auth/token/revoke-self")
		if err != nil {
			t.Fatal(err)
		}
		if n-failed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token was not revoked 3 minutes after the store was deleted (%d revocations, %d failed)", n, failed)
		}
		time.Sleep(time.Second)
	}
}

// TestVaultTokensRevokedAtShutdown: veil-apiserver revokes the Vault tokens
// it holds when it is told to stop (SIGTERM), before it exits, so a
// stopped replica leaves no live token behind.
func TestVaultTokensRevokedAtShutdown(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	ns := vaultAppRoleStore(t, v)
	if _, err := v.PutKV(ctx, "secret", "app/k", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	vaultData(t, ns, "es", "vault", dataRef("v", "app/k", "v"))
	mustValue(t, ns, "es")
	if n := vaultLogins(t, v, "approle"); n != 1 {
		t.Fatalf("Vault's audit log shows %d logins after one read, want 1", n)
	}
	if n, _, err := v.Responses("auth/token/revoke-self"); err != nil || n != 0 {
		t.Fatalf("%d revocations before the shutdown (%v), want 0", n, err)
	}

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := cluster.RestartVeil(ctx); err != nil {
			t.Errorf("restarting veil-apiserver: %v", err)
		}
	})
	// StopVeil returns once the process has exited: whatever it revoked,
	// it revoked before then.
	cluster.StopVeil()
	n, failed, err := v.Responses("auth/token/revoke-self")
	if err != nil {
		t.Fatal(err)
	}
	if n-failed != 1 {
		t.Errorf("%d revocations (%d failed) by the time veil-apiserver exited, want 1", n, failed)
	}
}

// TestVaultPlaintextNeedsTheFlag runs veil-apiserver without
// --allow-plaintext-providers: a store with an http:// server is refused
// before any connection, and says which flag would allow it.
func TestVaultPlaintextNeedsTheFlag(t *testing.T) {
	v := startVault(t)
	if _, err := v.PutKV(ctxFor(t), "secret", "app/db", map[string]any{"password": "plain"}); err != nil {
		t.Fatal(err)
	}
	// The store reaches Vault through a proxy of its own, so the count
	// below is this store's, whatever other stores' change detection does.
	server, conns := countingProxy(t, v.HTTPURL)
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "plain", func(s *configv1alpha1.VaultProvider) { s.Server, s.CABundle = server, nil })
	vaultData(t, ns, "db", "plain", dataRef("password", "app/db", "password"))
	wantData(t, mustValue(t, ns, "db"), map[string]string{"password": "plain"})
	if conns() == 0 {
		t.Fatal("the store read its value without a connection through its proxy; the count below would prove nothing")
	}

	var args []string
	for _, a := range veilArgs {
		if a != "--allow-plaintext-providers" {
			args = append(args, a)
		}
	}
	if len(args) == len(veilArgs) {
		t.Fatal("the suite's veilArgs no longer allow plaintext providers; this test must turn the flag off")
	}
	cluster.StopVeil()
	t.Cleanup(func() {
		cluster.StopVeil()
		if err := cluster.StartVeil(context.Background(), veilArgs...); err != nil {
			t.Errorf("restoring veil-apiserver: %v", err)
		}
	})
	if err := cluster.StartVeil(ctxFor(t), args...); err != nil {
		t.Fatal(err)
	}
	// The stopped server's connections are gone; any new one is the
	// restarted server's.
	before := conns()
	valueError(t, ns, "db", apierrors.IsForbidden, "uses the plaintext endpoint "+server+"; use https://, or start veil-apiserver with --allow-plaintext-providers")
	if n := conns() - before; n != 0 {
		t.Errorf("veil-apiserver opened %d connections to Vault for a refused plaintext store, want none", n)
	}
}

// TestVaultEndpointNotAllowed: a store whose server is outside
// --allowed-provider-endpoints is refused before any connection. Its
// server, 127.0.0.2, is a reachable proxy to the real Vault, so a
// connection would be seen.
func TestVaultEndpointNotAllowed(t *testing.T) {
	v := startVault(t)
	server, conns := countingProxyOn(t, "127.0.0.2", v.HTTPSURL)
	ns := newNamespace(t, nil)
	vaultSecret(t, ns, "token", map[string]string{"token": "not-used"})
	vaultStore(t, ns, "elsewhere", configv1alpha1.VaultProvider{Server: server, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
		TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "token", Key: "token"},
	}})
	vaultData(t, ns, "db", "elsewhere", dataRef("password", "app/db", "password"))
	valueError(t, ns, "db", apierrors.IsForbidden, `uses endpoint "127.0.0.2", which veil-apiserver's --allowed-provider-endpoints (127.0.0.1,localhost) does not allow`)
	if n := conns(); n != 0 {
		t.Errorf("veil-apiserver opened %d connections to a store's server outside the allowlist, want none", n)
	}
}

// credentialNotLogged: a credential a store's Secret holds is in no log
// file of the cluster (component logs, audit logs) nor veil-apiserver's
// /metrics. (It is in etcd, in the Secret.)
func credentialNotLogged(t *testing.T, value string) {
	t.Helper()
	s, err := cluster.FindCanary(ctxFor(t), value)
	if err != nil {
		t.Fatal(err)
	}
	for file, n := range s.Files {
		if n != 0 {
			t.Errorf("a store's credential appears %d times in %s", n, file)
		}
	}
	m, err := cluster.VeilMetrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	notInMetrics(t, m, value)
}

// TestVaultLdapAuth: ESO's ldap store logs in through Vault's LDAP auth
// method, which binds to a real OpenLDAP server (slapd) as the user, with
// the password of a Secret of the store's namespace; a wrong password is
// 403 without it, and the password is in no log.
func TestVaultLdapAuth(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	// slapd's files and log are kept out of the cluster's logs/.
	l, err := harness.StartLDAP(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	canary := unique("ldap-canary-password-")
	if err := l.AddUser(ctx, "app", canary); err != nil {
		t.Fatal(err)
	}
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	if err := v.EnableAuth(ctx, "ldap", "ldap"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Write(ctx, "auth/ldap/config", map[string]any{
		"url": l.URL, "userdn": l.UsersDN, "userattr": "uid", "discoverdn": false, "token_policies": "reader", "token_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "ldap-value"}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultSecret(t, ns, "my-secret", map[string]string{"ldap-password": canary, "wrong": "wrong-" + canary})
	for name, key := range map[string]string{"ldap": "ldap-password", "wrong": "wrong"} {
		// No path: the CRD's default, "ldap".
		vaultStore(t, ns, name, configv1alpha1.VaultProvider{Server: v.HTTPSURL, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
			Ldap: &configv1alpha1.VaultLdapAuth{Username: "app", SecretRef: configv1alpha1.SecretKeySelector{Name: "my-secret", Key: key}},
		}})
		vaultData(t, ns, name, name, dataRef("password", "app/db", "password"))
	}
	wantData(t, mustValue(t, ns, "ldap"), map[string]string{"password": "ldap-value"})
	if all, failed, err := v.Responses("auth/ldap/login/app"); err != nil || all-failed != 1 {
		t.Errorf("%d LDAP logins (%v), want 1", all-failed, err)
	}
	err = valueError(t, ns, "wrong", apierrors.IsForbidden, `Vault refused to log in as user "app" of the ldap auth method at auth/ldap`)
	if strings.Contains(err.Error(), canary) {
		t.Errorf("the error carries the password: %v", err)
	}
	credentialNotLogged(t, canary)
}

// TestVaultIamAuth: ESO's iam stores log in through Vault's AWS auth
// method, whose STS is moto (checking signatures): with an access key of
// the store's namespace, and with a role assumed with it. Another IAM
// user's key is refused. ESO's form without credentials (its pod's own
// identity) applies, but every read is 422 saying what to set, and
// neither Vault nor STS is asked anything.
func TestVaultIamAuth(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	m, err := harness.StartMoto(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	allow := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`
	reader, err := m.CreateUser(ctx, "reader", allow)
	if err != nil {
		t.Fatal(err)
	}
	other, err := m.CreateUser(ctx, "other", allow)
	if err != nil {
		t.Fatal(err)
	}
	roleARN, err := m.CreateRole(ctx, "vault-login", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/reader"},"Action":"sts:AssumeRole"}]}`, allow)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RequireSignatures(ctx); err != nil {
		t.Fatal(err)
	}
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	if err := v.EnableAuth(ctx, "aws", "aws"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Write(ctx, "auth/aws/config/client", map[string]any{
		"sts_endpoint": m.URL, "sts_region": m.Region, "iam_server_id_header_value": "vault.veil.test",
	}); err != nil {
		t.Fatal(err)
	}
	for role, principal := range map[string]string{"vault-role-for-aws-iam-auth": "arn:aws:iam::123456789012:user/reader", "assumed": roleARN} {
		if _, err := v.Write(ctx, "auth/aws/role/"+role, map[string]any{
			"auth_type": "iam", "bound_iam_principal_arn": principal, "resolve_aws_unique_ids": false, "token_policies": "reader", "token_ttl": "1h",
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "iam-value"}); err != nil {
		t.Fatal(err)
	}

	ns := newNamespace(t, nil)
	vaultSecret(t, ns, "vault-iam-creds-secret", map[string]string{"access-key": reader.ID, "secret-access-key": reader.Secret})
	vaultSecret(t, ns, "other-creds", map[string]string{"access-key": other.ID, "secret-access-key": other.Secret})
	keys := func(secret string) *configv1alpha1.AWSAuthSecretRef {
		return &configv1alpha1.AWSAuthSecretRef{
			AccessKeyID:     configv1alpha1.SecretKeySelector{Name: secret, Key: "access-key"},
			SecretAccessKey: configv1alpha1.SecretKeySelector{Name: secret, Key: "secret-access-key"},
		}
	}
	stores := map[string]configv1alpha1.VaultIamAuth{
		// ESO's vault-iam-store-static-creds.yaml, on moto.
		"keys": {Region: "us-east-1", Role: "vault-role-for-aws-iam-auth", VaultAWSIAMServerID: "vault.veil.test", SecretRef: keys("vault-iam-creds-secret")},
		"role": {Role: "assumed", AWSIAMRole: roleARN, STSEndpoint: m.URL, VaultAWSIAMServerID: "vault.veil.test", SecretRef: keys("vault-iam-creds-secret")},
		// Another user, who is not the role's principal.
		"other": {Role: "vault-role-for-aws-iam-auth", VaultAWSIAMServerID: "vault.veil.test", SecretRef: keys("other-creds")},
	}
	for name, iam := range stores {
		vaultStore(t, ns, name, configv1alpha1.VaultProvider{Server: v.HTTPSURL, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{Iam: &iam}})
		vaultData(t, ns, name, name, dataRef("password", "app/db", "password"))
	}
	wantData(t, mustValue(t, ns, "keys"), map[string]string{"password": "iam-value"})
	wantData(t, mustValue(t, ns, "role"), map[string]string{"password": "iam-value"})
	err = valueError(t, ns, "other", apierrors.IsForbidden, `Vault refused to log in as role "vault-role-for-aws-iam-auth" of the aws auth method at auth/aws`)
	if !strings.Contains(err.Error(), "user/other") || strings.Contains(err.Error(), other.Secret) {
		t.Errorf("the error should name the refused principal, and never the secret key: %v", err)
	}

	// ESO's vault-iam-store-controller-pod-identity.yaml.
	// Its own proxies to Vault and to STS: what they count is this
	// store's alone.
	podServer, podVaultConns := countingProxy(t, v.HTTPSURL)
	podSTS, podSTSConns := countingProxy(t, m.URL)
	vaultStore(t, ns, "pod-identity", configv1alpha1.VaultProvider{Server: podServer, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
		Iam: &configv1alpha1.VaultIamAuth{Path: "aws", Region: "us-east-1", Role: "vault-role-for-aws-iam-auth", VaultAWSIAMServerID: "vault.veil.test", STSEndpoint: podSTS},
	}})
	vaultData(t, ns, "pod-identity", "pod-identity", dataRef("password", "app/db", "password"))
	valueError(t, ns, "pod-identity", apierrors.IsInvalid, "names neither secretRef nor jwt: External Secrets Operator would sign with its own pod's AWS identity, but Veil never lends its own identity to a store; set secretRef")
	if n := podVaultConns() + podSTSConns(); n != 0 {
		t.Errorf("veil-apiserver opened %v connections to Vault or STS for a store without credentials, want none", n)
	}

	// ESO's jwt form, with role: Veil requests a token of the store's
	// ServiceAccount from kube-apiserver and exchanges it for the role at
	// moto's STS (which accepts any token: this checks Veil's side).
	if err := m.AcceptAnyCredentials(ctx); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "my-serviceaccount", Namespace: ns}}
	if _, err := cluster.KubeClient.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vaultStore(t, ns, "web", configv1alpha1.VaultProvider{Server: v.HTTPSURL, CABundle: v.CA.CertPEM, Auth: configv1alpha1.VaultAuth{
		Iam: &configv1alpha1.VaultIamAuth{Role: "assumed", AWSIAMRole: roleARN, STSEndpoint: m.URL, VaultAWSIAMServerID: "vault.veil.test",
			JWTAuth: &configv1alpha1.AWSJWTAuth{ServiceAccountRef: configv1alpha1.ServiceAccountSelector{Name: "my-serviceaccount"}}},
	}})
	vaultData(t, ns, "web", "web", dataRef("password", "app/db", "password"))
	wantData(t, mustValue(t, ns, "web"), map[string]string{"password": "iam-value"})

	for _, s := range []string{reader.Secret, other.Secret} {
		credentialNotLogged(t, s)
	}
}
