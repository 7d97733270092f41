package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
)

// Live values: a value changed at the provider, or pushed, reaches
// readers, watchers and materialised Secrets within seconds, whatever the
// refresh interval (an hour in these tests). The suite runs veil-apiserver
// with --change-detection-interval=2s.

// slowExternalSecret reads data through store, refreshed only hourly, and
// materialises a Secret of its own name when target is set.
func slowExternalSecret(t *testing.T, ns, name, store string, target bool, data ...configv1alpha1.ExternalSecretData) {
	t.Helper()
	es := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef:  new(storeRef(store)),
			RefreshInterval: &metav1.Duration{Duration: time.Hour},
			Data:            data,
		},
	}
	if target {
		es.Spec.Target = &configv1alpha1.ExternalSecretTarget{Name: name}
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// watchValue watches one ExternalSecretValue and returns its events.
func watchValue(t *testing.T, ns, name string) watch.Interface {
	t.Helper()
	w, err := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Watch(ctxFor(t), metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

// waitWatched waits for an event on w whose value has data[key] == want.
func waitWatched(t *testing.T, w watch.Interface, key, want string) {
	t.Helper()
	for {
		ev := nextEvent(t, w)
		if ev.Type == watch.Error {
			t.Fatalf("the watch failed: %v", ev.Object)
		}
		if v, ok := ev.Object.(*esv1alpha1.ExternalSecretValue); ok && string(v.Data[key]) == want {
			return
		}
	}
}

// waitChange waits until the ExternalSecret records a value change other
// than the one called old, of cause naming key, and returns it.
func waitChange(t *testing.T, ns, name, old string, cause configv1alpha1.ValueChangeCause, key string) *configv1alpha1.ValueChange {
	t.Helper()
	var c *configv1alpha1.ValueChange
	eventually(t, func() error {
		c = lastChange(t, ns, name)
		if c == nil || c.ID == old || c.Cause != cause || !slices.Contains(c.Keys, key) {
			return fmt.Errorf("status.lastValueChange is %+v, want a new one of cause %s naming %q", c, cause, key)
		}
		return nil
	})
	return c
}

func lastChange(t *testing.T, ns, name string) *configv1alpha1.ValueChange {
	t.Helper()
	es, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return es.Status.LastValueChange
}

func changeID(c *configv1alpha1.ValueChange) string {
	if c == nil {
		return ""
	}
	return c.ID
}

// detectionCycles waits until change detection has run n cycles from now:
// every key read so far has been looked at since.
func detectionCycles(t *testing.T, n float64) {
	t.Helper()
	cycles := veilMetricsSince(t)
	eventually(t, func() error {
		if d := cycles.Delta("veil_change_detection_cycles_total", nil); d < n {
			return fmt.Errorf("%v change detection cycles so far, want %v", d, n)
		}
		return nil
	})
}

// waitValue waits until a get of the value has data[key] == want.
func waitValue(t *testing.T, ns, name, key, want string) {
	t.Helper()
	eventually(t, func() error {
		v, err := readValue(t, ns, name)
		if err != nil {
			return err
		}
		if got := string(v.Data[key]); got != want {
			return fmt.Errorf("%s is %q, want the value written at the provider", key, got)
		}
		return nil
	})
}

func TestVaultRotationReachesReadersWatchersAndSecrets(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	veilSyncer := startSyncer(t)
	before, after := unique("canary-before-"), unique("canary-after-")
	if _, err := v.PutKV(ctx, "secret", "app/rotating", map[string]any{"password": before}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutKV(ctx, "secret", "app/steady", map[string]any{"password": "steady"}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "vault", nil)
	slowExternalSecret(t, ns, "rotating", "vault", true, dataRef("password", "app/rotating", "password"))
	slowExternalSecret(t, ns, "steady", "vault", false, dataRef("password", "app/steady", "password"))
	wantData(t, mustValue(t, ns, "rotating"), map[string]string{"password": before})
	wantData(t, mustValue(t, ns, "steady"), map[string]string{"password": "steady"})
	w := watchValue(t, ns, "rotating")
	waitWatched(t, w, "password", before)
	waitSecret(t, ns, "rotating", func(s *corev1.Secret) error {
		if string(s.Data["password"]) != before {
			return fmt.Errorf("the Secret holds %q", s.Data["password"])
		}
		return nil
	})
	// Detection knows both keys now. (A key it sees for the first time
	// counts as changed if it changed since its last cycle, give or take
	// clock skew: a reader may have read it meanwhile. Both keys were
	// written a moment ago, so they may already carry such a change.)
	detectionCycles(t, 2)
	rotatingBefore, steadyBefore := changeID(lastChange(t, ns, "rotating")), changeID(lastChange(t, ns, "steady"))
	m := veilMetricsSince(t)
	sm := syncerMetricsSince(t, veilSyncer)

	if _, err := v.PutKV(ctx, "secret", "app/rotating", map[string]any{"password": after}); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	c := waitChange(t, ns, "rotating", rotatingBefore, configv1alpha1.ValueChangeDetected, "app/rotating")
	waitValue(t, ns, "rotating", "password", after)
	waitWatched(t, w, "password", after)
	waitSecret(t, ns, "rotating", func(s *corev1.Secret) error {
		if string(s.Data["password"]) != after {
			return fmt.Errorf("the Secret holds %q", s.Data["password"])
		}
		return nil
	})
	t.Logf("the rotation reached the Secret %s after the write to Vault (change recorded at %s)", time.Since(rotated).Round(time.Millisecond), c.Time.Format(time.RFC3339))
	// veil-syncer's sync for the recorded change waited for its watch of
	// values to send the new value, and wrote that.
	if n := sm.Delta("veil_syncer_value_change_waits_total", map[string]string{"result": "waiting"}); n < 1 {
		t.Errorf("no sync waited for the watch to send the changed value (%v)", n)
	}
	if n := sm.Delta("veil_syncer_value_reads_total", map[string]string{"source": "watch"}); n < 1 {
		t.Errorf("the changed value was not taken from veil-syncer's watch (%v reads)", n)
	}

	// Nothing that reads another key was told.
	if c := lastChange(t, ns, "steady"); changeID(c) != steadyBefore {
		t.Errorf("an ExternalSecret of an unchanged key was marked: %+v", c)
	}
	if d := m.Delta("veil_value_changes_detected_total", nil); d < 1 {
		t.Errorf("veil_value_changes_detected_total rose by %v, want at least 1", d)
	}
	if d := m.Delta("veil_value_changes_marked_total", map[string]string{"cause": "Detected"}); d < 1 {
		t.Errorf("veil_value_changes_marked_total{cause=Detected} rose by %v", d)
	}

	// A metadata-only write (what Veil's own ownership marks are) is no
	// change of the value.
	if err := v.TagKV(ctx, "secret", "app/rotating", map[string]string{"team": "a"}); err != nil {
		t.Fatal(err)
	}
	detectionCycles(t, 2)
	if now := lastChange(t, ns, "rotating"); changeID(now) != c.ID {
		t.Errorf("a custom_metadata write was taken for a change of the value: %+v", now)
	}

	for _, canary := range []string{before, after} {
		s, err := cluster.FindCanary(ctx, canary)
		if err != nil {
			t.Fatal(err)
		}
		// The materialised Secret holds the value in etcd, as asked;
		// nothing else may.
		if s.InFiles() != 0 {
			t.Errorf("value %q written down outside its Secret: %s", canary, s)
		}
	}
}

func TestAWSRotationIsDetected(t *testing.T) {
	ctx := ctxFor(t)
	f := newAWSFixture(t)
	secret, param := unique("rotating-secret-"), "/"+unique("rotating-param-")
	f.createSecret(t, secret, "one", nil)
	f.putParameter(t, param, "one", ssmtypes.ParameterTypeSecureString)
	createAWSStore(t, f.ns, "sm", f.spec(configv1alpha1.AWSServiceSecretsManager, "aws-keys"))
	createAWSStore(t, f.ns, "ps", f.spec(configv1alpha1.AWSServiceParameterStore, "aws-keys"))
	slowExternalSecret(t, f.ns, "sm", "sm", false, dataRef("value", secret, ""))
	slowExternalSecret(t, f.ns, "ps", "ps", false, dataRef("value", param, ""))
	wantAWSData(t, awsRead(t, f.ns, "sm"), map[string][]byte{"value": []byte("one")})
	wantAWSData(t, awsRead(t, f.ns, "ps"), map[string][]byte{"value": []byte("one")})
	detectionCycles(t, 2)
	smBefore, psBefore := changeID(lastChange(t, f.ns, "sm")), changeID(lastChange(t, f.ns, "ps"))

	if _, err := f.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(secret), SecretString: aws.String("two")}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ps.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(param), Value: aws.String("two"), Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	waitChange(t, f.ns, "sm", smBefore, configv1alpha1.ValueChangeDetected, secret)
	waitChange(t, f.ns, "ps", psBefore, configv1alpha1.ValueChangeDetected, param)
	waitValue(t, f.ns, "sm", "value", "two")
	waitValue(t, f.ns, "ps", "value", "two")
}

// TestVaultKVv1RotationIsDetected: a KV v1 mount keeps no versions, so
// detection compares keyed hashes of the values. A rotation reaches
// readers within seconds, also one written right after the key's first
// read, before detection first looked at it; the same value written
// again marks no one, nor does a write of another key.
func TestVaultKVv1RotationIsDetected(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	if err := v.EnableKV(ctx, "kv", 1); err != nil {
		t.Fatal(err)
	}
	before, after := unique("kv1-before-"), unique("kv1-after-")
	put := func(key, value string) {
		t.Helper()
		if err := v.PutKVv1(ctx, "kv", key, map[string]any{"password": value}); err != nil {
			t.Fatal(err)
		}
	}
	put("app/rotating", before)
	put("app/steady", "steady")
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "vault", func(s *configv1alpha1.VaultProvider) {
		s.Path, s.Version = ptrTo("kv"), configv1alpha1.VaultKVv1
	})
	slowExternalSecret(t, ns, "rotating", "vault", false, dataRef("password", "app/rotating", "password"))
	slowExternalSecret(t, ns, "steady", "vault", false, dataRef("password", "app/steady", "password"))
	wantData(t, mustValue(t, ns, "rotating"), map[string]string{"password": before})
	wantData(t, mustValue(t, ns, "steady"), map[string]string{"password": "steady"})
	detectionCycles(t, 2)
	rotatingBefore, steadyBefore := changeID(lastChange(t, ns, "rotating")), changeID(lastChange(t, ns, "steady"))

	// The same value again is no change.
	put("app/rotating", before)
	detectionCycles(t, 2)
	if c := lastChange(t, ns, "rotating"); changeID(c) != rotatingBefore {
		t.Errorf("writing the same value again was taken for a change: %+v", c)
	}

	put("app/rotating", after)
	waitChange(t, ns, "rotating", rotatingBefore, configv1alpha1.ValueChangeDetected, "app/rotating")
	waitValue(t, ns, "rotating", "password", after)
	if c := lastChange(t, ns, "steady"); changeID(c) != steadyBefore {
		t.Errorf("an ExternalSecret of an unchanged key was marked: %+v", c)
	}

	// A key read for the first time and rotated at once: detection's first
	// look finds another value than the read returned.
	early, rotated := unique("kv1-early-"), unique("kv1-early-rotated-")
	put("app/early", early)
	slowExternalSecret(t, ns, "early", "vault", false, dataRef("password", "app/early", "password"))
	wantData(t, mustValue(t, ns, "early"), map[string]string{"password": early})
	earlyBefore := changeID(lastChange(t, ns, "early"))
	put("app/early", rotated)
	waitChange(t, ns, "early", earlyBefore, configv1alpha1.ValueChangeDetected, "app/early")
	waitValue(t, ns, "early", "password", rotated)

	// The hashes stay in veil-apiserver's memory: no value, and no trace
	// of either, outside the cache's sealed entries.
	for _, canary := range []string{before, after, early, rotated} {
		f, err := cluster.FindCanary(ctx, canary)
		if err != nil {
			t.Fatal(err)
		}
		if f.Total() != 0 {
			t.Errorf("value %q written down: %s", canary, f)
		}
	}
}

// TestPushIsRecordedInItsReaders: a push marks the ExternalSecrets that
// read the pushed key, before it is answered, and no other.
func TestPushIsRecordedInItsReaders(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	vaultWriterStore(t, v, ns, "vault", false)
	if _, err := v.PutKV(ctx, "secret", "ci/other", map[string]any{"password": "x"}); err != nil {
		t.Fatal(err)
	}
	createPushSecret(t, ns, "app", "unused", "", []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("password", "ci/pushed", "password"))
	if _, err := secretPush(t, cluster.VeilClient, ns, "app", "", map[string]string{"password": "first"}); err != nil {
		t.Fatal(err)
	}
	slowExternalSecret(t, ns, "reader", "vault", false, dataRef("password", "ci/pushed", "password"))
	slowExternalSecret(t, ns, "bystander", "vault", false, dataRef("password", "ci/other", "password"))
	wantData(t, mustValue(t, ns, "reader"), map[string]string{"password": "first"})
	wantData(t, mustValue(t, ns, "bystander"), map[string]string{"password": "x"})

	detectionCycles(t, 2)
	bystander := changeID(lastChange(t, ns, "bystander"))
	if _, err := secretPush(t, cluster.VeilClient, ns, "app", "", map[string]string{"password": "second"}); err != nil {
		t.Fatal(err)
	}
	// Recorded before the push was answered: no waiting here.
	if c := lastChange(t, ns, "reader"); c == nil || c.Cause != configv1alpha1.ValueChangePushed || !slices.Equal(c.Keys, []string{"ci/pushed"}) {
		t.Fatalf("after the push the reader's status.lastValueChange is %+v, want Pushed naming ci/pushed", c)
	}
	wantData(t, mustValue(t, ns, "reader"), map[string]string{"password": "second"})
	if c := lastChange(t, ns, "bystander"); changeID(c) != bystander {
		t.Errorf("an ExternalSecret of another key was marked: %+v", c)
	}
}
