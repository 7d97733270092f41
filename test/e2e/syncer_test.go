package e2e

import (
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/syncer"
	"github.com/veil-dev/veil/test/harness"
)

const syncerSA = "system:serviceaccount:" + harness.VeilNamespace + ":" + harness.SyncerServiceAccount

// syncerArgs shorten leader election so a test's syncer takes over from
// the previous test's, or from a stopped leader, in seconds.
var syncerArgs = []string{
	"--leader-elect-lease-duration=4s",
	"--leader-elect-renew-deadline=3s",
	"--leader-elect-retry-period=500ms",
}

// startSyncer starts a veil-syncer for one test, stopped when it ends, and
// waits until it leads.
func startSyncer(t *testing.T) *harness.Syncer {
	t.Helper()
	s := startSyncerNamed(t, unique("veil-syncer-"))
	waitLeader(t, s.Name)
	return s
}

func startSyncerNamed(t *testing.T, name string) *harness.Syncer {
	t.Helper()
	s, err := cluster.StartSyncer(ctxFor(t), name, syncerArgs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// leaseHolder is who holds the syncer's Lease.
func leaseHolder(t *testing.T) string {
	t.Helper()
	l, err := cluster.KubeClient.CoordinationV1().Leases(harness.VeilNamespace).Get(ctxFor(t), syncer.LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(l.Spec.HolderIdentity, "")
}

func waitLeader(t *testing.T, identity string) {
	t.Helper()
	eventually(t, func() error {
		if h := leaseHolder(t); h != identity {
			return fmt.Errorf("the Lease is held by %q, want %q", h, identity)
		}
		return nil
	})
}

// newTargetES creates an ExternalSecret with a target, refreshed every second.
func newTargetES(t *testing.T, ns, name string, target configv1alpha1.ExternalSecretTarget, data ...configv1alpha1.ExternalSecretData) *configv1alpha1.ExternalSecret {
	t.Helper()
	es := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef:  new(storeRef("store")),
			RefreshInterval: &metav1.Duration{Duration: time.Second},
			Data:            data,
			Target:          &target,
		},
	}
	out, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), es, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// waitReady waits until the syncer reports reason for the current
// generation, and returns the ExternalSecret.
func waitReady(t *testing.T, ns, name, reason string) *configv1alpha1.ExternalSecret {
	t.Helper()
	var es *configv1alpha1.ExternalSecret
	eventually(t, func() error {
		var err error
		if es, err = cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), name, metav1.GetOptions{}); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(es.Status.Conditions, "Ready")
		if c == nil || c.ObservedGeneration != es.Generation || c.Reason != reason {
			return fmt.Errorf("Ready condition %+v, want reason %s for generation %d", c, reason, es.Generation)
		}
		return nil
	})
	return es
}

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	s, err := cluster.KubeClient.CoreV1().Secrets(ns).Get(ctxFor(t), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitSecret(t *testing.T, ns, name string, check func(*corev1.Secret) error) *corev1.Secret {
	t.Helper()
	var s *corev1.Secret
	eventually(t, func() error {
		var err error
		if s, err = cluster.KubeClient.CoreV1().Secrets(ns).Get(ctxFor(t), name, metav1.GetOptions{}); err != nil {
			return err
		}
		return check(s)
	})
	return s
}

func hasData(want map[string]string) func(*corev1.Secret) error {
	return func(s *corev1.Secret) error {
		got := map[string]string{}
		for k, v := range s.Data {
			got[k] = string(v)
		}
		if !maps.Equal(got, want) {
			// Keys only: the data may be a canary.
			return fmt.Errorf("Secret %s has keys %v, not the expected data", s.Name, slices.Sorted(maps.Keys(got)))
		}
		return nil
	}
}

// setStoreData replaces the values of the namespace's fake store: the
// remote change a refresh must pick up.
func setStoreData(t *testing.T, ns string, data ...configv1alpha1.FakeProviderData) {
	t.Helper()
	s, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Get(ctxFor(t), "store", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Provider.Fake.Data = data
	if _, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Update(ctxFor(t), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// events lists the Events of an ExternalSecret with a reason.
func events(t *testing.T, ns, name, reason string) []corev1.Event {
	t.Helper()
	list, err := cluster.KubeClient.CoreV1().Events(ns).List(ctxFor(t), metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": name, "involvedObject.kind": "ExternalSecret", "reason": reason}.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func waitEvent(t *testing.T, ns, name, reason, contains string) corev1.Event {
	t.Helper()
	var found corev1.Event
	eventually(t, func() error {
		for _, e := range events(t, ns, name, reason) {
			if strings.Contains(e.Message, contains) {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s Event for %s containing %q", reason, name, contains)
	})
	return found
}

func TestSyncerMaterialisesASecret(t *testing.T) {
	s := startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store",
		configv1alpha1.FakeProviderData{Key: "db/credentials", Value: `{"username":"app","password":"pw-1"}`},
		configv1alpha1.FakeProviderData{Key: "api/token", Value: "token-1"})
	es := newTargetES(t, ns, "db", configv1alpha1.ExternalSecretTarget{Name: "db-secret"},
		dataRef("username", "db/credentials", "username"),
		dataRef("password", "db/credentials", "password"),
		dataRef("token", "api/token", ""))

	got := waitReady(t, ns, "db", configv1alpha1.ReasonSynced)
	secret := waitSecret(t, ns, "db-secret", hasData(map[string]string{"username": "app", "password": "pw-1", "token": "token-1"}))

	if secret.Labels[configv1alpha1.ManagedByLabel] != "veil-syncer" || secret.Annotations[configv1alpha1.ExternalSecretAnnotation] != "db" {
		t.Errorf("Secret marks: labels %v annotations %v", secret.Labels, secret.Annotations)
	}
	if secret.Type != corev1.SecretTypeOpaque {
		t.Errorf("type = %s, want Opaque", secret.Type)
	}
	// creationPolicy defaults to Owner: the ExternalSecret controls the Secret.
	if len(secret.OwnerReferences) != 1 || secret.OwnerReferences[0].UID != es.UID || !ptr.Deref(secret.OwnerReferences[0].Controller, false) ||
		secret.OwnerReferences[0].Kind != "ExternalSecret" {
		t.Errorf("owner references = %+v, want the ExternalSecret as controller", secret.OwnerReferences)
	}
	st := got.Status
	if st.TargetUID != secret.UID {
		t.Errorf("status.targetUID = %s, want the Secret's %s", st.TargetUID, secret.UID)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(st.DataHMAC) || secret.Annotations[configv1alpha1.DataHMACAnnotation] != st.DataHMAC {
		t.Errorf("status.dataHMAC %q and the Secret's annotation %q should be the same HMAC-SHA256", st.DataHMAC, secret.Annotations[configv1alpha1.DataHMACAnnotation])
	}
	// The same data, materialised by an ExternalSecret of the same name in
	// another namespace, has another HMAC: status.dataHMAC, readable with
	// view, cannot confirm a guess at another namespace's values.
	other := newNamespace(t, nil)
	createFakeStore(t, other, "store",
		configv1alpha1.FakeProviderData{Key: "db/credentials", Value: `{"username":"app","password":"pw-1"}`},
		configv1alpha1.FakeProviderData{Key: "api/token", Value: "token-1"})
	newTargetES(t, other, "db", configv1alpha1.ExternalSecretTarget{Name: "db-secret"},
		dataRef("username", "db/credentials", "username"),
		dataRef("password", "db/credentials", "password"),
		dataRef("token", "api/token", ""))
	if h := waitReady(t, other, "db", configv1alpha1.ReasonSynced).Status.DataHMAC; h == "" || h == st.DataHMAC {
		t.Errorf("equal data in namespaces %s and %s: dataHMAC %q and %q, want two different HMACs", ns, other, st.DataHMAC, h)
	}
	if st.RefreshTime == nil || st.SyncedResourceVersion != fmt.Sprintf("%d-%s", got.Generation, secret.ResourceVersion) {
		t.Errorf("refreshTime %v, syncedResourceVersion %q (Secret resourceVersion %s)", st.RefreshTime, st.SyncedResourceVersion, secret.ResourceVersion)
	}
	// Every write is recorded with who wrote it, in the Secret's managedFields.
	managers := map[string]bool{}
	for _, f := range secret.ManagedFields {
		managers[f.Manager] = true
	}
	if !managers["veil-syncer"] {
		t.Errorf("managedFields name %v, want veil-syncer", managers)
	}
	ev := waitEvent(t, ns, "db", syncer.EventSynced, "Created Secret db-secret")
	if ev.Type != corev1.EventTypeNormal || ev.Source.Component != "veil-syncer" || ev.FirstTimestamp.IsZero() {
		t.Errorf("Synced event: %+v", ev)
	}

	// Refreshes (every second) leave an unchanged Secret alone: they are
	// test-only patches, which kube-apiserver does not write.
	before := waitReady(t, ns, "db", configv1alpha1.ReasonSynced).Status.RefreshTime
	eventually(t, func() error {
		if now := waitReady(t, ns, "db", configv1alpha1.ReasonSynced).Status.RefreshTime; !now.After(before.Time) {
			return fmt.Errorf("no refresh since %v", before)
		}
		return nil
	})
	if again := getSecret(t, ns, "db-secret"); again.ResourceVersion != secret.ResourceVersion {
		t.Errorf("a refresh rewrote an unchanged Secret: resourceVersion %s -> %s", secret.ResourceVersion, again.ResourceVersion)
	}

	// Someone edits the materialised data: the next refresh's test of the
	// data fails, the syncer writes it again and records that it did.
	if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Patch(ctxFor(t), "db-secret", types.MergePatchType,
		[]byte(`{"data":{"token":"dGFtcGVyZWQ="}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSecret(t, ns, "db-secret", hasData(map[string]string{"username": "app", "password": "pw-1", "token": "token-1"}))
	if ev := waitEvent(t, ns, "db", syncer.EventUpdated, "was changed outside veil-syncer"); ev.Type != corev1.EventTypeWarning {
		t.Errorf("the repair is recorded as %s, want Warning", ev.Type)
	}

	// This test's own syncer: its counters hold this test's work only. The
	// repair's Event is recorded inside its sync, and the sync is counted
	// once it returns, so the counters are waited for.
	var m *harness.Metrics
	eventually(t, func() error {
		var err error
		if m, err = s.Metrics(ctxFor(t)); err != nil {
			return err
		}
		if m.Sum("veil_syncer_syncs_total", map[string]string{"result": "Created"}) < 1 ||
			m.Sum("veil_syncer_syncs_total", map[string]string{"result": "Refreshed"}) < 1 ||
			m.Sum("veil_syncer_syncs_total", map[string]string{"result": "Repaired"}) < 1 ||
			m.Sum("veil_syncer_time_to_first_sync_seconds", nil) < 1 ||
			m.Sum("veil_syncer_sync_duration_seconds", nil) < 2 {
			return fmt.Errorf("metrics do not show the syncs:\n%s", grep(m.Raw, "veil_syncer_"))
		}
		return nil
	})
	for _, p := range []string{"urgent", "refresh"} {
		if !strings.Contains(m.Raw, `veil_syncer_queue_depth{priority="`+p+`"}`) {
			t.Errorf("no queue depth for priority %s", p)
		}
	}
}

func grep(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestSyncerUpdatesOnRemoteChange(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v1"})
	newTargetES(t, ns, "app", configv1alpha1.ExternalSecretTarget{}, dataRef("value", "k", ""))
	waitSecret(t, ns, "app", hasData(map[string]string{"value": "v1"}))
	first := waitReady(t, ns, "app", configv1alpha1.ReasonSynced).Status.DataHMAC

	setStoreData(t, ns, configv1alpha1.FakeProviderData{Key: "k", Value: "v2"})
	waitSecret(t, ns, "app", hasData(map[string]string{"value": "v2"}))
	eventually(t, func() error {
		if h := waitReady(t, ns, "app", configv1alpha1.ReasonSynced).Status.DataHMAC; h == first {
			return fmt.Errorf("status.dataHMAC has not changed")
		}
		return nil
	})
	waitEvent(t, ns, "app", syncer.EventUpdated, "Wrote new data to Secret app")
}

func TestSyncerCreationPolicies(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "remote"})

	t.Run("Owner: deleting the ExternalSecret garbage-collects the Secret", func(t *testing.T) {
		newTargetES(t, ns, "owned", configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyOwner}, dataRef("value", "k", ""))
		waitSecret(t, ns, "owned", hasData(map[string]string{"value": "remote"}))
		if err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Delete(ctxFor(t), "owned", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// kube-controller-manager's garbage collector deletes it.
		eventually(t, func() error {
			_, err := cluster.KubeClient.CoreV1().Secrets(ns).Get(ctxFor(t), "owned", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("Secret still exists (%v)", err)
		})
	})

	t.Run("Orphan: the Secret outlives the ExternalSecret", func(t *testing.T) {
		es := newTargetES(t, ns, "orphan", configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyOrphan}, dataRef("value", "k", ""))
		s := waitSecret(t, ns, "orphan", hasData(map[string]string{"value": "remote"}))
		if len(s.OwnerReferences) != 0 {
			t.Errorf("owner references = %+v, want none", s.OwnerReferences)
		}
		waitReady(t, ns, "orphan", configv1alpha1.ReasonSynced)
		// A probe Secret that does name the ExternalSecret as its owner:
		// once the garbage collector has deleted it, the collector has
		// handled the ExternalSecret's deletion, and whatever it would have
		// done to the orphaned Secret is done.
		if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Create(ctxFor(t), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Name: "orphan-probe",
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: configv1alpha1.SchemeGroupVersion.String(), Kind: "ExternalSecret", Name: es.Name, UID: es.UID,
			}},
		}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Delete(ctxFor(t), "orphan", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() error {
			_, err := cluster.KubeClient.CoreV1().Secrets(ns).Get(ctxFor(t), "orphan-probe", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("the probe Secret owned by the deleted ExternalSecret still exists (%v)", err)
		})
		if after := getSecret(t, ns, "orphan"); after.ResourceVersion != s.ResourceVersion {
			t.Errorf("the orphaned Secret changed: resourceVersion %s -> %s", s.ResourceVersion, after.ResourceVersion)
		}
	})

	t.Run("Merge adds keys to a Secret that opted in and keeps the others", func(t *testing.T) {
		for name, data := range map[string]map[string][]byte{"merge-into": {"other": []byte("kept")}, "merge-into-empty": nil} {
			if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Create(ctxFor(t), &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{configv1alpha1.MergeFromAnnotation: name}},
				Data:       data,
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			newTargetES(t, ns, name, configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyMerge}, dataRef("value", "k", ""))
		}
		s := waitSecret(t, ns, "merge-into", hasData(map[string]string{"other": "kept", "value": "remote"}))
		waitSecret(t, ns, "merge-into-empty", hasData(map[string]string{"value": "remote"}))
		if _, ok := s.Labels[configv1alpha1.ManagedByLabel]; ok || len(s.OwnerReferences) != 0 {
			t.Errorf("a merged-into Secret stays its owner's: labels %v, owner references %v", s.Labels, s.OwnerReferences)
		}
		waitReady(t, ns, "merge-into", configv1alpha1.ReasonSynced)
	})

	t.Run("Merge refuses a Secret that has not opted in", func(t *testing.T) {
		user, err := cluster.KubeClient.CoreV1().Secrets(ns).Create(ctxFor(t), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "not-opted-in", Annotations: map[string]string{configv1alpha1.MergeFromAnnotation: "someone-else"}},
			Data:       map[string][]byte{"other": []byte("users")},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		newTargetES(t, ns, "not-opted-in", configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyMerge}, dataRef("value", "k", ""))
		es := waitReady(t, ns, "not-opted-in", configv1alpha1.ReasonTargetConflict)
		if msg := apimeta.FindStatusCondition(es.Status.Conditions, "Ready").Message; !strings.Contains(msg, configv1alpha1.MergeFromAnnotation+"=not-opted-in") {
			t.Errorf("message does not say how to opt in: %s", msg)
		}
		assertUnchanged(t, "not-opted-in", user)
	})

	t.Run("Merge without a Secret writes nothing", func(t *testing.T) {
		newTargetES(t, ns, "merge-missing", configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyMerge}, dataRef("value", "k", ""))
		waitReady(t, ns, "merge-missing", configv1alpha1.ReasonTargetMissing)
		if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Get(ctxFor(t), "merge-missing", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Merge created a Secret (%v)", err)
		}
	})

	t.Run("None writes nothing", func(t *testing.T) {
		newTargetES(t, ns, "none", configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyNone}, dataRef("value", "k", ""))
		waitReady(t, ns, "none", configv1alpha1.ReasonCreationPolicyNone)
		if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Get(ctxFor(t), "none", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("None created a Secret (%v)", err)
		}
	})
}

// assertUnchanged checks that a Secret is byte for byte what it was after
// the syncer has tried the failing ExternalSecret es twice more. Every
// failed attempt records a SyncError Event (identical ones are counted on
// one Event), so the count moving is evidence the syncer looked again and
// left the Secret alone, not merely that time passed.
func assertUnchanged(t *testing.T, es string, before *corev1.Secret) {
	t.Helper()
	start := syncErrors(t, before.Namespace, es)
	eventually(t, func() error {
		if n := syncErrors(t, before.Namespace, es); n < start+2 {
			return fmt.Errorf("%d failed syncs of %s recorded since the check began, want 2", n-start, es)
		}
		return nil
	})
	assertSameSecret(t, before)
}

// assertSameSecret checks that a Secret is byte for byte what it was.
func assertSameSecret(t *testing.T, before *corev1.Secret) {
	t.Helper()
	after := getSecret(t, before.Namespace, before.Name)
	if after.ResourceVersion != before.ResourceVersion || !maps.EqualFunc(after.Data, before.Data, func(a, b []byte) bool { return string(a) == string(b) }) ||
		!maps.Equal(after.Labels, before.Labels) || !maps.Equal(after.Annotations, before.Annotations) || len(after.OwnerReferences) != len(before.OwnerReferences) {
		t.Errorf("Secret %s changed: resourceVersion %s -> %s, labels %v -> %v, annotations %v -> %v",
			before.Name, before.ResourceVersion, after.ResourceVersion, before.Labels, after.Labels, before.Annotations, after.Annotations)
	}
}

// syncErrors is how many failed syncs of the ExternalSecret name its
// SyncError Events record.
func syncErrors(t *testing.T, ns, name string) int32 {
	t.Helper()
	var n int32
	for _, e := range events(t, ns, name, syncer.EventSyncError) {
		n += max(e.Count, 1)
	}
	return n
}

func TestSyncerRefusesASecretItDoesNotManage(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "remote"})
	users := map[string]*corev1.Secret{
		// Someone's own Secret.
		"users": {ObjectMeta: metav1.ObjectMeta{Name: "users"}, Data: map[string][]byte{"password": []byte("the user's")}},
		// A Secret Veil manages for another ExternalSecret.
		"others": {ObjectMeta: metav1.ObjectMeta{Name: "others",
			Labels:      map[string]string{configv1alpha1.ManagedByLabel: "veil-syncer"},
			Annotations: map[string]string{configv1alpha1.ExternalSecretAnnotation: "another"}}, Data: map[string][]byte{"value": []byte("another's")}},
	}
	for name, s := range users {
		created, err := cluster.KubeClient.CoreV1().Secrets(ns).Create(ctxFor(t), s, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		users[name] = created
		newTargetES(t, ns, "es-"+name, configv1alpha1.ExternalSecretTarget{Name: name}, dataRef("value", "k", ""))
	}
	for name, before := range users {
		es := waitReady(t, ns, "es-"+name, configv1alpha1.ReasonTargetConflict)
		c := apimeta.FindStatusCondition(es.Status.Conditions, "Ready")
		if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "Secret "+name+" exists and was not created by veil-syncer for this ExternalSecret") {
			t.Errorf("Ready = %s: %s", c.Status, c.Message)
		}
		waitEvent(t, ns, "es-"+name, syncer.EventSyncError, configv1alpha1.ReasonTargetConflict)
		assertUnchanged(t, "es-"+name, before)
	}
}

func TestSyncerTemplate(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "db", Value: `{"user":"app","pass":"pw-tmpl"}`})
	newTargetES(t, ns, "db", configv1alpha1.ExternalSecretTarget{
		Template: &configv1alpha1.ExternalSecretTemplate{
			Type: corev1.SecretTypeBasicAuth,
			Metadata: configv1alpha1.ExternalSecretTemplateMetadata{
				Labels:      map[string]string{"team": "payments"},
				Annotations: map[string]string{"example.com/owner": "db-team"},
			},
			Data: map[string]string{
				"username": "{{ .user | upper }}",
				"password": "{{ .pass }}",
				"dsn":      "postgres://{{ .user }}:{{ .pass | b64enc }}@db/app",
			},
		},
	}, dataRef("user", "db", "user"), dataRef("pass", "db", "pass"))

	s := waitSecret(t, ns, "db", hasData(map[string]string{
		"username": "APP", "password": "pw-tmpl", "dsn": "postgres://app:cHctdG1wbA==@db/app",
	}))
	if s.Type != corev1.SecretTypeBasicAuth || s.Labels["team"] != "payments" || s.Annotations["example.com/owner"] != "db-team" ||
		s.Labels[configv1alpha1.ManagedByLabel] != "veil-syncer" {
		t.Errorf("type %s, labels %v, annotations %v", s.Type, s.Labels, s.Annotations)
	}
	waitReady(t, ns, "db", configv1alpha1.ReasonSynced)

	// A template that fails leaves the Secret as it was.
	es, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es.Spec.Target.Template.Data["password"] = "{{ .pass | b64dec }}"
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Update(ctxFor(t), es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	failed := waitReady(t, ns, "db", configv1alpha1.ReasonTemplateError)
	msg := apimeta.FindStatusCondition(failed.Status.Conditions, "Ready").Message
	if !strings.Contains(msg, `template for key "password"`) || !strings.Contains(msg, "not valid base64") || strings.Contains(msg, "pw-tmpl") {
		t.Errorf("message: %s", msg)
	}
	ev := waitEvent(t, ns, "db", syncer.EventSyncError, configv1alpha1.ReasonTemplateError)
	if strings.Contains(ev.Message, "pw-tmpl") {
		t.Errorf("the Event quotes the value: %s", ev.Message)
	}
	assertUnchanged(t, "db", s)
}

func TestSyncerImmutable(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "first"})
	newTargetES(t, ns, "frozen", configv1alpha1.ExternalSecretTarget{Immutable: true}, dataRef("value", "k", ""))
	s := waitSecret(t, ns, "frozen", hasData(map[string]string{"value": "first"}))
	if !ptr.Deref(s.Immutable, false) {
		t.Fatal("the Secret is not immutable")
	}
	setStoreData(t, ns, configv1alpha1.FakeProviderData{Key: "k", Value: "second"})
	es := waitReady(t, ns, "frozen", configv1alpha1.ReasonTargetImmutable)
	if msg := apimeta.FindStatusCondition(es.Status.Conditions, "Ready").Message; !strings.Contains(msg, "delete it and veil-syncer creates it again") {
		t.Errorf("message: %s", msg)
	}
	assertUnchanged(t, "frozen", s)

	// As the message says: once deleted, it comes back with the new data.
	if err := cluster.KubeClient.CoreV1().Secrets(ns).Delete(ctxFor(t), "frozen", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSecret(t, ns, "frozen", hasData(map[string]string{"value": "second"}))
}

func TestSyncerDeletionPolicyDelete(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store",
		configv1alpha1.FakeProviderData{Key: "a", Value: "1"},
		configv1alpha1.FakeProviderData{Key: "b", Value: "2"})
	for _, name := range []string{"a", "b"} {
		newTargetES(t, ns, name, configv1alpha1.ExternalSecretTarget{DeletionPolicy: configv1alpha1.DeletionPolicyDelete}, dataRef("value", name, ""))
		waitSecret(t, ns, name, hasData(map[string]string{"value": map[string]string{"a": "1", "b": "2"}[name]}))
		waitReady(t, ns, name, configv1alpha1.ReasonSynced)
	}
	// Someone replaces b with their own Secret: it must never be deleted.
	if err := cluster.KubeClient.CoreV1().Secrets(ns).Delete(ctxFor(t), "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	users, err := cluster.KubeClient.CoreV1().Secrets(ns).Create(ctxFor(t), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "b"}, Data: map[string][]byte{"mine": []byte("yes")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	setStoreData(t, ns) // every remote value disappears
	es := waitReady(t, ns, "a", configv1alpha1.ReasonRemoteNotFound)
	if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Get(ctxFor(t), "a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret a was not deleted (%v)", err)
	}
	if es.Status.TargetUID != "" || es.Status.DataHMAC != "" {
		t.Errorf("status still names the deleted Secret: %+v", es.Status)
	}
	waitEvent(t, ns, "a", syncer.EventDeleted, "Deleted Secret a")

	eventually(t, func() error {
		es := waitReady(t, ns, "b", configv1alpha1.ReasonRemoteNotFound)
		if msg := apimeta.FindStatusCondition(es.Status.Conditions, "Ready").Message; !strings.Contains(msg, "left in place") {
			return fmt.Errorf("message: %s", msg)
		}
		return nil
	})
	assertUnchanged(t, "b", users)
}

// TestSyncerStatusIsApplied: veil-syncer writes status by server-side
// apply as veil-syncer, so a condition someone else applied before its
// next write survives it, and the fields it clears (targetUID and
// dataHMAC, once it deleted the Secret) are gone.
func TestSyncerStatusIsApplied(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v1"})
	newTargetES(t, ns, "app", configv1alpha1.ExternalSecretTarget{DeletionPolicy: configv1alpha1.DeletionPolicyDelete}, dataRef("value", "k", ""))
	waitReady(t, ns, "app", configv1alpha1.ReasonSynced)

	theirs := fmt.Sprintf(`{"apiVersion":"config.veil.dev/v1alpha1","kind":"ExternalSecret","metadata":{"name":"app","namespace":%q},`+
		`"status":{"conditions":[{"type":"Audited","status":"True","reason":"Reviewed","message":"by someone else","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}`, ns)
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Patch(ctxFor(t), "app", types.ApplyPatchType, []byte(theirs),
		metav1.PatchOptions{FieldManager: "auditor"}, "status"); err != nil {
		t.Fatal(err)
	}
	setStoreData(t, ns) // the value disappears: the syncer deletes the Secret
	es := waitReady(t, ns, "app", configv1alpha1.ReasonRemoteNotFound)
	if es.Status.TargetUID != "" || es.Status.DataHMAC != "" {
		t.Errorf("status still names the deleted Secret: %+v", es.Status)
	}
	if c := apimeta.FindStatusCondition(es.Status.Conditions, "Audited"); c == nil || c.Reason != "Reviewed" {
		t.Errorf("the auditor's condition is gone: %+v", es.Status.Conditions)
	}
	var applied, updated bool
	for _, f := range es.ManagedFields {
		if f.Manager == "veil-syncer" && f.Subresource == "status" {
			applied = applied || f.Operation == metav1.ManagedFieldsOperationApply
			updated = updated || f.Operation != metav1.ManagedFieldsOperationApply
		}
	}
	if !applied || updated {
		t.Errorf("veil-syncer's status writes: applied %v, other operations %v; want applies only", applied, updated)
	}
}

func TestSyncerRolloutRestart(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v1"})
	labels := map[string]string{"app": "web"}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example/app:1"}}},
	}
	sel := &metav1.LabelSelector{MatchLabels: labels}
	ctx := ctxFor(t)
	apps := cluster.KubeClient.AppsV1()
	if _, err := apps.Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := apps.StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: appsv1.StatefulSetSpec{Selector: sel, Template: tmpl, ServiceName: "db"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := apps.DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent"}, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	newTargetES(t, ns, "app", configv1alpha1.ExternalSecretTarget{RolloutRestartTargets: []configv1alpha1.RolloutRestartTarget{
		{Kind: "Deployment", Name: "web"}, {Kind: "StatefulSet", Name: "db"}, {Kind: "DaemonSet", Name: "agent"}, {Kind: "Deployment", Name: "missing"},
	}}, dataRef("value", "k", ""))
	waitReady(t, ns, "app", configv1alpha1.ReasonSynced)
	// The first sync creates the Secret: nothing ran with other data, so nothing restarts.
	templates := func() map[string]map[string]string {
		d, err := apps.Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := apps.StatefulSets(ns).Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a, err := apps.DaemonSets(ns).Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return map[string]map[string]string{"Deployment/web": d.Spec.Template.Annotations, "StatefulSet/db": s.Spec.Template.Annotations, "DaemonSet/agent": a.Spec.Template.Annotations}
	}
	for ref, a := range templates() {
		if _, ok := a[configv1alpha1.RestartedForAnnotation]; ok {
			t.Errorf("%s was restarted by the first sync", ref)
		}
	}

	setStoreData(t, ns, configv1alpha1.FakeProviderData{Key: "k", Value: "v2"})
	waitSecret(t, ns, "app", hasData(map[string]string{"value": "v2"}))
	eventually(t, func() error {
		es := waitReady(t, ns, "app", configv1alpha1.ReasonSynced)
		want := "app@" + es.Status.DataHMAC
		for ref, a := range templates() {
			if a[configv1alpha1.RestartedForAnnotation] != want {
				return fmt.Errorf("%s pod template annotation %q, want %q", ref, a[configv1alpha1.RestartedForAnnotation], want)
			}
		}
		return nil
	})
	waitEvent(t, ns, "app", syncer.EventUpdated, "restarted Deployment/web, StatefulSet/db, DaemonSet/agent")
	waitEvent(t, ns, "app", syncer.EventSyncError, "Deployment/missing does not exist")
}

func TestSyncerLeaderFailover(t *testing.T) {
	a := startSyncerNamed(t, unique("veil-syncer-a-"))
	b := startSyncerNamed(t, unique("veil-syncer-b-"))
	var leader, follower *harness.Syncer
	eventually(t, func() error {
		switch leaseHolder(t) {
		case a.Name:
			leader, follower = a, b
		case b.Name:
			leader, follower = b, a
		default:
			return fmt.Errorf("neither %s nor %s leads yet", a.Name, b.Name)
		}
		return nil
	})
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	newTargetES(t, ns, "first", configv1alpha1.ExternalSecretTarget{}, dataRef("value", "k", ""))
	waitSecret(t, ns, "first", hasData(map[string]string{"value": "v"}))
	waitReady(t, ns, "first", configv1alpha1.ReasonSynced)

	// Each syncer was started by this test, so its counters are this
	// test's. A follower that never synced exposes no
	// veil_syncer_syncs_total at all; the leader's scrape, which must have
	// it, is what makes the follower's 0 fail if the metric is renamed.
	syncs := func(s *harness.Syncer) float64 {
		t.Helper()
		m, err := s.Metrics(ctxFor(t))
		if err != nil {
			t.Fatal(err)
		}
		return m.Sum("veil_syncer_syncs_total", nil)
	}
	leaderMetrics, err := leader.Metrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if leaderMetrics.Value(t, "veil_syncer_syncs_total", nil) == 0 {
		t.Errorf("the leader %s synced nothing", leader.Name)
	}
	if n := syncs(follower); n != 0 {
		t.Errorf("the follower %s synced %v times", follower.Name, n)
	}

	leader.Stop()
	waitLeader(t, follower.Name)
	newTargetES(t, ns, "second", configv1alpha1.ExternalSecretTarget{}, dataRef("value", "k", ""))
	waitSecret(t, ns, "second", hasData(map[string]string{"value": "v"}))
	waitReady(t, ns, "second", configv1alpha1.ReasonSynced)
	if syncs(follower) == 0 {
		t.Errorf("the new leader %s synced nothing", follower.Name)
	}
}

// TestSyncerCannotReadSecrets: the syncer's ServiceAccount can write
// Secrets but not read them, cannot read stores or mint tokens for provider
// logins, and its writes to Secrets Veil does not manage are refused before
// kube-apiserver answers with the object.
func TestSyncerCannotReadSecrets(t *testing.T) {
	ns := newNamespace(t, nil)
	canI := func(args ...string) string {
		t.Helper()
		out, _, err := cluster.RunKubectl(ctxFor(t), "", nil, append([]string{"auth", "can-i", "--as=" + syncerSA}, args...)...)
		answer := strings.TrimSpace(string(out))
		if answer != "yes" && answer != "no" {
			t.Fatalf("kubectl auth can-i %v: %q (%v)", args, answer, err)
		}
		return answer
	}
	for _, where := range [][]string{{"-n", ns}, {"-n", harness.VeilNamespace}, {"-n", "kube-system"}, {"--all-namespaces"}} {
		for _, verb := range []string{"get", "list", "watch"} {
			if got := canI(append([]string{verb, "secrets"}, where...)...); got != "no" {
				t.Errorf("can-i %s secrets %v = %s, want no", verb, where, got)
			}
		}
		for _, what := range []string{"secretstores.config.veil.dev", "clustersecretstores.config.veil.dev"} {
			if got := canI(append([]string{"get", what}, where...)...); got != "no" {
				t.Errorf("can-i get %s %v = %s, want no", what, where, got)
			}
		}
		// ConfigMaps: get only, by the name an ExternalSecret's
		// templateFrom gives in its own namespace; never a list or watch.
		for _, verb := range []string{"list", "watch"} {
			if got := canI(append([]string{verb, "configmaps"}, where...)...); got != "no" {
				t.Errorf("can-i %s configmaps %v = %s, want no", verb, where, got)
			}
		}
		if got := canI(append([]string{"create", "serviceaccounts/token"}, where...)...); got != "no" {
			t.Errorf("can-i create serviceaccounts/token %v = %s, want no", where, got)
		}
	}
	// What it needs: write Secrets, read values, and its one key Secret.
	for _, args := range [][]string{
		{"create", "secrets", "-n", ns}, {"patch", "secrets", "-n", ns}, {"delete", "secrets", "-n", ns},
		{"get", "externalsecretvalues.externalsecrets.veil.dev", "-n", ns},
		{"get", "secrets/" + syncer.HMACKeySecret, "-n", harness.VeilNamespace},
	} {
		if got := canI(args...); got != "yes" {
			t.Errorf("can-i %v = %s, want yes", args, got)
		}
	}

	// No provider configuration: no flag names a provider, an endpoint or a credential.
	help, err := exec.Command(cluster.SyncerBinary(), "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("veil-syncer --help: %v\n%s", err, help)
	}
	for _, word := range []string{"vault", "aws", "provider", "endpoint", "token", "role", "credential"} {
		if regexp.MustCompile(`--[a-z-]*` + word).MatchString(strings.ToLower(string(help))) {
			t.Errorf("veil-syncer has a flag about %q:\n%s", word, help)
		}
	}

	// RBAC allows any Secret write, and a write answers with the object;
	// the admission policy refuses those to Secrets Veil does not manage.
	users, err := cluster.KubeClient.CoreV1().Secrets(ns).Create(ctxFor(t), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "users"}, Data: map[string][]byte{"password": []byte("do-not-read")},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(cluster.Admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: syncerSA}
	as := kubernetes.NewForConfigOrDie(cfg).CoreV1().Secrets(ns)
	got, err := as.Patch(ctxFor(t), "users", types.JSONPatchType, []byte(`[]`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) || (got != nil && len(got.Data) > 0) {
		t.Errorf("a no-op patch of an unmanaged Secret as the syncer: %v, data returned: %v", err, got != nil && len(got.Data) > 0)
	}
	if err := as.Delete(ctxFor(t), "users", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("deleting an unmanaged Secret as the syncer: %v, want forbidden", err)
	}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "unlabelled"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "token", Labels: map[string]string{configv1alpha1.ManagedByLabel: "veil-syncer"},
			Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}}, Type: corev1.SecretTypeServiceAccountToken},
	} {
		if _, err := as.Create(ctxFor(t), s, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("creating Secret %s as the syncer: %v, want forbidden", s.Name, err)
		}
	}
	// Every write above was refused in its own answer, and nothing else
	// writes this Secret: there is nothing to wait for.
	assertSameSecret(t, users)
}

// TestSyncerCanary materialises a unique value and then searches the whole
// cluster for it: it must be in the target Secret and the fake store (which
// keeps values in its spec) and nowhere else — not in the syncer's logs,
// Events, the ExternalSecret's status or the syncer's metrics.
func TestSyncerCanary(t *testing.T) {
	s := startSyncer(t)
	canary := unique("veil-canary-syncer-")
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "app/secret", Value: canary})
	newTargetES(t, ns, "app", configv1alpha1.ExternalSecretTarget{Name: "app-secret"}, dataRef("secret", "app/secret", ""))
	waitSecret(t, ns, "app-secret", hasData(map[string]string{"secret": canary}))
	waitReady(t, ns, "app", configv1alpha1.ReasonSynced)
	waitEvent(t, ns, "app", syncer.EventSynced, "Created Secret app-secret")
	// A failure path too: a template error's status and Event.
	es, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es.Spec.Target.Template = &configv1alpha1.ExternalSecretTemplate{Data: map[string]string{"x": "{{ range .secret }}{{ end }}"}}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Update(ctxFor(t), es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitReady(t, ns, "app", configv1alpha1.ReasonTemplateError)
	waitEvent(t, ns, "app", syncer.EventSyncError, configv1alpha1.ReasonTemplateError)

	m, err := s.Metrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.Raw, canary) {
		t.Error("the syncer's metrics contain the canary")
	}
	sightings, err := cluster.FindCanary(ctxFor(t), canary)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/registry/config.veil.dev/secretstores/" + ns + "/store", "/registry/secrets/" + ns + "/app-secret"}
	got := slices.Sorted(slices.Values(sightings.EtcdKeys))
	if !slices.Equal(got, want) {
		t.Errorf("canary in etcd keys %v, want exactly %v", got, want)
	}
	if sightings.InFiles() != 0 {
		t.Errorf("canary found in logs: %s", sightings)
	}
	if n := sightings.Files[s.LogFile]; n != 0 {
		t.Errorf("canary in the syncer's log %d times", n)
	}
	if _, ok := sightings.Files[s.LogFile]; !ok {
		t.Errorf("the syncer's log %s was not searched", s.LogFile)
	}
}
