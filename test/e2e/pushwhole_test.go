package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestPushSecretWholeSecretVault: a data entry without secretKey pushes the
// whole source Secret, as in ESO: to a remote key, its fields are the
// Secret's keys; to a property, that property holds the Secret as one JSON
// object. The same Secret again is Unchanged, and the canary is nowhere but
// the Secret and Vault.
func TestPushSecretWholeSecretVault(t *testing.T) {
	s := startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	canary := unique("veil-canary-whole-")
	data := map[string]string{"password": canary, "user": "app", "url": "https://db?a=1&b=<2>"}
	src := putSource(t, ns, "src", data)
	newPushSecret(t, ns, "app", "src", deleteRemote, []configv1alpha1.SecretStoreRef{storeRef("vault")},
		match("", "ci/whole", ""), match("", "ci/bundle", "all"))

	ps := waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	whole, err := vaultKV(t, v, "ci/whole")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for k, val := range whole {
		got[k] = fmt.Sprint(val)
	}
	if !maps.Equal(got, data) {
		t.Errorf("Vault's ci/whole has fields %v, want the Secret's keys %v with their values", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(data)))
	}
	bundle, err := vaultKV(t, v, "ci/bundle")
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]string
	if s, ok := bundle["all"].(string); !ok || json.Unmarshal([]byte(s), &obj) != nil || !maps.Equal(obj, data) {
		t.Errorf("Vault's ci/bundle#all is not the Secret as one JSON object (fields %v)", slices.Sorted(maps.Keys(bundle)))
	}
	for _, key := range []string{"ci/whole", "ci/bundle#all"} {
		if e := ps.Status.SyncedPushSecrets["SecretStore/vault"][key]; e.Result != "Pushed" || e.PushTime == nil || e.Match.SecretKey != "" {
			t.Errorf("syncedPushSecrets[SecretStore/vault][%s] = %+v", key, e)
		}
	}

	// The same data again (a label changed the resourceVersion): no
	// SecretPush, nothing written to Vault.
	puts, syncs := veilMetricsSince(t), syncerMetricsSince(t, s)
	src.Labels = map[string]string{"touched": "yes"}
	src, err = cluster.KubeClient.CoreV1().Secrets(ns).Update(ctx, src, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	if d := syncs.Delta("veil_syncer_push_syncs_total", map[string]string{"result": "Unchanged"}); d < 1 {
		t.Errorf("the same Secret again was not Unchanged")
	}
	if d := secretPushesCreated(syncs, pushAction); d != 0 {
		t.Errorf("the same Secret again made %v SecretPushes", d)
	}
	if d := vaultCalls(puts, "kv-put"); d != 0 {
		t.Errorf("the same Secret again wrote to Vault %v times", d)
	}

	out := kubectl(t, "", "get", "pushsecrets,events", "-n", ns, "-o", "yaml")
	if strings.Contains(out, canary) || strings.Contains(out, b64(canary)) {
		t.Error("the PushSecret or the Events carry the value")
	}
	m, err := s.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.Raw, canary) {
		t.Error("the syncer's metrics contain the canary")
	}
	sightings, err := cluster.FindCanary(ctx, canary)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/registry/secrets/" + ns + "/src"}
	if got := slices.Sorted(slices.Values(sightings.EtcdKeys)); !slices.Equal(got, want) {
		t.Errorf("canary in etcd keys %v, want exactly %v", got, want)
	}
	if sightings.InFiles() != 0 {
		t.Errorf("canary found in logs: %s", sightings)
	}

	// deletionPolicy Delete applies as to any key.
	deletePushSecret(t, ns, "app")
	for _, key := range []string{"ci/whole", "ci/bundle"} {
		if d, err := vaultKV(t, v, key); err == nil && len(d) > 0 {
			t.Errorf("%s is still in Vault after the PushSecret was deleted", key)
		}
	}
}
