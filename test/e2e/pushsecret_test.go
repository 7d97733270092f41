package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/syncer"
	"github.com/veil-dev/veil/test/harness"
)

// The PushSecret tests run veil-syncer as its ServiceAccount, with the RBAC
// artifacts/ ships, against a real Vault or moto: the syncer reads the
// source Secret (where the namespace granted it) and creates SecretPushes,
// and veil-apiserver writes to the provider.

// grantPushSource binds veil-syncer:push-source to the syncer in ns, as
// artifacts/examples/push/rolebinding.yaml does.
func grantPushSource(t *testing.T, ns string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "veil-syncer-push-source", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: syncer.PushSourceClusterRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: harness.SyncerServiceAccount, Namespace: harness.VeilNamespace}},
	}
	if _, err := cluster.KubeClient.RbacV1().RoleBindings(ns).Create(ctxFor(t), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// putSource creates or replaces the source Secret and returns it.
func putSource(t *testing.T, ns, name string, data map[string]string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	secrets := cluster.KubeClient.CoreV1().Secrets(ns)
	out, err := secrets.Create(ctxFor(t), s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		out, err = secrets.Update(ctxFor(t), s, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// newPushSecret creates a PushSecret of source to stores, refreshed hourly
// (so no refresh happens during a test unless it asks for one).
func newPushSecret(t *testing.T, ns, name, source string, edit func(*configv1alpha1.PushSecretSpec), stores []configv1alpha1.SecretStoreRef, matches ...configv1alpha1.PushSecretMatch) {
	t.Helper()
	ps := &configv1alpha1.PushSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: configv1alpha1.PushSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: time.Hour},
			SecretStoreRefs: stores,
			Selector:        configv1alpha1.PushSecretSelector{Secret: configv1alpha1.PushSecretSecret{Name: source}},
		},
	}
	for _, m := range matches {
		ps.Spec.Data = append(ps.Spec.Data, configv1alpha1.PushSecretData{Match: m})
	}
	if edit != nil {
		edit(&ps.Spec)
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Create(ctxFor(t), ps, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// deleteRemote makes a PushSecret delete its remote keys when deleted.
func deleteRemote(s *configv1alpha1.PushSecretSpec) {
	s.DeletionPolicy = configv1alpha1.PushSecretDeletionPolicyDelete
}

// pushReady checks that the syncer reported reason for the PushSecret's
// current generation (and, for Synced, the given source resourceVersion).
func pushReady(ns, name, reason, sourceRV string) func(*testing.T) (*configv1alpha1.PushSecret, error) {
	return func(t *testing.T) (*configv1alpha1.PushSecret, error) {
		ps, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Get(ctxFor(t), name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		c := apimeta.FindStatusCondition(ps.Status.Conditions, "Ready")
		if c == nil || c.ObservedGeneration != ps.Generation || c.Reason != reason {
			return nil, fmt.Errorf("PushSecret %s: Ready %+v, want reason %s for generation %d", name, c, reason, ps.Generation)
		}
		if sourceRV != "" && ps.Status.SyncedResourceVersion != fmt.Sprintf("%d-%s", ps.Generation, sourceRV) {
			return nil, fmt.Errorf("PushSecret %s: syncedResourceVersion %q, want source resourceVersion %s", name, ps.Status.SyncedResourceVersion, sourceRV)
		}
		return ps, nil
	}
}

// waitPush waits for check, for up to within: retries back off, so some
// waits are longer than eventually's.
func waitPush(t *testing.T, within time.Duration, check func(*testing.T) (*configv1alpha1.PushSecret, error)) *configv1alpha1.PushSecret {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ps, err := check(t)
		if err == nil {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func readyMessage(ps *configv1alpha1.PushSecret) string {
	return apimeta.FindStatusCondition(ps.Status.Conditions, "Ready").Message
}

// waitPushEvent waits for an Event of the PushSecret with reason whose
// message contains contains.
func waitPushEvent(t *testing.T, ns, name, reason, contains string) corev1.Event {
	t.Helper()
	var found corev1.Event
	eventually(t, func() error {
		list, err := cluster.KubeClient.CoreV1().Events(ns).List(ctxFor(t), metav1.ListOptions{
			FieldSelector: fields.Set{"involvedObject.name": name, "involvedObject.kind": "PushSecret", "reason": reason}.String(),
		})
		if err != nil {
			return err
		}
		for _, e := range list.Items {
			if strings.Contains(e.Message, contains) {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s Event for PushSecret %s containing %q", reason, name, contains)
	})
	return found
}

// pushAction selects the SecretPushes that write, leaving out deletes of
// PushSecrets other tests left behind.
var pushAction = map[string]string{"action": "Push"}

// secretPushesCreated is the syncer's count of SecretPushes it created
// since the baseline.
func secretPushesCreated(since *harness.Baseline, labels map[string]string) float64 {
	return since.Delta("veil_syncer_secretpushes_total", labels)
}

func vaultKV(t *testing.T, v *harness.Vault, key string) (map[string]any, error) {
	t.Helper()
	s, err := v.Root.KVv2("secret").Get(ctxFor(t), key)
	if err != nil {
		return nil, err
	}
	return s.Data, nil
}

// waitVault waits until Vault's key holds property = want.
func waitVault(t *testing.T, v *harness.Vault, key, property, want string) {
	t.Helper()
	eventually(t, func() error {
		data, err := vaultKV(t, v, key)
		if err != nil {
			return err
		}
		if data[property] != want {
			return fmt.Errorf("Vault's %s#%s holds another value", key, property)
		}
		return nil
	})
}

func hasPushFinalizer(ps *configv1alpha1.PushSecret) bool {
	return slices.Contains(ps.Finalizers, configv1alpha1.PushSecretFinalizer)
}

func deletePushSecret(t *testing.T, ns, name string) {
	t.Helper()
	if err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Delete(ctxFor(t), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		_, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Get(ctxFor(t), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("PushSecret %s is still there (%v)", name, err)
	})
}

// TestPushSecretVault: a PushSecret keeps Vault in sync with its source
// Secret, writes nothing when nothing changed, never deletes for a missing
// source, and with deletionPolicy Delete deletes its keys when deleted.
func TestPushSecretVault(t *testing.T) {
	s := startSyncer(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	first, second := unique("ps-one-"), unique("ps-two-")
	src := putSource(t, ns, "src", map[string]string{"password": first, "token": "tok", "unmapped": "a"})
	newPushSecret(t, ns, "app", "src", deleteRemote, []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("password", "ci/app", "password"), match("token", "ci/token", "value"))

	ps := waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitVault(t, v, "ci/app", "password", first)
	waitVault(t, v, "ci/token", "value", "tok")
	if data, _ := vaultKV(t, v, "ci/app"); len(data) != 1 {
		t.Errorf("Vault's ci/app has %d fields, want only the pushed one", len(data))
	}
	st := ps.Status
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(st.DataHMAC) || st.RefreshTime == nil {
		t.Errorf("dataHMAC %q, refreshTime %v", st.DataHMAC, st.RefreshTime)
	}
	for key, field := range map[string]string{"ci/app#password": "password", "ci/token#value": "token"} {
		e := st.SyncedPushSecrets["SecretStore/vault"][key]
		if e.Result != "Pushed" || e.PushTime == nil || e.Match.SecretKey != field {
			t.Errorf("syncedPushSecrets[SecretStore/vault][%s] = %+v", key, e)
		}
	}
	if !hasPushFinalizer(ps) {
		t.Errorf("finalizers %v, want %s for deletionPolicy Delete", ps.Finalizers, configv1alpha1.PushSecretFinalizer)
	}
	ev := waitPushEvent(t, ns, "app", syncer.EventPushed, "Pushed Secret src (resourceVersion "+src.ResourceVersion)
	if ev.Type != corev1.EventTypeNormal || ev.Source.Component != "veil-syncer" || ev.FirstTimestamp.IsZero() {
		t.Errorf("Pushed event: %+v", ev)
	}

	// A change of the source is pushed.
	src = putSource(t, ns, "src", map[string]string{"password": second, "token": "tok", "unmapped": "a"})
	waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitVault(t, v, "ci/app", "password", second)

	// A change of the source that leaves the pushed data as it was: the
	// syncer records the new resourceVersion and creates no SecretPush, so
	// nothing reaches Vault.
	puts, pushes := veilMetricsSince(t), syncerMetricsSince(t, s)
	src = putSource(t, ns, "src", map[string]string{"password": second, "token": "tok", "unmapped": "b"})
	waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	if d := vaultCalls(puts, "kv-put"); d != 0 {
		t.Errorf("unchanged data wrote to Vault %v times", d)
	}
	if d := secretPushesCreated(pushes, pushAction); d != 0 {
		t.Errorf("unchanged data made %v SecretPushes", d)
	}

	// The source disappears: nothing is pushed, and nothing deleted.
	deletes := veilMetricsSince(t)
	if err := cluster.KubeClient.CoreV1().Secrets(ns).Delete(ctxFor(t), "src", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	gone := waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSourceNotFound, ""))
	if msg := readyMessage(gone); !strings.Contains(msg, "no remote key was deleted") {
		t.Errorf("message: %s", msg)
	}
	waitPushEvent(t, ns, "app", syncer.EventPushFailed, configv1alpha1.ReasonSourceNotFound)
	waitVault(t, v, "ci/app", "password", second)
	if d := vaultCalls(deletes, "kv-delete"); d != 0 {
		t.Errorf("a missing source deleted from Vault %v times", d)
	}
	src = putSource(t, ns, "src", map[string]string{"password": second, "token": "tok"})
	waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))

	// deletionPolicy Delete: deleting the PushSecret deletes its keys first.
	deletePushSecret(t, ns, "app")
	for _, key := range []string{"ci/app", "ci/token"} {
		if _, err := vaultKV(t, v, key); err == nil {
			t.Errorf("%s is still in Vault after the PushSecret was deleted", key)
		}
	}
	waitPushEvent(t, ns, "app", syncer.EventDeleted, "Deleted SecretStore/vault ci/app#password, SecretStore/vault ci/token#value")

	m, err := s.Metrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"veil_syncer_push_syncs_total", map[string]string{"result": "Pushed"}},
		{"veil_syncer_push_syncs_total", map[string]string{"result": "Unchanged"}},
		{"veil_syncer_push_syncs_total", map[string]string{"result": "Deleted"}},
		{"veil_syncer_push_syncs_total", map[string]string{"result": configv1alpha1.ReasonSourceNotFound}},
		{"veil_syncer_secretpushes_total", map[string]string{"action": "Push", "result": "Succeeded"}},
		{"veil_syncer_secretpushes_total", map[string]string{"action": "Delete", "result": "Succeeded"}},
		{"veil_syncer_push_remote_keys_total", map[string]string{"action": "Delete", "result": "Deleted"}},
		{"veil_syncer_push_sync_duration_seconds", nil},
	} {
		// This test's own syncer: its counters hold this test's work only.
		if m.Value(t, c.name, c.labels) < 1 {
			t.Errorf("no %s %v:\n%s", c.name, c.labels, grep(m.Raw, "veil_syncer_push"))
		}
	}
}

// TestPushSecretKeepsWhatIsNotItsOwn: IfNotExists never overwrites, and
// deletionPolicy None (the default) leaves the remote keys in place.
func TestPushSecretKeepsWhatIsNotItsOwn(t *testing.T) {
	startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	if _, err := v.PutKV(ctx, "secret", "ci/existing", map[string]any{"value": "someone else's"}); err != nil {
		t.Fatal(err)
	}
	src := putSource(t, ns, "src", map[string]string{"a": "mine", "b": "kept"})
	stores := []configv1alpha1.SecretStoreRef{storeRef("vault")}
	newPushSecret(t, ns, "once", "src", func(s *configv1alpha1.PushSecretSpec) {
		s.UpdatePolicy = configv1alpha1.PushSecretUpdatePolicyIfNotExists
	}, stores, match("a", "ci/existing", "value"), match("a", "ci/absent", "value"))
	newPushSecret(t, ns, "keep", "src", nil, stores, match("b", "ci/kept", "value"))

	once := waitPush(t, 30*time.Second, pushReady(ns, "once", configv1alpha1.ReasonSynced, src.ResourceVersion))
	if r := once.Status.SyncedPushSecrets["SecretStore/vault"]; r["ci/existing#value"].Result != "SkippedExists" || r["ci/absent#value"].Result != "Pushed" {
		t.Errorf("IfNotExists results: %+v", r)
	}
	waitVault(t, v, "ci/existing", "value", "someone else's")
	waitVault(t, v, "ci/absent", "value", "mine")

	keep := waitPush(t, 30*time.Second, pushReady(ns, "keep", configv1alpha1.ReasonSynced, src.ResourceVersion))
	if keep.Spec.DeletionPolicy != configv1alpha1.PushSecretDeletionPolicyNone || hasPushFinalizer(keep) {
		t.Errorf("deletionPolicy %q, finalizers %v: None is the default and needs no finalizer", keep.Spec.DeletionPolicy, keep.Finalizers)
	}
	deletes := veilMetricsSince(t)
	deletePushSecret(t, ns, "keep")
	deletePushSecret(t, ns, "once")
	waitVault(t, v, "ci/kept", "value", "kept")
	waitVault(t, v, "ci/absent", "value", "mine")
	if d := vaultCalls(deletes, "kv-delete"); d != 0 {
		t.Errorf("deletionPolicy None deleted from Vault %v times", d)
	}
}

// TestPushSecretRefresh: every refreshInterval the syncer pushes again, so
// a remote key deleted by someone else comes back; a refresh that finds
// the remote value as it should be writes nothing to Vault.
func TestPushSecretRefresh(t *testing.T) {
	s := startSyncer(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	src := putSource(t, ns, "src", map[string]string{"k": "refreshed"})
	newPushSecret(t, ns, "app", "src", func(s *configv1alpha1.PushSecretSpec) {
		s.RefreshInterval = &metav1.Duration{Duration: time.Second}
	}, []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("k", "ci/refresh", "value"))
	waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitVault(t, v, "ci/refresh", "value", "refreshed")

	puts, pushes := veilMetricsSince(t), syncerMetricsSince(t, s)
	refreshes := func() float64 {
		return secretPushesCreated(pushes, map[string]string{"action": "Push", "result": "Succeeded"})
	}
	eventually(t, func() error {
		if n := refreshes(); n < 2 {
			return fmt.Errorf("%v refreshes so far", n)
		}
		return nil
	})
	if d := vaultCalls(puts, "kv-put"); d != 0 {
		t.Errorf("refreshes of unchanged data wrote to Vault %v times", d)
	}

	if err := v.Root.KVv2("secret").DeleteMetadata(ctxFor(t), "ci/refresh"); err != nil {
		t.Fatal(err)
	}
	waitVault(t, v, "ci/refresh", "value", "refreshed")
	// The same Event again: kube's event correlator counts it.
	eventually(t, func() error {
		if e := waitPushEvent(t, ns, "app", syncer.EventPushed, "to SecretStore/vault ci/refresh#value"); e.Count < 2 {
			return fmt.Errorf("the Pushed Event was recorded %d times, want the first push and the repair", e.Count)
		}
		return nil
	})
}

// TestPushSecretAWS pushes to Secrets Manager and Parameter Store at once.
func TestPushSecretAWS(t *testing.T) {
	s := startSyncer(t)
	ctx := ctxFor(t)
	f := newAWSFixture(t)
	grantPushSource(t, f.ns)
	createAWSStore(t, f.ns, "sm", f.spec(configv1alpha1.AWSServiceSecretsManager, "aws-keys"))
	createAWSStore(t, f.ns, "ps", f.spec(configv1alpha1.AWSServiceParameterStore, "aws-keys"))
	first, second := unique("ps-aws-one-"), unique("ps-aws-two-")
	src := putSource(t, f.ns, "src", map[string]string{"password": first})
	newPushSecret(t, f.ns, "app", "src", deleteRemote, []configv1alpha1.SecretStoreRef{storeRef("sm"), storeRef("ps")}, match("password", "ci-app", ""))

	readBoth := func(want string) {
		t.Helper()
		eventually(t, func() error {
			sv, err := f.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("ci-app")})
			if err != nil || aws.ToString(sv.SecretString) != want {
				return fmt.Errorf("Secrets Manager holds another value (%v)", err)
			}
			pv, err := f.ps.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("ci-app"), WithDecryption: aws.Bool(true)})
			if err != nil || aws.ToString(pv.Parameter.Value) != want {
				return fmt.Errorf("Parameter Store holds another value (%v)", err)
			}
			return nil
		})
	}
	ps := waitPush(t, 30*time.Second, pushReady(f.ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	readBoth(first)
	for _, store := range []string{"SecretStore/sm", "SecretStore/ps"} {
		if e := ps.Status.SyncedPushSecrets[store]["ci-app"]; e.Result != "Pushed" || e.PushTime == nil {
			t.Errorf("syncedPushSecrets[%s] = %+v", store, ps.Status.SyncedPushSecrets[store])
		}
	}

	src = putSource(t, f.ns, "src", map[string]string{"password": second})
	waitPush(t, 30*time.Second, pushReady(f.ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	readBoth(second)

	since := awsCallsSince(t, "PutSecretValue", "CreateSecret", "PutParameter")
	pushes := syncerMetricsSince(t, s)
	unchanged := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: f.ns, Labels: map[string]string{"touched": "yes"}},
		Data: map[string][]byte{"password": []byte(second)}}
	updated, err := cluster.KubeClient.CoreV1().Secrets(f.ns).Update(ctx, unchanged, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPush(t, 30*time.Second, pushReady(f.ns, "app", configv1alpha1.ReasonSynced, updated.ResourceVersion))
	for op, n := range since() {
		if n != 0 {
			t.Errorf("unchanged data called %s %v times", op, n)
		}
	}
	if d := secretPushesCreated(pushes, pushAction); d != 0 {
		t.Errorf("unchanged data made %v SecretPushes", d)
	}

	deletePushSecret(t, f.ns, "app")
	if _, err := f.ps.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("ci-app")}); err == nil {
		t.Error("the parameter survived the PushSecret's deletion")
	}
	if _, err := f.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("ci-app")}); err == nil {
		t.Error("the secret can still be read after the PushSecret's deletion")
	}
}

// TestPushSecretReadOnlyStore: veil-apiserver refuses the push with 403,
// and the status says why.
func TestPushSecretReadOnlyStore(t *testing.T) {
	startSyncer(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "frozen", true)
	putSource(t, ns, "src", map[string]string{"k": "v"})
	puts := veilMetricsSince(t)
	newPushSecret(t, ns, "app", "src", nil, []configv1alpha1.SecretStoreRef{storeRef("frozen")}, match("k", "ci/frozen", "value"))

	ps := waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonPushRefused, ""))
	msg := readyMessage(ps)
	for _, says := range []string{"is forbidden", "SecretStore " + ns + "/frozen is read-only (spec.readOnly)", "nothing was pushed"} {
		if !strings.Contains(msg, says) {
			t.Errorf("message %q does not say %q", msg, says)
		}
	}
	if c := apimeta.FindStatusCondition(ps.Status.Conditions, "Ready"); c.Status != metav1.ConditionFalse {
		t.Errorf("Ready = %s", c.Status)
	}
	waitPushEvent(t, ns, "app", syncer.EventPushFailed, "is read-only")
	if d := vaultCalls(puts, "kv-put"); d != 0 {
		t.Errorf("%v writes reached Vault through a read-only store", d)
	}
}

// TestPushSecretOutage: with Vault down, the push fails and is retried;
// once Vault is back, it succeeds; nothing is deleted meanwhile.
func TestPushSecretOutage(t *testing.T) {
	s := startSyncer(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	src := putSource(t, ns, "src", map[string]string{"k": "before"})
	newPushSecret(t, ns, "app", "src", deleteRemote, []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("k", "ci/outage", "value"))
	waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitVault(t, v, "ci/outage", "value", "before")

	deletes, pushes := veilMetricsSince(t), syncerMetricsSince(t, s)
	failed := func() float64 {
		return secretPushesCreated(pushes, map[string]string{"action": "Push", "result": "Failed"})
	}
	v.Stop()
	src = putSource(t, ns, "src", map[string]string{"k": "during"})
	ps := waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonPushFailed, ""))
	if msg := readyMessage(ps); !strings.Contains(msg, "SecretStore/vault ci/outage#value: Unavailable: ") {
		t.Errorf("message: %s", msg)
	}
	if e := ps.Status.SyncedPushSecrets["SecretStore/vault"]["ci/outage#value"]; e.Result != "Failed" || e.PushTime == nil {
		t.Errorf("syncedPushSecrets entry %+v: Failed, with the time of the last successful push", e)
	}
	// Retried with backoff.
	eventually(t, func() error {
		if n := failed(); n < 2 {
			return fmt.Errorf("%v failed SecretPushes, want retries", n)
		}
		return nil
	})
	waitPushEvent(t, ns, "app", syncer.EventPushFailed, "Unavailable")

	if err := v.Restart(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	// The next retry may be a backoff of tens of seconds away.
	waitPush(t, 2*time.Minute, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitVault(t, v, "ci/outage", "value", "during")
	if old, err := v.Root.KVv2("secret").GetVersion(ctxFor(t), "ci/outage", 1); err != nil || old.Data["value"] != "before" {
		t.Errorf("version 1 of ci/outage is gone (%v)", err)
	}
	if d := vaultCalls(deletes, "kv-delete"); d != 0 {
		t.Errorf("an outage led to %v deletes", d)
	}
	deletePushSecret(t, ns, "app")
	if _, err := vaultKV(t, v, "ci/outage"); err == nil {
		t.Error("ci/outage survived the PushSecret's deletion")
	}
}

// TestPushSecretAuthorization: the syncer reads source Secrets and creates
// SecretPushes only in namespaces that granted it, with the ClusterRole or
// with a Role naming the source Secret.
func TestPushSecretAuthorization(t *testing.T) {
	startSyncer(t)
	v := startVault(t)
	bound, narrow, unbound := newNamespace(t, nil), newNamespace(t, nil), newNamespace(t, nil)
	grantPushSource(t, bound)
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "veil-syncer-push-source", Namespace: narrow},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"src"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"externalsecrets.veil.dev"}, Resources: []string{"secretpushes"}, Verbs: []string{"create"}},
		},
	}
	if _, err := cluster.KubeClient.RbacV1().Roles(narrow).Create(ctxFor(t), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.KubeClient.RbacV1().RoleBindings(narrow).Create(ctxFor(t), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "veil-syncer-push-source", Namespace: narrow},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: harness.SyncerServiceAccount, Namespace: harness.VeilNamespace}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srcs := map[string]*corev1.Secret{}
	for _, ns := range []string{bound, narrow, unbound} {
		vaultWriterStore(t, v, ns, "vault", false)
		srcs[ns] = putSource(t, ns, "src", map[string]string{"k": "value-of-" + ns})
		newPushSecret(t, ns, "app", "src", nil, []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("k", "ci/"+ns, "value"))
	}
	canI := func(ns string, args ...string) string {
		t.Helper()
		out, _, err := cluster.RunKubectl(ctxFor(t), "", nil, append([]string{"auth", "can-i", "--as=" + syncerSA, "-n", ns}, args...)...)
		answer := strings.TrimSpace(string(out))
		if answer != "yes" && answer != "no" {
			t.Fatalf("kubectl auth can-i %v -n %s: %q (%v)", args, ns, answer, err)
		}
		return answer
	}

	ps := waitPush(t, 30*time.Second, pushReady(unbound, "app", configv1alpha1.ReasonNotPermitted, ""))
	msg := readyMessage(ps)
	for _, says := range []string{"may not read Secret src in namespace " + unbound, "bind the ClusterRole veil-syncer:push-source", "nothing was pushed"} {
		if !strings.Contains(msg, says) {
			t.Errorf("message %q does not say %q", msg, says)
		}
	}
	if _, err := vaultKV(t, v, "ci/"+unbound); err == nil {
		t.Errorf("a namespace that granted nothing got its Secret pushed")
	}
	// The syncer watches only where it may act: in the namespace that
	// granted nothing it tried the one get its sync needed, and never
	// listed or watched (which it used to retry for ever).
	if verbs := syncerSecretRequests(t, unbound); !allGets(verbs) {
		t.Errorf("the syncer's requests for Secrets in %s: %v, want only gets", unbound, verbs)
	}
	for args, want := range map[string]string{"create secretpushes.externalsecrets.veil.dev": "no", "get secrets/src": "no", "list secrets": "no", "watch secrets": "no"} {
		if got := canI(unbound, strings.Fields(args)...); got != want {
			t.Errorf("in %s without the RoleBinding: can-i %s = %s, want %s", unbound, args, got, want)
		}
	}

	waitPush(t, 30*time.Second, pushReady(bound, "app", configv1alpha1.ReasonSynced, srcs[bound].ResourceVersion))
	waitVault(t, v, "ci/"+bound, "value", "value-of-"+bound)
	for _, args := range []string{"create secretpushes.externalsecrets.veil.dev", "get secrets", "watch secrets"} {
		if got := canI(bound, strings.Fields(args)...); got != "yes" {
			t.Errorf("in %s with the RoleBinding: can-i %s = %s, want yes", bound, args, got)
		}
	}

	// The Role naming just the source is enough: get, and a watch by name.
	waitPush(t, 30*time.Second, pushReady(narrow, "app", configv1alpha1.ReasonSynced, srcs[narrow].ResourceVersion))
	changed := putSource(t, narrow, "src", map[string]string{"k": "changed"})
	waitPush(t, 30*time.Second, pushReady(narrow, "app", configv1alpha1.ReasonSynced, changed.ResourceVersion))
	waitVault(t, v, "ci/"+narrow, "value", "changed")
	for args, want := range map[string]string{"get secrets/src": "yes", "get secrets/vault-token": "no", "list secrets": "no"} {
		if got := canI(narrow, strings.Fields(args)...); got != want {
			t.Errorf("in %s with the narrow Role: can-i %s = %s, want %s", narrow, args, got, want)
		}
	}

	// Its token may patch a PushSecret's finalizers, but the admission policy
	// veil-syncer-pushsecrets refuses any change of where it pushes.
	_, stderr, err := cluster.RunKubectl(ctxFor(t), "", nil, "patch", "pushsecret", "app", "-n", bound, "--as="+syncerSA,
		"--type=merge", "-p", `{"spec":{"data":[{"match":{"secretKey":"k","remoteRef":{"remoteKey":"attacker/chosen"}}}]}}`)
	if err == nil || !strings.Contains(string(stderr), "may change only the finalizers of a PushSecret") {
		t.Errorf("the syncer's identity changed a PushSecret's spec: %v %s", err, stderr)
	}

	// Granting later is noticed without touching the PushSecret.
	grantPushSource(t, unbound)
	waitPush(t, 2*time.Minute, pushReady(unbound, "app", configv1alpha1.ReasonSynced, srcs[unbound].ResourceVersion))
	waitVault(t, v, "ci/"+unbound, "value", "value-of-"+unbound)
}

// TestPushSecretCanary pushes a unique value and searches the cluster for
// it: it must be in Vault and in the source Secret, and nowhere else — not
// in a log (the syncer's, veil-apiserver's, kube-apiserver's, the audit
// logs), an Event, the PushSecret's status or the syncer's metrics.
func TestPushSecretCanary(t *testing.T) {
	s := startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	vaultWriterStore(t, v, ns, "frozen", true)
	canary := unique("veil-canary-pushsecret-")
	src := putSource(t, ns, "src", map[string]string{"secret": canary})
	newPushSecret(t, ns, "app", "src", deleteRemote, []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("secret", "ci/canary", "value"))
	// A failure path too: a refused push's status and Event.
	newPushSecret(t, ns, "refused", "src", nil, []configv1alpha1.SecretStoreRef{storeRef("frozen")}, match("secret", "ci/refused", "value"))

	waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitPush(t, 30*time.Second, pushReady(ns, "refused", configv1alpha1.ReasonPushRefused, ""))
	waitPushEvent(t, ns, "app", syncer.EventPushed, "Pushed Secret src")
	waitPushEvent(t, ns, "refused", syncer.EventPushFailed, configv1alpha1.ReasonPushRefused)
	waitVault(t, v, "ci/canary", "value", canary)

	out := kubectl(t, "", "get", "pushsecrets,events", "-n", ns, "-o", "yaml")
	if strings.Contains(out, canary) || strings.Contains(out, b64(canary)) {
		t.Error("the PushSecrets or the Events carry the value")
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
	if _, ok := sightings.Files[s.LogFile]; !ok {
		t.Errorf("the syncer's log %s was not searched", s.LogFile)
	}
	// Leave Vault clean: the namespace's deletion would otherwise wait for
	// the finalizer after this test's syncer is gone.
	deletePushSecret(t, ns, "app")
	if _, err := vaultKV(t, v, "ci/canary"); err == nil {
		t.Error("ci/canary survived the PushSecret's deletion")
	}
}

// TestPushSecretNamespaceDeletionNeverHangs: deleting a namespace deletes
// its grant to push (the RoleBinding) as well as its PushSecrets, often
// the grant first. The syncer then may not create the SecretPush that
// would delete the remote keys, and waiting cannot change that: it reports
// why and releases the finalizer, so the namespace is not held in
// Terminating. The remote key stays (nothing is deleted without a grant).
func TestPushSecretNamespaceDeletionNeverHangs(t *testing.T) {
	startSyncer(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	password := unique("ns-gone-")
	src := putSource(t, ns, "src", map[string]string{"password": password})
	newPushSecret(t, ns, "app", "src", deleteRemote, []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("password", "ci/ns-gone", "password"))
	waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitVault(t, v, "ci/ns-gone", "password", password)

	ctx := ctxFor(t)
	if err := cluster.KubeClient.RbacV1().RoleBindings(ns).Delete(ctx, "veil-syncer-push-source", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleteNamespaceAndWait(t, ns)
	// The remote key was not the syncer's to delete without a grant.
	waitVault(t, v, "ci/ns-gone", "password", password)
}

// syncerSecretRequests lists the verbs of the syncer's requests for
// Secrets in ns, from kube-apiserver's audit log.
func syncerSecretRequests(t *testing.T, ns string) []string {
	t.Helper()
	f, err := os.Open(cluster.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var verbs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			Stage     string                    `json:"stage"`
			Verb      string                    `json:"verb"`
			User      struct{ Username string } `json:"user"`
			ObjectRef *struct {
				Resource, Namespace string
			} `json:"objectRef"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.ObjectRef == nil || e.Stage != "ResponseComplete" && e.Stage != "ResponseStarted" {
			continue
		}
		if e.User.Username == syncerSA && e.ObjectRef.Resource == "secrets" && e.ObjectRef.Namespace == ns {
			verbs = append(verbs, e.Verb)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return verbs
}

func allGets(verbs []string) bool {
	for _, v := range verbs {
		if v != "get" {
			return false
		}
	}
	return len(verbs) > 0
}
