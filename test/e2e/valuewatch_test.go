package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestSyncerTakesValuesFromItsWatch: veil-syncer's leader watches the
// values of ExternalSecrets with a target, and a sync that finds them
// already sent writes them without reading them again. A new
// ExternalSecret's first sync waits for the watch to send its values, and
// its namespace is held to one sync every half second, so the others wait
// in the queue while the watch sends their values. The values are
// canaries.
func TestSyncerTakesValuesFromItsWatch(t *testing.T) {
	s, err := cluster.StartSyncer(ctxFor(t), unique("veil-syncer-valuewatch-"), append(append([]string(nil), syncerArgs...),
		"--namespace-sync-qps=2", "--namespace-sync-burst=1")...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	waitLeader(t, s.Name)
	eventually(t, func() error {
		now, err := s.Metrics(ctxFor(t))
		if err != nil {
			return err
		}
		if n := now.Sum("veil_syncer_value_watches_total", map[string]string{"result": "opened"}); n < 1 {
			return fmt.Errorf("the leader has opened %v watches of values", n)
		}
		return nil
	})
	m := syncerMetricsSince(t, s)

	ns := newNamespace(t, nil)
	const n = 6
	var data []configv1alpha1.FakeProviderData
	canaries := map[string]string{}
	for i := range n {
		c := unique("veil-canary-valuewatch-")
		canaries[fmt.Sprintf("es%d", i)] = c
		data = append(data, configv1alpha1.FakeProviderData{Key: fmt.Sprintf("k%d", i), Value: c})
	}
	createFakeStore(t, ns, "store", data...)
	for i := range n {
		newTargetES(t, ns, fmt.Sprintf("es%d", i), configv1alpha1.ExternalSecretTarget{}, dataRef("v", fmt.Sprintf("k%d", i), ""))
	}
	for i := range n {
		name := fmt.Sprintf("es%d", i)
		waitSecret(t, ns, name, hasData(map[string]string{"v": canaries[name]}))
	}
	// The syncs of other tests' ExternalSecrets may read by GET too; those
	// of this namespace's find their values sent, or waited for them (the
	// watch may send them before the informer sees the ExternalSecret,
	// and then there is nothing to wait for). Only a wait that timed out,
	// on a loaded machine, reads by GET.
	timedOut := m.Delta("veil_syncer_first_sync_waits_total", map[string]string{"result": "timed_out"})
	if got := m.Delta("veil_syncer_value_reads_total", map[string]string{"source": "watch"}); got+timedOut < n {
		t.Errorf("%v syncs took values from the watch and %v first syncs waited for them in vain, want at least the %d of this namespace in all", got, timedOut, n)
	}
	if got := m.Delta("veil_syncer_watched_values_total", map[string]string{"result": "held"}); got+timedOut < n {
		t.Errorf("the watch sent %v values that were held (and %v first syncs waited in vain), want at least %d in all", got, timedOut, n)
	}
	for name, c := range canaries {
		s, err := cluster.FindCanary(ctxFor(t), c)
		if err != nil {
			t.Fatal(err)
		}
		if s.InFiles() != 0 {
			t.Errorf("a value was found in logs: %s", s)
		}
		// The fake store keeps its values in its spec; the other copy is
		// the Secret written.
		for _, k := range s.EtcdKeys {
			if k != "/registry/config.veil.dev/secretstores/"+ns+"/store" && k != "/registry/secrets/"+ns+"/"+name {
				t.Errorf("the value of %s is in etcd key %s, neither its store nor its Secret", name, k)
			}
		}
	}
}

// TestValuesSelectedByTarget: values can be selected by their
// ExternalSecret's spec.target.creationPolicy ("" without a target), in a
// list and in a watch that kube-apiserver filters, as veil-syncer's watch
// asks for them.
func TestValuesSelectedByTarget(t *testing.T) {
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	const selector = "spec.target.creationPolicy!=,spec.target.creationPolicy!=None"
	w, err := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Watch(ctxFor(t), metav1.ListOptions{FieldSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	createExternalSecret(t, ns, "reader-only", storeRef("store"), nil, dataRef("v", "k", ""))
	newTargetES(t, ns, "none", configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyNone}, dataRef("v", "k", ""))
	newTargetES(t, ns, "owner", configv1alpha1.ExternalSecretTarget{}, dataRef("v", "k", ""))

	var seen []string
	timeout := time.After(30 * time.Second)
	for !slices.Contains(seen, "owner") {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("the watch ended; it sent %v", seen)
			}
			if ev.Type == watch.Added || ev.Type == watch.Modified {
				if o, ok := ev.Object.(metav1.Object); ok {
					seen = append(seen, o.GetName())
				}
			}
		case <-timeout:
			t.Fatalf("no event for the ExternalSecret with a target; the watch sent %v", seen)
		}
	}
	if !slices.Equal(seen, []string{"owner"}) {
		t.Errorf("the watch sent values of %v, want only owner (created last)", seen)
	}

	list, err := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).List(ctxFor(t), metav1.ListOptions{FieldSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, v := range list.Items {
		listed = append(listed, v.Name)
	}
	if !slices.Equal(listed, []string{"owner"}) {
		t.Errorf("the list has %v, want only owner", listed)
	}
}
