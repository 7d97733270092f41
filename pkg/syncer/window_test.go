package syncer

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
)

// TestSyncWindowHoldsRefreshes: a deny window open now holds a periodic
// refresh of a target already written for its generation: nothing is read
// or written, the SyncWindow condition says why; the first write, a forced
// sync, and a sync after the window closes are not held.
func TestSyncWindowHoldsRefreshes(t *testing.T) {
	es := testES(configv1alpha1.ExternalSecretTarget{})
	es.Spec.RefreshInterval = &metav1.Duration{Duration: time.Minute}
	es.Spec.SyncWindows = &configv1alpha1.SyncWindows{Kind: configv1alpha1.SyncWindowDeny, Windows: []configv1alpha1.SyncWindow{
		{Schedule: "0 9 * * *", Duration: metav1.Duration{Duration: 8 * time.Hour}},
	}}
	f := newSyncFixture(t, es, map[string][]byte{"password": []byte(syncCanary)})
	clk := clocktesting.NewFakeClock(time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC))
	f.c.clock = clk

	// The first write, inside the window, is not held.
	if res, es := f.sync(t); res.result != resultCreated {
		t.Fatalf("first sync: %+v", res)
	} else if c := apimeta.FindStatusCondition(es.Status.Conditions, configv1alpha1.ConditionSyncWindow); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("SyncWindow after the first write: %+v, want True", c)
	}
	// The next refresh is tried when due, and held then.
	if d, ok := f.c.requeueAfter(f.c.current(f.es(t))); !ok || d > 66*time.Second {
		t.Errorf("requeue after the first write: %v %v, want the refresh interval", d, ok)
	}
	f.setValues(t, map[string][]byte{"password": []byte("new-" + syncCanary)})
	_, writes := f.secrets.counts()
	res, es := f.sync(t)
	if res.result != resultHeld || res.retry {
		t.Fatalf("refresh inside the window: %+v, want Held", res)
	}
	c := apimeta.FindStatusCondition(es.Status.Conditions, configv1alpha1.ConditionSyncWindow)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != configv1alpha1.ReasonSyncWindowHeld ||
		!strings.Contains(c.Message, "2030-01-02T17:00:00Z") || strings.Contains(c.Message, syncCanary) {
		t.Errorf("SyncWindow while held: %+v", c)
	}
	if _, w := f.secrets.counts(); w != writes || string(f.secrets.get("app", "db").Data["password"]) != syncCanary {
		t.Errorf("a held refresh wrote the Secret")
	}
	if d, ok := f.c.requeueAfter(f.c.current(es)); !ok || d != 7*time.Hour+time.Second {
		t.Errorf("requeue while held: %v %v, want when the window closes", d, ok)
	}

	// Labels changed: forced, not held.
	f.c.markForced("app/db")
	if res, _ := f.sync(t); res.result != resultUpdated {
		t.Errorf("forced sync: %+v, want Updated", res)
	}
	// Closed: refreshed.
	f.setValues(t, map[string][]byte{"password": []byte("third")})
	if res, _ := f.sync(t); res.result != resultHeld {
		t.Errorf("after the forced sync, still in the window: %+v, want Held", res)
	}
	clk.SetTime(time.Date(2030, 1, 2, 17, 0, 1, 0, time.UTC))
	res, es = f.sync(t)
	if res.result != resultUpdated || string(f.secrets.get("app", "db").Data["password"]) != "third" {
		t.Errorf("after the window: %+v", res)
	}
	if c := apimeta.FindStatusCondition(es.Status.Conditions, configv1alpha1.ConditionSyncWindow); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("SyncWindow after the window: %+v", c)
	}
	if d, ok := f.c.requeueAfter(f.c.current(es)); !ok || d > 66*time.Second {
		t.Errorf("requeue outside the window: %v %v, want the refresh interval", d, ok)
	}

	// OnChange is never held.
	clk.SetTime(time.Date(2030, 1, 3, 10, 0, 0, 0, time.UTC))
	es.Spec.RefreshPolicy = configv1alpha1.RefreshOnChange
	held, _ := f.c.windowHolds(es, es.Status.DeepCopy())
	if held {
		t.Errorf("refreshPolicy OnChange held by a window")
	}
}

// TestSyncAddsFinalizers: template finalizers go on the Secret veil-syncer
// creates, are added beside others' to one it wrote before, never on a
// Secret merged into; the CRD's refusals are made again.
func TestSyncAddsFinalizers(t *testing.T) {
	es := testES(configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
		Metadata: configv1alpha1.ExternalSecretTemplateMetadata{Finalizers: []string{"example.com/a"}}}})
	f := newSyncFixture(t, es, map[string][]byte{"password": []byte(syncCanary)})
	if res, _ := f.sync(t); res.result != resultCreated {
		t.Fatalf("%+v", res)
	}
	if got := f.secrets.get("app", "db").Finalizers; !slices.Equal(got, []string{"example.com/a"}) {
		t.Errorf("finalizers on create: %v", got)
	}
	f.secrets.edit("app", "db", func(s *corev1.Secret) { s.Finalizers = []string{"other.example/x"} })
	if res, _ := f.sync(t); res.retry {
		t.Fatalf("%+v", res)
	}
	if got := f.secrets.get("app", "db").Finalizers; !slices.Equal(got, []string{"other.example/x", "example.com/a"}) {
		t.Errorf("finalizers added to a Secret with others: %v", got)
	}
	// Being deleted: none added.
	f.secrets.edit("app", "db", func(s *corev1.Secret) {
		s.Finalizers = []string{"other.example/x"}
		s.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	})
	f.sync(t)
	if got := f.secrets.get("app", "db").Finalizers; !slices.Equal(got, []string{"other.example/x"}) {
		t.Errorf("finalizers added to a Secret being deleted: %v", got)
	}

	// Never on a Secret merged into.
	merge := testES(configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyMerge, Template: &configv1alpha1.ExternalSecretTemplate{
		Metadata: configv1alpha1.ExternalSecretTemplateMetadata{Finalizers: []string{"example.com/a"}}}})
	d, err := f.c.desired(context.Background(), merge, &esv1alpha1.ExternalSecretValue{Type: "Opaque"}, "db")
	if err != nil || d.finalizers != nil {
		t.Errorf("creationPolicy Merge: finalizers %v, %v; want none", d.finalizers, err)
	}

	for _, bad := range [][]string{{"orphan"}, {"kubernetes.io/x"}, {"a.kubernetes.io/x"}, {"x.k8s.io/y"}, {"veil.dev/pushsecret"}, {"sub.veil.dev/x"},
		slices.Repeat([]string{"example.com/a"}, maxFinalizers+1)} {
		if err := checkFinalizers(bad); err == nil {
			t.Errorf("checkFinalizers(%v) = nil", bad)
		}
	}
	for _, ok := range [][]string{nil, {"example.com/a", "kubernetes.example.com/b", "notk8s.io/c"}} {
		if err := checkFinalizers(ok); err != nil {
			t.Errorf("checkFinalizers(%v) = %v", ok, err)
		}
	}
}
