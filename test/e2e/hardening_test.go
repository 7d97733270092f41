package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned"
)

// restartVeil runs veil-apiserver with exactly args (not the suite's
// veilArgs) for one test, and with the suite's flags again after it.
func restartVeil(t *testing.T, args ...string) {
	t.Helper()
	cluster.StopVeil()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := cluster.RestartVeil(ctx); err != nil {
			t.Errorf("restarting veil-apiserver with the suite's flags: %v", err)
		}
	})
	if err := cluster.StartVeil(ctxFor(t), args...); err != nil {
		t.Fatal(err)
	}
}

// TestEndpointsSafeByDefault runs veil-apiserver without
// --allowed-provider-endpoints: a SecretStore may not reach loopback or
// metadata addresses, also through a name that resolves to one, while a
// ClusterSecretStore may reach a loopback Vault but not metadata either.
func TestEndpointsSafeByDefault(t *testing.T) {
	restartVeil(t)
	ctx := ctxFor(t)
	v := startVault(t)
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "cluster-store-reads-it"}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	port := strings.TrimPrefix(v.HTTPSURL, "https://127.0.0.1:")
	for store, server := range map[string]string{
		"loopback": v.HTTPSURL,
		// Names are judged by what they resolve to, when dialed.
		"by-name":     "https://localhost:" + port,
		"metadata":    "https://169.254.169.254",
		"metadata-v6": "https://[fd00:ec2::254]",
	} {
		vaultTokenStore(t, v, ns, store, func(p *configv1alpha1.VaultProvider) { p.Server = server })
		vaultData(t, ns, store, store, dataRef("password", "app/db", "password"))
	}
	reached := func() int {
		n, _, err := v.Responses("secret/data/app/db")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := reached()
	for _, c := range []struct{ store, says string }{
		{"loopback", `"127.0.0.1" is 127.0.0.1, a loopback or private address, which a SecretStore may reach only when veil-apiserver's --allowed-provider-endpoints (not set) lists the host or the address`},
		{"by-name", `"localhost" is `},
		{"metadata", `"169.254.169.254" is 169.254.169.254, a link-local, metadata or reserved address, which no store may reach unless`},
		{"metadata-v6", "link-local, metadata or reserved address"},
	} {
		valueError(t, ns, c.store, apierrors.IsForbidden, c.says)
	}
	if n := reached() - before; n != 0 {
		t.Errorf("Vault answered %d reads for refused stores, want none", n)
	}

	// A cluster administrator's store may reach the loopback Vault, never
	// the metadata service.
	if err := v.Policy(ctx, "reader", vaultPolicy); err != nil {
		t.Fatal(err)
	}
	tok, err := v.Token(ctx, time.Hour, "reader")
	if err != nil {
		t.Fatal(err)
	}
	vaultSecret(t, ns, "cluster-token", map[string]string{"token": tok})
	clusterStore := func(server string) string {
		name := unique("endpoints-")
		css := &configv1alpha1.ClusterSecretStore{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: configv1alpha1.ClusterSecretStoreSpec{
				SecretStoreSpec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{
					Server: server, CABundle: v.CA.CertPEM,
					Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "cluster-token", Key: "token", Namespace: &ns}},
				}}},
				Conditions: []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{ns}}},
			},
		}
		if _, err := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Create(ctx, css, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Delete(context.Background(), name, metav1.DeleteOptions{})
		})
		createExternalSecret(t, ns, name, configv1alpha1.SecretStoreRef{Kind: configv1alpha1.ClusterSecretStoreKind, Name: name}, nil,
			dataRef("password", "app/db", "password"))
		return name
	}
	loopback, metadata := clusterStore("https://localhost:"+port), clusterStore("https://169.254.169.254")
	wantData(t, mustValue(t, ns, loopback), map[string]string{"password": "cluster-store-reads-it"})
	valueError(t, ns, metadata, apierrors.IsForbidden, "a link-local, metadata or reserved address")
}

// TestVerboseLogsCarryNoBodies runs both binaries at -v=10 --vmodule=*=10
// while veil-apiserver reads a credential Secret and veil-syncer reads a
// value and writes it into a Secret: neither the credential nor the value
// reaches their logs, and no request or response body does.
func TestVerboseLogsCarryNoBodies(t *testing.T) {
	verbose := []string{"-v=10", "--vmodule=*=10"}
	restartVeil(t, append(append([]string(nil), veilArgs...), verbose...)...)
	ctx := ctxFor(t)
	v := startVault(t)
	value := unique("verbose-value-canary-")
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": value}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "store", nil)
	credential, err := cluster.KubeClient.CoreV1().Secrets(ns).Get(ctx, "store-token", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := cluster.StartSyncer(ctx, unique("veil-syncer-verbose-"), append(append([]string(nil), syncerArgs...), verbose...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	waitLeader(t, s.Name)

	newTargetES(t, ns, "db", configv1alpha1.ExternalSecretTarget{}, dataRef("password", "app/db", "password"))
	waitReady(t, ns, "db", configv1alpha1.ReasonSynced)
	waitSecret(t, ns, "db", hasData(map[string]string{"password": value}))

	// veil-apiserver cannot have its verbosity raised at run time either.
	proxyCert, err := cluster.FrontProxyCertificate()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, cluster.VeilURL()+"/debug/flags/v", strings.NewReader("10"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Remote-User", "admin")
	req.Header.Set("X-Remote-Group", "system:masters")
	resp, err := cluster.VeilHTTPClient(&proxyCert).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("PUT /debug/flags/v as an admin: %s, want 403", resp.Status)
	}

	for _, canary := range []string{value, string(credential.Data["token"])} {
		seen, err := cluster.FindCanary(ctx, canary)
		if err != nil {
			t.Fatal(err)
		}
		if seen.Files[cluster.Veil.LogFile] != 0 || seen.Files[s.LogFile] != 0 {
			t.Errorf("a value or credential is in the logs at -v=10: %s", seen)
		}
	}
	// The logs are verbose (client-go logs the credential Secret's URL at
	// V(6)), and carry no body and no curl command.
	for _, log := range []string{cluster.Veil.LogFile, s.LogFile} {
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		for _, leak := range []string{"Response Body", "Request Body", "curlCommand"} {
			if strings.Contains(string(b), leak) {
				t.Errorf("%s has %q", log, leak)
			}
		}
		if log == cluster.Veil.LogFile && !strings.Contains(string(b), "/api/v1/namespaces/"+ns+"/secrets/store-token") {
			t.Errorf("%s does not show veil-apiserver reading the credential Secret: is it verbose at all?", log)
		}
	}
}

// TestDirectBearerTokens sends a ServiceAccount token that may read a
// value straight to veil-apiserver's port: refused (401) by default,
// accepted through kube-apiserver, and straight only with
// --allow-direct-bearer-tokens.
func TestDirectBearerTokens(t *testing.T) {
	ns := demo(t, unique("direct-bearer-"))
	ctx := ctxFor(t)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader", Namespace: ns}}
	if _, err := cluster.KubeClient.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bind(t, ns, "system:serviceaccount:"+ns+":reader", "veil:values-reader")
	exp := int64(600)
	tr, err := cluster.KubeClient.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "reader",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bearer := map[string]string{"Authorization": "Bearer " + tr.Status.Token}
	path := cluster.VeilURL() + "/apis/externalsecrets.veil.dev/v1alpha1/namespaces/" + ns + "/externalsecretvalues/db"
	direct := cluster.VeilHTTPClient(nil)

	cfg := rest.AnonymousClientConfig(cluster.Admin)
	cfg.BearerToken = tr.Status.Token
	throughKube := versioned.NewForConfigOrDie(cfg)
	eventually(t, func() error {
		_, err := throughKube.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctx, "db", metav1.GetOptions{})
		return err
	})
	if code, body := status(t, direct, path, bearer); code != http.StatusUnauthorized {
		t.Errorf("the token straight to veil-apiserver: %d, want 401\n%s", code, body)
	}

	restartVeil(t, append(append([]string(nil), veilArgs...), "--allow-direct-bearer-tokens")...)
	if code, body := status(t, direct, path, bearer); code != http.StatusOK || !strings.Contains(body, `"kind":"ExternalSecretValue"`) {
		t.Errorf("the token straight to veil-apiserver with --allow-direct-bearer-tokens: %d, want 200\n%s", code, body)
	}
}

type warningsSeen struct {
	mu    sync.Mutex
	texts []string
}

func (w *warningsSeen) HandleWarningHeader(_ int, _, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.texts = append(w.texts, text)
}

func (w *warningsSeen) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.texts = nil
}

func (w *warningsSeen) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.texts, "\n")
}

// TestOpenNamespaceSelector: a ClusterSecretStore whose namespaceSelector
// matches every namespace (here `{}`) says so in its status, and every
// read through it carries a warning; naming the namespaces clears both.
func TestOpenNamespaceSelector(t *testing.T) {
	ctx := ctxFor(t)
	ns := newNamespace(t, nil)
	name := unique("open-")
	css := &configv1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: configv1alpha1.ClusterSecretStoreSpec{
			SecretStoreSpec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{
				Data: []configv1alpha1.FakeProviderData{{Key: "shared/key", Value: "shared-value"}},
			}}},
			Conditions: []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: &metav1.LabelSelector{}}},
		},
	}
	stores := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores()
	if _, err := stores.Create(ctx, css, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stores.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	condition := func(status metav1.ConditionStatus, reason string) *configv1alpha1.ClusterSecretStore {
		t.Helper()
		var got *configv1alpha1.ClusterSecretStore
		eventually(t, func() error {
			var err error
			if got, err = stores.Get(ctx, name, metav1.GetOptions{}); err != nil {
				return err
			}
			c := apimeta.FindStatusCondition(got.Status.Conditions, configv1alpha1.ConditionMatchesAllNamespaces)
			if c == nil || c.Status != status || c.Reason != reason || c.ObservedGeneration != got.Generation {
				return fmt.Errorf("condition %+v, want %s %s for generation %d", c, status, reason, got.Generation)
			}
			return nil
		})
		return got
	}
	got := condition(metav1.ConditionTrue, configv1alpha1.ReasonOpenNamespaceSelector)
	if c := apimeta.FindStatusCondition(got.Status.Conditions, configv1alpha1.ConditionMatchesAllNamespaces); !strings.Contains(c.Message, "spec.conditions[0].namespaceSelector matches every namespace") {
		t.Errorf("message %q", c.Message)
	}
	written := false
	for _, f := range got.ManagedFields {
		written = written || (f.Manager == "veil-apiserver" && f.Subresource == "status" && f.Operation == metav1.ManagedFieldsOperationApply)
	}
	if !written {
		t.Errorf("the condition should be applied by veil-apiserver on the status subresource: %+v", got.ManagedFields)
	}

	createExternalSecret(t, ns, "shared", configv1alpha1.SecretStoreRef{Kind: configv1alpha1.ClusterSecretStoreKind, Name: name}, nil,
		dataRef("value", "shared/key", ""))
	seen := &warningsSeen{}
	cfg := rest.CopyConfig(cluster.Admin)
	cfg.WarningHandler = seen
	admin := versioned.NewForConfigOrDie(cfg)
	eventually(t, func() error {
		_, err := admin.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctx, "shared", metav1.GetOptions{})
		return err
	})
	if !strings.Contains(seen.all(), "ClusterSecretStore "+name+": spec.conditions[0].namespaceSelector matches every namespace") {
		t.Errorf("warnings %q, want one about the open selector", seen.all())
	}

	got.Spec.Conditions = []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: &metav1.LabelSelector{
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{ns}}},
	}}}
	if _, err := stores.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	condition(metav1.ConditionFalse, configv1alpha1.ReasonNamespacesChosen)
	seen.reset()
	if _, err := admin.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctx, "shared", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := seen.all(); strings.Contains(w, "namespaceSelector") {
		t.Errorf("warnings %q after the namespaces were named", w)
	}
}
