package e2e

import (
	"encoding/base64"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

// TestCanaryFakeStore reads a unique value through the aggregator several
// ways, then searches etcd, every log and both audit logs for it. The fake
// provider keeps its values in the store's spec, so the value must be in
// exactly one etcd key — that SecretStore — and nowhere else.
func TestCanaryFakeStore(t *testing.T) {
	canary := unique("veil-canary-fake-")
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "app/secret", Value: canary})
	createExternalSecret(t, ns, "app", storeRef("store"), nil, dataRef("secret", "app/secret", ""))

	reads := veilMetricsSince(t)
	readCanary(t, ns, "app", "secret", canary)

	s, err := cluster.FindCanary(ctxFor(t), canary)
	if err != nil {
		t.Fatal(err)
	}
	want := "/registry/config.veil.dev/secretstores/" + ns + "/store"
	if len(s.EtcdKeys) != 1 || s.EtcdKeys[0] != want {
		t.Errorf("canary in etcd keys %v, want exactly [%s]", s.EtcdKeys, want)
	}
	if s.InFiles() != 0 {
		t.Errorf("canary found in logs: %s", s)
	}
	assertNotInMetrics(t, reads, canary)
}

// assertOnlyInProvider checks that a value that lives only in a provider,
// read or pushed through Veil, is found nowhere in the cluster: not in
// etcd, a log, an audit log, nor veil-apiserver's /metrics.
func assertOnlyInProvider(t *testing.T, value string) {
	t.Helper()
	s, err := cluster.FindCanary(ctxFor(t), value)
	if err != nil {
		t.Fatal(err)
	}
	if s.Total() != 0 {
		t.Errorf("a value held only by the provider was found in the cluster: %s", s)
	}
	m, err := cluster.VeilMetrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	notInMetrics(t, m, value)
}

// assertNotInMetrics checks that veil-apiserver's /metrics, which counts
// cache and provider activity, shows the value in none of its forms; the
// reads since the baseline must show as cache hits, so the scrape is known
// to come from the server that served them.
func assertNotInMetrics(t *testing.T, reads *harness.Baseline, value string) {
	t.Helper()
	if reads.Delta("veil_cache_hits_total", nil) == 0 {
		t.Errorf("/metrics shows no cache hit after repeated reads; is this the metrics of the server that served them?")
	}
	m, err := cluster.VeilMetrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	notInMetrics(t, m, value)
}

func notInMetrics(t *testing.T, m *harness.Metrics, value string) {
	t.Helper()
	for _, form := range []string{value, base64.StdEncoding.EncodeToString([]byte(value)), base64.RawURLEncoding.EncodeToString([]byte(value))} {
		if strings.Contains(m.Raw, form) {
			t.Errorf("/metrics contains the canary (%q)", form)
		}
	}
}

// readCanary reads the value several ways — kubectl table, YAML, JSON,
// list, client-go — and checks that every read that should carry it did.
func readCanary(t *testing.T, ns, name, key, canary string) {
	t.Helper()
	eventually(t, func() error {
		_, err := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), name, metav1.GetOptions{})
		return err
	})
	for i := 0; i < 3; i++ {
		v, err := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), name, metav1.GetOptions{})
		if err != nil || string(v.Data[key]) != canary {
			t.Fatalf("read %d: %v, data[%s] does not hold the canary", i, err, key)
		}
	}
	if out := kubectl(t, "", "get", "externalsecretvalue", name, "-n", ns, "-o", "jsonpath={.data."+key+"}"); out == "" {
		t.Fatal("kubectl -o jsonpath returned nothing")
	}
	kubectl(t, "", "get", "externalsecretvalues", "-n", ns, "-o", "yaml")
	if table := kubectl(t, "", "get", "externalsecretvalues", "-n", ns); !strings.Contains(table, name) {
		t.Fatalf("table lacks %s:\n%s", name, table)
	}
}
