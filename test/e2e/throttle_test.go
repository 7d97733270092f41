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
			SecretStoreRef:  storeRef("vault"),
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
