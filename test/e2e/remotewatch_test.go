package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
)

// A store served out of process by a provider that detects changes
// itself is followed by its change stream (WatchChanges), not by asking
// for versions: a value changed in the provider (here the fake provider,
// whose values are veil-provider's own configuration) reaches a watcher
// of the ExternalSecretValue through kube-apiserver's aggregation as
// MODIFIED, within seconds although the ExternalSecret refreshes hourly,
// and veil-provider never received a Versions request.
func TestRemoteChangeStream(t *testing.T) {
	ctx := ctxFor(t)
	ns := newNamespace(t, nil)
	config := func(value string) string {
		return fmt.Sprintf(`stores:
- kind: SecretStore
  namespace: %s
  name: streamed
  keyPrefixes: ["app/"]
  provider:
    fake:
      data: [{key: app/db, value: %q}]
`, ns, value)
	}
	first, second := unique("first-"), unique("second-")
	p, err := cluster.StartProvider(ctx, unique("fake-stream-"), "fake", config(first), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)

	name := unique("fake-stream-")
	regs := cluster.VeilClient.ConfigV1alpha1().ProviderRegistrations()
	if _, err := regs.Create(ctx, &configv1alpha1.ProviderRegistration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       configv1alpha1.ProviderRegistrationSpec{Provider: "fake", Endpoint: p.Address, ServerName: p.ServerName, CABundle: string(p.CAPEM)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = regs.Delete(ctxFor(t), name, metav1.DeleteOptions{}) })
	remoteStoreNaming(t, ns, "streamed", name)
	slowExternalSecret(t, ns, "app", "streamed", false, dataRef("v", "app/db", ""))
	// The first read builds the store's client; change detection follows
	// only stores a read has reached.
	waitValue(t, ns, "app", "v", first)
	eventually(t, func() error {
		if n := providerMetrics(t, p).Sum("veil_provider_requests_total", map[string]string{"method": "WatchChanges"}); n < 1 {
			return fmt.Errorf("veil-provider received %v WatchChanges requests, want the change detection leader's", n)
		}
		return nil
	})
	before := lastChange(t, ns, "app")

	w := watchValue(t, ns, "app")
	if err := p.WriteConfig(config(second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitModified(t, w, "v", second)
	t.Logf("the change reached the watcher %s after the provider's configuration changed", time.Since(start).Round(time.Millisecond))
	if c := waitChange(t, ns, "app", changeID(before), configv1alpha1.ValueChangeDetected, "app/db"); c == nil {
		t.Fatal("no change recorded")
	}

	// The stream, not versions: veil-provider counts every request it
	// receives, by method (Value fails if the metric is missing).
	m := providerMetrics(t, p)
	if n := m.Value(t, "veil_provider_requests_total", map[string]string{"method": "WatchChanges"}); n < 1 {
		t.Errorf("veil-provider received %v WatchChanges requests", n)
	}
	if n := m.Value(t, "veil_provider_requests_total", map[string]string{"method": "Versions"}); n != 0 {
		t.Errorf("veil-provider received %v Versions requests for a store followed by its change stream", n)
	}
	if n := m.Value(t, "veil_provider_requests_total", map[string]string{"method": "Get"}); n < 2 {
		t.Errorf("veil-provider received %v Get requests, want the first read and the read after the change", n)
	}
	vm, err := cluster.VeilMetrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := vm.Value(t, "veil_change_detection_streams", nil); n < 1 {
		t.Errorf("veil_change_detection_streams is %v with a store followed by its stream", n)
	}
}

// waitModified waits for a MODIFIED event on w whose value has data[key]
// == want.
func waitModified(t *testing.T, w watch.Interface, key, want string) {
	t.Helper()
	deadline, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("the watch ended")
			}
			if ev.Type == watch.Error {
				t.Fatalf("the watch failed: %v", ev.Object)
			}
			if v, ok := ev.Object.(*esv1alpha1.ExternalSecretValue); ok && ev.Type == watch.Modified && string(v.Data[key]) == want {
				return
			}
		case <-deadline.Done():
			t.Fatalf("no MODIFIED event with the new value of %s within a minute", key)
		}
	}
}
