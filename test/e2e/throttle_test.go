package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

// TestNamespaceOverItsShareIsThrottledAlone: on a shared ClusterSecretStore,
// a namespace that reads faster than its share of the store's provider
// budget gets 429 with Retry-After, through the aggregator, while another
// namespace reading the same store is served; the throttling is counted.
func TestNamespaceOverItsShareIsThrottledAlone(t *testing.T) {
	// A store budget of 4 calls, refilled at one call every ten seconds:
	// each namespace's share is 2, and nothing refills during the test.
	restartVeil(t, append(append([]string(nil), veilArgs...),
		"--provider-qps=0.1", "--provider-burst=4", "--provider-max-in-flight=0", "--provider-namespace-share=0.5")...)
	noisy, quiet := newNamespace(t, nil), newNamespace(t, nil)
	css := newClusterStore(t, []string{noisy, quiet}, configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	for _, ns := range []string{noisy, quiet} {
		es := externalSecret(ns, "es", clusterStoreRef(css), nil, dataRef("k", "k", ""))
		es.Spec.RefreshInterval = &metav1.Duration{Duration: time.Nanosecond} // every read asks the provider
		if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	throttles := veilMetricsSince(t)

	// The noisy namespace spends its share, then is refused at once.
	var refused *http.Response
	served := 0
	for deadline := time.Now().Add(time.Minute); refused == nil; {
		resp, body := rawValue(t, noisy, "es")
		switch {
		case resp.StatusCode == http.StatusOK:
			served++
		case resp.StatusCode == http.StatusTooManyRequests:
			refused = resp
			if want := "namespace " + noisy + " is using more than its share"; !strings.Contains(body, want) {
				t.Errorf("429 body %q does not say %q", body, want)
			}
		case time.Now().After(deadline):
			t.Fatalf("the noisy namespace's reads never reached the store: %d %s", resp.StatusCode, body)
		default:
			// 403 until veil-apiserver has seen the store's conditions; no
			// provider is called meanwhile.
			time.Sleep(200 * time.Millisecond)
		}
	}
	if served != 2 {
		t.Errorf("the noisy namespace was served %d reads before 429, want its share of the burst, 2", served)
	}
	if s, err := strconv.Atoi(refused.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("429 has Retry-After %q, want whole seconds", refused.Header.Get("Retry-After"))
	}

	// The quiet namespace still has its own share of the same store.
	for i := range 2 {
		resp, body := rawValue(t, quiet, "es")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("quiet read %d: %d %s", i, resp.StatusCode, body)
		}
	}
	// client-go sees a typed error that suggests a delay.
	_, err := cluster.VeilClient.ExternalsecretsV1alpha1().RESTClient().Get().Namespace(noisy).
		Resource("externalsecretvalues").Name("es").MaxRetries(0).Do(ctxFor(t)).Get()
	if !apierrors.IsTooManyRequests(err) {
		t.Errorf("client-go read from the noisy namespace: %v, want 429", err)
	} else if s, ok := apierrors.SuggestsClientDelay(err); !ok || s < 1 {
		t.Errorf("client-go's 429 suggests no delay: %v", err)
	}
	// The delta fails the test if the metric is missing.
	if n := throttles.Delta("veil_provider_throttled_total", map[string]string{"limit": "namespace", "store_kind": "ClusterSecretStore"}); n < 1 {
		t.Errorf("veil_provider_throttled_total{limit=namespace} moved by %v, want at least 1", n)
	}
}

// rawValue GETs one ExternalSecretValue through kube-apiserver as the
// admin, without client-go's retries, and returns the response and body.
func rawValue(t *testing.T, ns, name string) (*http.Response, string) {
	t.Helper()
	client, err := rest.HTTPClientFor(cluster.Admin)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("%s/apis/externalsecrets.veil.dev/v1alpha1/namespaces/%s/externalsecretvalues/%s", cluster.Admin.Host, ns, name)
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestRefreshIntervalZeroReadsOnce: refreshInterval 0 means what it means
// in External Secrets Operator, read once and not refreshed: a value
// changed in Vault afterwards is not read again, and later reads call Vault
// no more, while an ExternalSecret that asks for fresh values sees the
// change.
func TestRefreshIntervalZeroReadsOnce(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	key := unique("once-")
	if _, err := v.PutKV(ctx, "secret", key, map[string]any{"v": "first"}); err != nil {
		t.Fatal(err)
	}
	ns := vaultNamespace(t, "once-")
	vaultTokenStore(t, v, ns, "vault", nil)
	once := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "once", Namespace: ns},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef:  new(storeRef("vault")),
			RefreshInterval: &metav1.Duration{},
			Data:            []configv1alpha1.ExternalSecretData{dataRef("v", key, "v")},
		},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctx, once, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vaultData(t, ns, "fresh", "vault", dataRef("v", key, "v"))
	eventually(t, func() error {
		val, err := readValue(t, ns, "once")
		if err == nil && string(val.Data["v"]) != "first" {
			t.Fatalf("first read: %q", val.Data["v"])
		}
		return err
	})
	if _, err := v.PutKV(ctx, "secret", key, map[string]any{"v": "second"}); err != nil {
		t.Fatal(err)
	}
	// Change detection has seen the new version: read once still means
	// once.
	detectionCycles(t, 2)
	gets := veilMetricsSince(t)
	for i := range 5 {
		val, err := readValue(t, ns, "once")
		if err != nil {
			t.Fatal(err)
		}
		if string(val.Data["v"]) != "first" {
			t.Fatalf("read %d at refreshInterval 0 gave %q, want the value read once", i, val.Data["v"])
		}
	}
	if n := vaultCalls(gets, "kv-get"); n != 0 {
		t.Errorf("%v Vault reads for 5 reads at refreshInterval 0, want 0", n)
	}
	// The same key, for an ExternalSecret that asks for a fresh value.
	val, err := readValue(t, ns, "fresh")
	if err != nil {
		t.Fatal(err)
	}
	if string(val.Data["v"]) != "second" {
		t.Errorf("a fresh read gave %q, want the changed value", val.Data["v"])
	}
}

// TestNamespaceOverItsReadBudgetIsRefusedAlone: a namespace that reads more
// values than veil-apiserver serves one namespace is answered 429 with
// Retry-After, for gets and lists, before anything is looked up, while
// another namespace is served; large values cost more; the refusals are
// counted.
func TestNamespaceOverItsReadBudgetIsRefusedAlone(t *testing.T) {
	// Three units, refilled at one every ten seconds: nothing refills
	// during the test.
	restartVeil(t, append(append([]string(nil), veilArgs...), "--namespace-read-qps=0.1", "--namespace-read-burst=3")...)
	noisy, quiet, probe := newNamespace(t, nil), newNamespace(t, nil), newNamespace(t, nil)
	big := strings.Repeat("b", 130<<10) // two read units more than a small value
	css := newClusterStore(t, []string{noisy, quiet, probe},
		configv1alpha1.FakeProviderData{Key: "k", Value: "v"}, configv1alpha1.FakeProviderData{Key: "big", Value: big})
	for _, ns := range []string{noisy, quiet, probe} {
		for name, key := range map[string]string{"es": "k", "big": "big"} {
			es := externalSecret(ns, name, clusterStoreRef(css), nil, dataRef("k", key, ""))
			if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), es, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	throttles := veilMetricsSince(t)

	// The store is usable once veil-apiserver has seen its conditions;
	// reads refused before then (403) cost a unit too, so a third
	// namespace waits for it.
	eventually(t, func() error {
		if resp, body := rawValue(t, probe, "es"); resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
	// One read of the big value (1 + 2 units) spends the noisy namespace's
	// burst of 3; the next read, of anything, is refused.
	if resp, body := rawValue(t, noisy, "big"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the noisy namespace's first read: %d %s", resp.StatusCode, body)
	}
	resp, body := rawValue(t, noisy, "es")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a read after the budget was spent: %d %s, want 429", resp.StatusCode, body)
	}
	if want := "namespace " + noisy + " has read more values than veil-apiserver serves one namespace"; !strings.Contains(body, want) {
		t.Errorf("429 body %q does not say %q", body, want)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("429 has Retry-After %q, want whole seconds", resp.Header.Get("Retry-After"))
	}
	// Refused before the ExternalSecret is looked up: no 404 to learn from.
	if resp, body := rawValue(t, noisy, "no-such"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a read of a missing ExternalSecret over budget: %d %s, want 429", resp.StatusCode, body)
	}
	_, err := cluster.VeilClient.ExternalsecretsV1alpha1().RESTClient().Get().Namespace(noisy).
		Resource("externalsecretvalues").MaxRetries(0).Do(ctxFor(t)).Get()
	if !apierrors.IsTooManyRequests(err) {
		t.Errorf("a list from the noisy namespace: %v, want 429", err)
	}

	// The quiet namespace has a budget of its own.
	if resp, body := rawValue(t, quiet, "es"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the quiet namespace's read: %d %s", resp.StatusCode, body)
	}
	// The deltas fail the test if the metric is missing.
	if n := throttles.Delta("veil_namespace_reads_throttled_total", map[string]string{"verb": "get"}); n < 2 {
		t.Errorf("veil_namespace_reads_throttled_total{verb=get} moved by %v, want at least 2", n)
	}
	if n := throttles.Delta("veil_namespace_reads_throttled_total", map[string]string{"verb": "list"}); n < 1 {
		t.Errorf("veil_namespace_reads_throttled_total{verb=list} moved by %v, want at least 1", n)
	}
}

// TestFlowSchemasClassifyVeilTraffic: kube-apiserver's API Priority and
// Fairness, configured by artifacts/base/flowcontrol.yaml, puts tenants'
// requests to Veil's groups in veil-tenants (a flow per namespace) and
// veil-syncer's in veil-system, and leaves tenants' other requests where
// they were. kube-apiserver names the FlowSchema of every request in a
// response header.
func TestFlowSchemasClassifyVeilTraffic(t *testing.T) {
	ctx := ctxFor(t)
	uids := map[string]string{}
	for _, name := range []string{"veil-tenants", "veil-system"} {
		fs, err := cluster.KubeClient.FlowcontrolV1().FlowSchemas().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("FlowSchema %s from artifacts/base: %v", name, err)
		}
		for _, c := range fs.Status.Conditions {
			if c.Type == "Dangling" && c.Status == "True" {
				t.Errorf("FlowSchema %s names no priority level: %s", name, c.Message)
			}
		}
		uids[string(fs.UID)] = name
	}
	tenant, err := cluster.UserConfig("flow-tenant")
	if err != nil {
		t.Fatal(err)
	}
	syncer := rest.CopyConfig(cluster.Admin)
	syncer.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + harness.VeilNamespace + ":" + harness.SyncerServiceAccount}
	ns := newNamespace(t, nil)
	for _, c := range []struct {
		who  string
		cfg  *rest.Config
		path string
		want string
	}{
		{"a tenant reading values", tenant, "/apis/externalsecrets.veil.dev/v1alpha1/namespaces/" + ns + "/externalsecretvalues/x", "veil-tenants"},
		{"a tenant reading ExternalSecrets", tenant, "/apis/config.veil.dev/v1alpha1/namespaces/" + ns + "/externalsecrets", "veil-tenants"},
		{"a tenant reading ConfigMaps", tenant, "/api/v1/namespaces/" + ns + "/configmaps", ""},
		{"veil-syncer reading values", syncer, "/apis/externalsecrets.veil.dev/v1alpha1/namespaces/" + ns + "/externalsecretvalues/x", "veil-system"},
		{"veil-syncer listing Secrets", syncer, "/api/v1/namespaces/" + ns + "/secrets", "veil-system"},
	} {
		client, err := rest.HTTPClientFor(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.Host+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		uid := resp.Header.Get("X-Kubernetes-PF-FlowSchema-UID")
		if uid == "" {
			t.Fatalf("%s: kube-apiserver named no FlowSchema (status %d)", c.who, resp.StatusCode)
		}
		if got := uids[uid]; got != c.want {
			t.Errorf("%s: classified by FlowSchema %q, want %q", c.who, got, c.want)
		}
	}
}

// TestSyncerBoundsEachNamespacesSyncs: a namespace over --namespace-sync-qps
// waits for its turn, and another namespace's first sync does not wait
// behind it.
func TestSyncerBoundsEachNamespacesSyncs(t *testing.T) {
	// One sync at once, then one every 100 s: within the test, a
	// namespace gets exactly one.
	s, err := cluster.StartSyncer(ctxFor(t), unique("veil-syncer-nsrate-"), append(append([]string(nil), syncerArgs...),
		"--namespace-sync-qps=0.01", "--namespace-sync-burst=1")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	waitLeader(t, s.Name)
	delayed := syncerMetricsSince(t, s)

	noisy := newNamespace(t, nil)
	createFakeStore(t, noisy, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	for i := range 3 {
		newTargetES(t, noisy, fmt.Sprintf("n%d", i), configv1alpha1.ExternalSecretTarget{}, dataRef("k", "k", ""))
	}
	quiet := newNamespace(t, nil)
	createFakeStore(t, quiet, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	newTargetES(t, quiet, "q", configv1alpha1.ExternalSecretTarget{}, dataRef("k", "k", ""))
	waitSecret(t, quiet, "q", hasData(map[string]string{"k": "v"}))

	secrets, err := cluster.KubeClient.CoreV1().Secrets(noisy).List(ctxFor(t), metav1.ListOptions{LabelSelector: configv1alpha1.ManagedByLabel + "=veil-syncer"})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 1 {
		t.Errorf("the noisy namespace has %d Secrets synced, want exactly 1 (its burst)", len(secrets.Items))
	}
	eventually(t, func() error {
		if n := delayed.Delta("veil_syncer_namespace_syncs_delayed_total", nil); n < 2 {
			return fmt.Errorf("veil_syncer_namespace_syncs_delayed_total went up by %v, want at least 2 (n1, n2)", n)
		}
		return nil
	})
}
