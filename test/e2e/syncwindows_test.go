package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// waitSyncWindow waits for the SyncWindow condition of ns/name to have
// status and a message containing says.
func waitSyncWindow(t *testing.T, ns, name string, status metav1.ConditionStatus, says string) *configv1alpha1.ExternalSecret {
	t.Helper()
	var es *configv1alpha1.ExternalSecret
	eventually(t, func() error {
		var err error
		if es, err = cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), name, metav1.GetOptions{}); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(es.Status.Conditions, configv1alpha1.ConditionSyncWindow)
		if c == nil || c.Status != status || c.ObservedGeneration != es.Generation || !strings.Contains(c.Message, says) {
			return fmt.Errorf("SyncWindow condition %+v, want %s saying %q", c, status, says)
		}
		return nil
	})
	return es
}

func updateES(t *testing.T, ns, name string, edit func(*configv1alpha1.ExternalSecret)) {
	t.Helper()
	eventually(t, func() error {
		es, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		edit(es)
		_, err = cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Update(ctxFor(t), es, metav1.UpdateOptions{})
		return err
	})
}

// TestSyncWindows: spec.syncWindows hold the refreshes of a target, as in
// External Secrets Operator, while reads of the ExternalSecretValue are
// not held. A deny window open now (one that opens every minute for two
// hours) holds a rotation: the Secret keeps its data, the SyncWindow
// condition says why and until when, and the value read through the API is
// the new one. A change of labels, or of the spec, is written whatever
// the window; an allow window that is closed holds the same way, naming
// when it opens.
func TestSyncWindows(t *testing.T) {
	s := startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v1"})
	es := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "held", Namespace: ns},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef:  new(storeRef("store")),
			RefreshInterval: &metav1.Duration{Duration: time.Second},
			Target:          &configv1alpha1.ExternalSecretTarget{},
			Data:            []configv1alpha1.ExternalSecretData{dataRef("value", "k", "")},
			SyncWindows: &configv1alpha1.SyncWindows{Kind: configv1alpha1.SyncWindowDeny, Windows: []configv1alpha1.SyncWindow{
				{Schedule: "* * * * *", Duration: metav1.Duration{Duration: 2 * time.Hour}},
			}},
		},
	}
	createES(t, es)
	// The first write is never held.
	waitSecret(t, ns, "held", hasData(map[string]string{"value": "v1"}))
	waitReady(t, ns, "held", configv1alpha1.ReasonSynced)

	canary := unique("veil-canary-window-")
	setStoreData(t, ns, configv1alpha1.FakeProviderData{Key: "k", Value: canary})
	held := waitSyncWindow(t, ns, "held", metav1.ConditionFalse, `deny window 0 (schedule "* * * * *", duration 2h0m0s) is open`)
	c := apimeta.FindStatusCondition(held.Status.Conditions, configv1alpha1.ConditionSyncWindow)
	if c.Reason != configv1alpha1.ReasonSyncWindowHeld || !strings.Contains(c.Message, "looked at again at") {
		t.Errorf("SyncWindow condition %+v", c)
	}
	// Ready keeps the outcome of the last sync.
	if r := apimeta.FindStatusCondition(held.Status.Conditions, configv1alpha1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
		t.Errorf("Ready %+v while held, want True from the last sync", r)
	}
	if got := getSecret(t, ns, "held"); string(got.Data["value"]) != "v1" {
		t.Errorf("a held refresh wrote the Secret")
	}
	// Reads are not materialisation: the value is the new one.
	wantData(t, mustValue(t, ns, "held"), map[string]string{"value": canary})
	m, err := s.Metrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.Value(t, "veil_syncer_syncs_total", map[string]string{"result": "Held"}) < 1 {
		t.Errorf("no held sync counted:\n%s", grep(m.Raw, "veil_syncer_syncs_total"))
	}

	// Labels changed (as ESO's users do to force a sync): written now.
	updateES(t, ns, "held", func(es *configv1alpha1.ExternalSecret) { es.Labels = map[string]string{"force-sync": "1"} })
	waitSecret(t, ns, "held", hasData(map[string]string{"value": canary}))
	// The canary is in the store and the Secret only: never in the held
	// status, an Event or a log line.
	sightings, err := cluster.FindCanary(ctxFor(t), canary)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/registry/config.veil.dev/secretstores/" + ns + "/store", "/registry/secrets/" + ns + "/held"}
	if got := slices.Sorted(slices.Values(sightings.EtcdKeys)); sightings.InFiles() != 0 || !slices.Equal(got, want) {
		t.Errorf("the canary was seen outside the store and the Secret: %s (etcd keys %v, want %v)", sightings, got, want)
	}

	// An allow window that is closed (it opens on January 1st): a
	// rotation is held until then.
	setStoreData(t, ns, configv1alpha1.FakeProviderData{Key: "k", Value: "v3"})
	updateES(t, ns, "held", func(es *configv1alpha1.ExternalSecret) {
		es.Spec.SyncWindows = &configv1alpha1.SyncWindows{Kind: configv1alpha1.SyncWindowAllow, Windows: []configv1alpha1.SyncWindow{
			{Schedule: "0 0 1 1 *", Duration: metav1.Duration{Duration: time.Minute}},
		}}
	})
	// The spec changed: this write is not held.
	waitSecret(t, ns, "held", hasData(map[string]string{"value": "v3"}))
	setStoreData(t, ns, configv1alpha1.FakeProviderData{Key: "k", Value: "v4"})
	next := time.Date(time.Now().UTC().Year()+1, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	waitSyncWindow(t, ns, "held", metav1.ConditionFalse, "the next, window 0 (schedule \"0 0 1 1 *\"), opens at "+next)
	if got := getSecret(t, ns, "held"); string(got.Data["value"]) != "v3" {
		t.Errorf("a refresh held by a closed allow window wrote the Secret")
	}

	// No windows: the condition goes, and the rotation is written.
	updateES(t, ns, "held", func(es *configv1alpha1.ExternalSecret) { es.Spec.SyncWindows = nil })
	waitSecret(t, ns, "held", hasData(map[string]string{"value": "v4"}))
	eventually(t, func() error {
		es, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), "held", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if c := apimeta.FindStatusCondition(es.Status.Conditions, configv1alpha1.ConditionSyncWindow); c != nil {
			return fmt.Errorf("SyncWindow condition %+v left without windows", c)
		}
		return nil
	})

	// What the schema refuses, with reasons.
	bad := es.DeepCopy()
	bad.Name = "bad"
	bad.Spec.SyncWindows.Windows = []configv1alpha1.SyncWindow{{Schedule: "@every 1h", Duration: metav1.Duration{Duration: time.Hour}}}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "schedule") {
		t.Errorf("@every: %v, want 422 on the schedule", err)
	}
	bad.Spec.SyncWindows.Windows = []configv1alpha1.SyncWindow{{Schedule: "0 9 * * *", Duration: metav1.Duration{Duration: 745 * time.Hour}}}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "at most 744h") {
		t.Errorf("a 745h window: %v, want 422 naming the bound", err)
	}
	bad.Spec.SyncWindows.Windows = slices.Repeat([]configv1alpha1.SyncWindow{{Schedule: "0 9 * * *", Duration: metav1.Duration{Duration: time.Hour}}}, configv1alpha1.MaxSyncWindows+1)
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "must have at most 10 items") {
		t.Errorf("11 windows: %v, want 422", err)
	}
}

// TestTemplateFinalizers: the finalizers of spec.target.template.metadata
// are added to the Secret veil-syncer creates, and added to one it wrote
// before; they hold its deletion until whoever's cleanup they stand for
// removes them. Finalizers without a domain, or in Kubernetes' or Veil's
// domains, are refused.
func TestTemplateFinalizers(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	template := &configv1alpha1.ExternalSecretTemplate{Metadata: configv1alpha1.ExternalSecretTemplateMetadata{Finalizers: []string{"example.com/keep"}}}
	newTargetES(t, ns, "kept", configv1alpha1.ExternalSecretTarget{Template: template}, dataRef("value", "k", ""))
	s := waitSecret(t, ns, "kept", hasData(map[string]string{"value": "v"}))
	if !slices.Equal(s.Finalizers, []string{"example.com/keep"}) {
		t.Errorf("finalizers %v, want example.com/keep", s.Finalizers)
	}

	// A Secret written before the finalizers were asked for gets them,
	// beside one someone else put there.
	newTargetES(t, ns, "later", configv1alpha1.ExternalSecretTarget{}, dataRef("value", "k", ""))
	waitSecret(t, ns, "later", hasData(map[string]string{"value": "v"}))
	if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Patch(ctxFor(t), "later", types.MergePatchType,
		[]byte(`{"metadata":{"finalizers":["other.example/theirs"]}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	updateES(t, ns, "later", func(es *configv1alpha1.ExternalSecret) {
		es.Spec.Target.Template = template.DeepCopy()
		es.Spec.Target.Template.Metadata.Finalizers = append(es.Spec.Target.Template.Metadata.Finalizers, "example.com/second")
	})
	waitSecret(t, ns, "later", func(s *corev1.Secret) error {
		if !slices.Equal(s.Finalizers, []string{"other.example/theirs", "example.com/keep", "example.com/second"}) {
			return fmt.Errorf("finalizers %v", s.Finalizers)
		}
		return nil
	})
	waitReady(t, ns, "later", configv1alpha1.ReasonSynced)

	// The ExternalSecret goes (creationPolicy Owner): the Secret waits for
	// its finalizer.
	if err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Delete(ctxFor(t), "kept", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSecret(t, ns, "kept", func(s *corev1.Secret) error {
		if s.DeletionTimestamp == nil {
			return fmt.Errorf("Secret kept is not being deleted")
		}
		return nil
	})
	if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Patch(ctxFor(t), "kept", types.JSONPatchType,
		[]byte(`[{"op":"remove","path":"/metadata/finalizers"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Get(ctxFor(t), "kept", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Secret kept: %v, want it deleted once its finalizer is removed", err)
		}
		return nil
	})

	for _, c := range []struct{ finalizer, says string }{
		{"orphan", "must be domain-qualified"},
		{"foregroundDeletion", "must be domain-qualified"},
		{"kubernetes.io/pv-protection", "a domain of Kubernetes"},
		{"x.k8s.io/held", "a domain of Kubernetes"},
		{"veil.dev/pushsecret", "of Veil (veil.dev)"},
	} {
		es := &configv1alpha1.ExternalSecret{
			ObjectMeta: metav1.ObjectMeta{Name: "refused", Namespace: ns},
			Spec: configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("store")), Data: []configv1alpha1.ExternalSecretData{dataRef("value", "k", "")},
				Target: &configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
					Metadata: configv1alpha1.ExternalSecretTemplateMetadata{Finalizers: []string{c.finalizer}}}}},
		}
		if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), es, metav1.CreateOptions{}); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("finalizer %s: %v, want 422 saying %q", c.finalizer, err, c.says)
		}
	}
	esAbsent(t, ns, "refused")
}
