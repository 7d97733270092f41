package storestatus

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
)

type applied struct {
	Metadata struct{ Name string }
	Status   struct{ Conditions []metav1.Condition }
}

// Sync applies the condition to the status subresource, as veil-apiserver's
// field manager, only when the status does not hold it already, and keeps
// the transition time while the status stays the same.
func TestSync(t *testing.T) {
	client := fake.NewSimpleClientset()
	var patches []applied
	client.PrependReactor("patch", "clustersecretstores", func(a clienttesting.Action) (bool, runtime.Object, error) {
		p := a.(clienttesting.PatchAction)
		if p.GetSubresource() != "status" || p.GetPatchType() != types.ApplyPatchType {
			t.Errorf("patch of %q with %s, want an apply of status", p.GetSubresource(), p.GetPatchType())
		}
		var got applied
		if err := json.Unmarshal(p.GetPatch(), &got); err != nil {
			t.Fatal(err)
		}
		patches = append(patches, got)
		return true, &configv1alpha1.ClusterSecretStore{}, nil
	})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := clocktesting.NewFakePassiveClock(start)
	w := &Writer{client: client.ConfigV1alpha1(), clock: clock}
	css := &configv1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "shared", Generation: 1},
		Spec:       configv1alpha1.ClusterSecretStoreSpec{Conditions: []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: &metav1.LabelSelector{}}}},
	}
	ctx := context.Background()
	if err := w.Sync(ctx, css); err != nil {
		t.Fatal(err)
	}
	if len(patches) != 1 || len(patches[0].Status.Conditions) != 1 {
		t.Fatalf("patches %+v, want one with one condition", patches)
	}
	c := patches[0].Status.Conditions[0]
	if patches[0].Metadata.Name != "shared" || c.Type != configv1alpha1.ConditionMatchesAllNamespaces || c.Status != metav1.ConditionTrue ||
		c.Reason != configv1alpha1.ReasonOpenNamespaceSelector || c.ObservedGeneration != 1 || !c.LastTransitionTime.Time.Equal(start) {
		t.Errorf("condition %+v", c)
	}

	// The status holds it: nothing to write, whichever replica looks.
	css.Status.Conditions = []metav1.Condition{c}
	if err := w.Sync(ctx, css); err != nil || len(patches) != 1 {
		t.Errorf("an up-to-date status was written again (%v)", err)
	}

	// A new generation, still open: same transition time.
	clock.SetTime(start.Add(time.Hour))
	css.Generation = 2
	if err := w.Sync(ctx, css); err != nil || len(patches) != 2 {
		t.Fatalf("%d patches (%v), want 2", len(patches), err)
	}
	if c := patches[1].Status.Conditions[0]; c.ObservedGeneration != 2 || !c.LastTransitionTime.Time.Equal(start) {
		t.Errorf("condition %+v, want generation 2 and the first transition time", c)
	}

	// Namespaces named: False, from now.
	css.Generation = 3
	css.Spec.Conditions = []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{"a"}}}
	if err := w.Sync(ctx, css); err != nil || len(patches) != 3 {
		t.Fatalf("%d patches (%v), want 3", len(patches), err)
	}
	if c := patches[2].Status.Conditions[0]; c.Status != metav1.ConditionFalse || c.Reason != configv1alpha1.ReasonNamespacesChosen || !c.LastTransitionTime.Time.Equal(start.Add(time.Hour)) {
		t.Errorf("condition %+v, want False since now", c)
	}
}
