package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

// sharedVaultStore creates a ClusterSecretStore on v whose token may read
// and write secret/, held in a namespace of its own, with conditions.
func sharedVaultStore(t *testing.T, v *harness.Vault, conditions ...configv1alpha1.ClusterSecretStoreCondition) configv1alpha1.SecretStoreRef {
	t.Helper()
	ctx := ctxFor(t)
	if err := v.Policy(ctx, "writer", vaultWriterPolicy); err != nil {
		t.Fatal(err)
	}
	tok, err := v.Token(ctx, time.Hour, "writer")
	if err != nil {
		t.Fatal(err)
	}
	platform := newNamespace(t, nil)
	vaultSecret(t, platform, "vault-token", map[string]string{"token": tok})
	css := &configv1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: unique("css-shared-")},
		Spec: configv1alpha1.ClusterSecretStoreSpec{
			SecretStoreSpec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{
				Server: v.HTTPSURL, CABundle: v.CA.CertPEM,
				Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "vault-token", Key: "token", Namespace: &platform}},
			}}},
			Conditions: conditions,
		},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Create(ctx, css, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Delete(context.Background(), css.Name, metav1.DeleteOptions{})
	})
	return configv1alpha1.SecretStoreRef{Kind: configv1alpha1.ClusterSecretStoreKind, Name: css.Name}
}

// vaultTraffic sums veil-apiserver's Vault requests of the given
// operations since the baseline.
func vaultTraffic(since *harness.Baseline, ops ...string) float64 {
	var n float64
	for _, op := range ops {
		n += vaultCalls(since, op)
	}
	return n
}

// TestKeyScope: two tenants share a ClusterSecretStore that confines each
// to "teams/{namespace}/". Tenant A reads and pushes its own keys; tenant
// B's key is refused with a 403 naming A's prefix through data, extract,
// find and push, however the key is spelled, before any request reaches
// Vault, and B's value stays as it was.
func TestKeyScope(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	teamA, teamB := newNamespace(t, nil), newNamespace(t, nil)
	ref := sharedVaultStore(t, v, configv1alpha1.ClusterSecretStoreCondition{Namespaces: []string{teamA, teamB}, RemoteKeyPrefix: "teams/{namespace}/"})
	prefixA, prefixB := "teams/"+teamA+"/", "teams/"+teamB+"/"
	canaryA, canaryB := unique("scope-a-"), unique("scope-b-")
	for key, value := range map[string]string{prefixA + "db": canaryA, prefixB + "db": canaryB} {
		if _, err := v.PutKV(ctx, "secret", key, map[string]any{"password": value}); err != nil {
			t.Fatal(err)
		}
	}

	createExternalSecret(t, teamA, "own", ref, nil, dataRef("password", prefixA+"db", "password"))
	wantData(t, mustValue(t, teamA, "own"), map[string]string{"password": canaryA})
	// A find without a path looks under the prefix only.
	found := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "found", Namespace: teamA},
		Spec: configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(ref), DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
			{Find: &configv1alpha1.ExternalSecretFind{Name: &configv1alpha1.FindName{RegExp: "db$"}}},
		}},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(teamA).Create(ctx, found, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := mustValue(t, teamA, "found"); len(got.Data) != 1 || !strings.Contains(string(got.Data["teams_"+teamA+"_db"]), canaryA) {
		t.Errorf("find without a path found %d keys, want only %sdb", len(got.Data), prefixA)
	}

	audited, err := v.Audit()
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]configv1alpha1.ExternalSecretSpec{
		"get":     {Data: []configv1alpha1.ExternalSecretData{dataRef("password", prefixB+"db", "password")}},
		"dot-dot": {Data: []configv1alpha1.ExternalSecretData{dataRef("password", prefixA+"../"+teamB+"/db", "password")}},
		"encoded": {Data: []configv1alpha1.ExternalSecretData{dataRef("password", prefixA+"%2e%2e/"+teamB+"/db", "password")}},
		"slashes": {Data: []configv1alpha1.ExternalSecretData{dataRef("password", "/"+prefixB+"db", "password")}},
		"case":    {Data: []configv1alpha1.ExternalSecretData{dataRef("password", strings.ToUpper(prefixA)+"db", "password")}},
		"extract": {DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: prefixB + "db"}}}},
		"find": {DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{Find: &configv1alpha1.ExternalSecretFind{
			Path: ptrTo("teams/"), Name: &configv1alpha1.FindName{RegExp: ".*"}}}}},
	}
	for name, spec := range bad {
		spec.SecretStoreRef = new(ref)
		es := &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: teamA}, Spec: spec}
		if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(teamA).Create(ctx, es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name := range bad {
		err := valueError(t, teamA, name, apierrors.IsForbidden, fmt.Sprintf("remote keys under %q", prefixA))
		if strings.Contains(err.Error(), canaryB) {
			t.Errorf("%s: the refusal carries tenant B's value", name)
		}
	}
	// This test's own Vault audits every request: while the reads were
	// refused, the only key Veil asked Vault about is A's own, whose
	// metadata change detection follows because A read it (which is why
	// Veil's global request metrics cannot tell here).
	after, err := v.Audit()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range after[len(audited):] {
		if p := e.Request.Path; e.Type == "request" && strings.HasPrefix(p, "secret/") && p != "secret/metadata/"+prefixA+"db" {
			t.Errorf("a refused read reached Vault: %s %s", e.Request.Operation, p)
		}
	}

	// Pushes: A's own prefix works; B's key is refused, as a push and as a
	// delete, before anything is written.
	createPushSecret(t, teamA, "own", "unused", "", []configv1alpha1.SecretStoreRef{ref}, match("k", prefixA+"pushed", "value"))
	if sp, err := secretPush(t, cluster.VeilClient, teamA, "own", "", map[string]string{"k": "mine"}); err != nil || results(sp) != prefixA+"pushed/value=Pushed" {
		t.Fatalf("push under the prefix: %s, %v", results(sp), err)
	}
	createPushSecret(t, teamA, "overwrite", "unused", configv1alpha1.PushSecretUpdatePolicyReplace, []configv1alpha1.SecretStoreRef{ref}, match("k", prefixB+"db", "password"))
	writes := veilMetricsSince(t)
	for _, action := range []esv1alpha1.SecretPushAction{esv1alpha1.SecretPushActionPush, esv1alpha1.SecretPushActionDelete} {
		data := map[string]string{"k": "overwritten"}
		if action == esv1alpha1.SecretPushActionDelete {
			data = nil
		}
		eventually(t, func() error {
			_, err := secretPushOnce(t, cluster.VeilClient, teamA, "overwrite", action, data)
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), fmt.Sprintf("remote keys under %q", prefixA)) {
				return fmt.Errorf("%s of tenant B's key: %v, want a 403 naming %q", action, err, prefixA)
			}
			return nil
		})
	}
	if d := vaultTraffic(writes, "kv-put", "kv-metadata-put", "kv-delete"); d != 0 {
		t.Errorf("refused pushes made %v writes to Vault", d)
	}
	got, err := vaultKV(t, v, prefixB+"db")
	if err != nil || got["password"] != canaryB {
		t.Errorf("tenant B's key after A's refused pushes: %v", err)
	}
	// kube-apiserver refuses prefixes that could overlap or escape.
	for prefix, says := range map[string]string{
		"teams/{namespace}":    "should match",
		"teams/{namespace}-x/": `{namespace} in remoteKeyPrefix must be followed by "/"`,
		"teams/../":            `no segment of remoteKeyPrefix may end with "."`,
		"teams//":              "should match",
		"teams/%2e%2e/":        "should match",
		"arn:aws:x/":           "should match",
	} {
		css := &configv1alpha1.ClusterSecretStore{
			ObjectMeta: metav1.ObjectMeta{Name: unique("css-bad-prefix-")},
			Spec: configv1alpha1.ClusterSecretStoreSpec{
				SecretStoreSpec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{}}},
				Conditions:      []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{teamA}, RemoteKeyPrefix: prefix}},
			},
		}
		_, err := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Create(ctx, css, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), says) {
			t.Errorf("remoteKeyPrefix %q: %v, want Invalid saying %q", prefix, err, says)
		}
		if err == nil {
			_ = cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Delete(context.Background(), css.Name, metav1.DeleteOptions{})
		}
	}
}
