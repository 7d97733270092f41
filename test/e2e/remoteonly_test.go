package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

const remoteOnlyMessage = "this veil-apiserver serves only out-of-process providers (--in-process-providers=false): name a ProviderRegistration in spec.provider.remote.registration"

// TestRemoteOnly runs a control plane of its own with Veil installed as
// artifacts/providers/remote-only does: no veil-apiserver:provider-
// credentials ClusterRole or binding, and --in-process-providers=false.
// A store naming a ProviderRegistration serves values through kube-
// apiserver's aggregation; stores with a provider in process (fake, and
// Vault with a ServiceAccount token, a CA ConfigMap or a token Secret) are
// refused as Invalid with what to change, and their condition says so;
// the Vault address is never connected to, and veil-apiserver never asks
// kube-apiserver for a Secret, a ConfigMap or a token (its audit log); and
// a SubjectAccessReview shows its ServiceAccount may do none of these.
func TestRemoteOnly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rc, err := harness.Start(ctx, harness.Options{Progress: os.Stderr, Keep: *keep, VeilArgs: withoutFeed(veilArgs), RemoteOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			rc.DumpLogs(os.Stderr, 40)
		}
	})
	kube, veil := rc.KubeClient, rc.VeilClient.ConfigV1alpha1()

	ns := unique("remote-only-")
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// What an in-process Vault store would use, all present and readable
	// by an identity with the rules: were veil-apiserver to try, it could.
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vault-token"},
		StringData: map[string]string{"token": unique("token-")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "vault-ca"},
		Data: map[string]string{"ca.crt": "not read"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "vault-reader"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The Vault the in-process stores name: any connection is counted.
	var vaultConns atomic.Int64
	vault := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	vault.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			vaultConns.Add(1)
		}
	}
	vault.StartTLS()
	t.Cleanup(vault.Close)

	// The store served out of process.
	value := unique("remote-")
	p, err := rc.StartProvider(ctx, unique("fake-provider-"), "fake", fmt.Sprintf(`stores:
- kind: SecretStore
  namespace: %s
  name: remote
  keyPrefixes: ["app/"]
  provider:
    fake:
      data: [{key: app/db, value: %q}]
`, ns, value), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	reg := unique("fake-")
	if _, err := veil.ProviderRegistrations().Create(ctx, &configv1alpha1.ProviderRegistration{
		ObjectMeta: metav1.ObjectMeta{Name: reg},
		Spec:       configv1alpha1.ProviderRegistrationSpec{Provider: "fake", Endpoint: p.Address, ServerName: p.ServerName, CABundle: string(p.CAPEM)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	path := "secret"
	stores := map[string]configv1alpha1.SecretStoreProvider{
		"remote": {Remote: &configv1alpha1.RemoteProvider{Registration: reg}},
		"fake":   {Fake: &configv1alpha1.FakeProvider{Data: []configv1alpha1.FakeProviderData{{Key: "app/db", Value: "in process"}}}},
		"vault-sa": {Vault: &configv1alpha1.VaultProvider{Server: vault.URL, Path: &path, Version: configv1alpha1.VaultKVv2,
			CAProvider: &configv1alpha1.CAProvider{Type: "ConfigMap", Name: "vault-ca", Key: "ca.crt"},
			Auth: configv1alpha1.VaultAuth{Kubernetes: &configv1alpha1.VaultKubernetesAuth{Role: "app",
				ServiceAccountRef: &configv1alpha1.ServiceAccountSelector{Name: "vault-reader", Audiences: []string{"vault"}}}}}},
		"vault-token": {Vault: &configv1alpha1.VaultProvider{Server: vault.URL, Path: &path, Version: configv1alpha1.VaultKVv2,
			Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "vault-token", Key: "token"}}}},
	}
	for name, provider := range stores {
		if _, err := veil.SecretStores(ns).Create(ctx, &configv1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: configv1alpha1.SecretStoreSpec{Provider: provider}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := veil.ExternalSecrets(ns).Create(ctx, &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef(name)), Data: []configv1alpha1.ExternalSecretData{dataRef("v", "app/db", "")}}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	values := rc.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns)

	t.Run("ARegisteredStoreServesValues", func(t *testing.T) {
		eventually(t, func() error {
			esv, err := values.Get(ctx, "remote", metav1.GetOptions{})
			if err != nil || string(esv.Data["v"]) != value {
				return fmt.Errorf("read through the registration: %v, %v", esv, err)
			}
			return nil
		})
	})

	t.Run("InProcessStoresAreRefused", func(t *testing.T) {
		for _, name := range []string{"fake", "vault-sa", "vault-token"} {
			// Through the aggregator, a list too, and again: every time
			// refused, and never a client built that a retry would use.
			for range 2 {
				_, err := values.Get(ctx, name, metav1.GetOptions{})
				if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), remoteOnlyMessage) {
					t.Errorf("read through in-process store %s: %v; want 422 Invalid saying %q", name, err, remoteOnlyMessage)
				}
			}
		}
		list, err := values.List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, esv := range list.Items {
				if esv.Name != "remote" && len(esv.Data) > 0 {
					t.Errorf("list served %s's values", esv.Name)
				}
			}
		}
	})

	t.Run("TheirConditionSaysWhatToChange", func(t *testing.T) {
		eventually(t, func() error {
			for _, name := range []string{"fake", "vault-sa", "vault-token", "remote"} {
				s, err := veil.SecretStores(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				c := apimeta.FindStatusCondition(s.Status.Conditions, configv1alpha1.ConditionProviderRegistered)
				if name == "remote" {
					if c == nil || c.Status != metav1.ConditionTrue {
						return fmt.Errorf("store %s: condition %+v, want True", name, c)
					}
					continue
				}
				if c == nil || c.Status != metav1.ConditionFalse || c.Reason != configv1alpha1.ReasonInProcessProvidersDisabled || !strings.Contains(c.Message, remoteOnlyMessage) {
					return fmt.Errorf("store %s: condition %+v, want False %s", name, c, configv1alpha1.ReasonInProcessProvidersDisabled)
				}
			}
			return nil
		})
	})

	t.Run("NoProviderCallNoCredentialRequest", func(t *testing.T) {
		if n := vaultConns.Load(); n != 0 {
			t.Errorf("veil-apiserver connected %d times to the Vault of in-process stores", n)
		}
		m, err := rc.VeilMetrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := m.Sum("veil_provider_calls_total", nil); n != 0 {
			t.Errorf("veil-apiserver made %v provider calls in process", n)
		}
		requests, all := veilCredentialRequests(t, rc)
		if all == 0 {
			t.Fatal("kube-apiserver's audit log has no request of veil-apiserver's ServiceAccount: the check below proves nothing")
		}
		if len(requests) > 0 {
			t.Errorf("veil-apiserver asked kube-apiserver for credentials: %v", requests)
		}
	})

	t.Run("ItsServiceAccountMayNotReadCredentials", func(t *testing.T) {
		for _, c := range []struct {
			cluster *harness.Cluster
			want    bool
		}{{rc, false}, {cluster, true}} { // the shared cluster: installed with the rules
			for _, attrs := range []authorizationv1.ResourceAttributes{
				{Namespace: ns, Verb: "get", Resource: "secrets", Name: "vault-token"},
				{Namespace: ns, Verb: "get", Resource: "configmaps", Name: "vault-ca"},
				{Namespace: ns, Verb: "create", Resource: "serviceaccounts", Subresource: "token", Name: "vault-reader"},
				{Namespace: harness.VeilNamespace, Verb: "get", Resource: "secrets"},
			} {
				if got := veilMay(t, c.cluster, attrs); got != c.want {
					t.Errorf("remote only %v: veil-apiserver may %s %s/%s %s/%s: %v, want %v", c.cluster == rc, attrs.Verb, attrs.Resource, attrs.Subresource, attrs.Namespace, attrs.Name, got, c.want)
				}
			}
		}
		// What it needs it still has.
		if !veilMay(t, rc, authorizationv1.ResourceAttributes{Verb: "list", Group: "config.veil.dev", Resource: "providerregistrations"}) {
			t.Error("remote only: veil-apiserver may not list ProviderRegistrations")
		}
	})
}

// veilMay asks kube-apiserver whether veil-apiserver's ServiceAccount may
// do what attrs say.
func veilMay(t *testing.T, c *harness.Cluster, attrs authorizationv1.ResourceAttributes) bool {
	t.Helper()
	sar, err := c.KubeClient.AuthorizationV1().SubjectAccessReviews().Create(ctxFor(t), &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:" + harness.VeilNamespace + ":" + harness.VeilServiceAccount,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + harness.VeilNamespace, "system:authenticated"},
			ResourceAttributes: &attrs,
		}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

// veilCredentialRequests lists veil-apiserver's requests for Secrets,
// ConfigMaps and ServiceAccount tokens in c's kube-apiserver audit log
// (refused ones too), and counts all its requests.
func veilCredentialRequests(t *testing.T, c *harness.Cluster) (requests []string, all int) {
	t.Helper()
	f, err := os.Open(c.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	user := "system:serviceaccount:" + harness.VeilNamespace + ":" + harness.VeilServiceAccount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			Verb      string                    `json:"verb"`
			User      struct{ Username string } `json:"user"`
			ObjectRef *struct {
				Resource, Subresource, Namespace, Name string
			} `json:"objectRef"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.User.Username != user || e.ObjectRef == nil {
			continue
		}
		all++
		r := e.ObjectRef
		if r.Resource == "secrets" || r.Resource == "configmaps" && r.Namespace != "kube-system" || r.Resource == "serviceaccounts" && r.Subresource == "token" {
			requests = append(requests, fmt.Sprintf("%s %s/%s %s/%s", e.Verb, r.Resource, r.Subresource, r.Namespace, r.Name))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return requests, all
}
