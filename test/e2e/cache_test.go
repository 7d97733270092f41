package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	"github.com/veil-dev/veil/test/harness"
)

// longRefresh outlasts every test, whatever --default-refresh-interval the
// suite runs veil-apiserver with: values read once stay fresh throughout.
var longRefresh = metav1.Duration{Duration: time.Hour}

// unthrottledClient is the admin's clientset without client-side rate
// limiting, so concurrent reads really are concurrent.
func unthrottledClient(t *testing.T) versioned.Interface {
	t.Helper()
	cfg := rest.CopyConfig(cluster.Admin)
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	c, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fakeGets is how many value reads veil-apiserver has made from fake
// stores since the baseline, from its own provider-call metric.
func fakeGets(since *harness.Baseline) float64 {
	return since.Delta("veil_provider_calls_total", map[string]string{"provider": "fake", "operation": "get"})
}

// TestCacheConcurrentReadsMakeOneProviderCall: 50 clients read one
// ExternalSecretValue at once; the provider is asked once and every answer
// carries that one read's fetch time.
func TestCacheConcurrentReadsMakeOneProviderCall(t *testing.T) {
	value := unique("cache-concurrent-")
	ns := newNamespace(t, nil)
	if _, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Create(ctxFor(t), &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "store"},
		Spec: configv1alpha1.SecretStoreSpec{
			Provider:               configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{Data: []configv1alpha1.FakeProviderData{{Key: "app/db", Value: value}}}},
			DefaultRefreshInterval: &longRefresh,
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	createExternalSecret(t, ns, "db", storeRef("store"), nil, dataRef("password", "app/db", ""))
	client := unthrottledClient(t)

	gets := veilMetricsSince(t)
	const readers = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	fetchTimes := make([]metav1.Time, readers)
	errs := make([]error, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v, err := client.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), "db", metav1.GetOptions{})
			if err == nil && string(v.Data["password"]) != value {
				err = fmt.Errorf("data[password] is not the stored value")
			}
			if err == nil {
				fetchTimes[i] = v.Source.FetchTime
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("reader %d: %v", i, err)
		}
	}
	if calls := fakeGets(gets); calls != 1 {
		t.Errorf("%d concurrent reads made %v provider calls, want 1", readers, calls)
	}
	for i, ft := range fetchTimes {
		if !ft.Equal(&fetchTimes[0]) {
			t.Fatalf("reader %d got fetchTime %v, reader 0 %v: want the one provider read's", i, ft, fetchTimes[0])
		}
	}
}

// TestCacheProviderCallsFollowUniqueValues: 200 ExternalSecrets in 10
// namespaces read the same 10 remote keys (two properties of one and the
// whole of another) through one ClusterSecretStore; each is read 5 times.
// The provider is asked once per remote key.
func TestCacheProviderCallsFollowUniqueValues(t *testing.T) {
	const namespaces, externalSecrets, keys, readsEach = 10, 200, 10, 5
	label := unique("cache-")
	var nss []string
	for range namespaces {
		nss = append(nss, newNamespace(t, map[string]string{"veil-e2e-cache": label}))
	}
	data := make([]configv1alpha1.FakeProviderData, keys)
	for k := range data {
		data[k] = configv1alpha1.FakeProviderData{Key: fmt.Sprintf("shared/key-%d", k), Value: fmt.Sprintf(`{"user":"user-%d","pass":"pass-%d"}`, k, k)}
	}
	ctx := ctxFor(t)
	css, err := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Create(ctx, &configv1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: unique("css-cache-")},
		Spec: configv1alpha1.ClusterSecretStoreSpec{
			SecretStoreSpec: configv1alpha1.SecretStoreSpec{
				Provider:               configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{Data: data}},
				DefaultRefreshInterval: &longRefresh,
			},
			Conditions: []configv1alpha1.ClusterSecretStoreCondition{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"veil-e2e-cache": label}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Delete(ctx, css.Name, metav1.DeleteOptions{})
	})
	ref := configv1alpha1.SecretStoreRef{Name: css.Name, Kind: configv1alpha1.ClusterSecretStoreKind}

	type target struct {
		ns, name string
		k, next  int
	}
	var targets []target
	for i := range externalSecrets {
		tg := target{ns: nss[i%namespaces], name: fmt.Sprintf("es-%d", i), k: i % keys, next: (i + 1) % keys}
		createExternalSecret(t, tg.ns, tg.name, ref, nil,
			dataRef("user", fmt.Sprintf("shared/key-%d", tg.k), "user"),
			dataRef("pass", fmt.Sprintf("shared/key-%d", tg.k), "pass"),
			dataRef("next", fmt.Sprintf("shared/key-%d", tg.next), ""),
		)
		targets = append(targets, tg)
	}

	client := unthrottledClient(t)
	gets := veilMetricsSince(t)
	work := make(chan target)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tg := range work {
				v, err := client.ExternalsecretsV1alpha1().ExternalSecretValues(tg.ns).Get(ctxFor(t), tg.name, metav1.GetOptions{})
				if err == nil && (string(v.Data["user"]) != fmt.Sprintf("user-%d", tg.k) || string(v.Data["pass"]) != fmt.Sprintf("pass-%d", tg.k) ||
					string(v.Data["next"]) != data[tg.next].Value) {
					err = fmt.Errorf("%s/%s: data does not hold the values of keys %d and %d", tg.ns, tg.name, tg.k, tg.next)
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for range readsEach {
		for _, tg := range targets {
			work <- tg
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	if calls := fakeGets(gets); calls != keys {
		t.Errorf("%d reads of %d ExternalSecrets over %d remote keys made %v provider calls, want %d", readsEach*externalSecrets, externalSecrets, keys, calls, keys)
	}
}
