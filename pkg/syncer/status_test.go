package syncer

import (
	"encoding/json"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestStatusApplyHoldsOnlyWhatVeilOwns: the applied object names the
// object and carries its status, with only the conditions veil-syncer
// sets: another writer's condition is neither removed nor taken over.
func TestStatusApplyHoldsOnlyWhatVeilOwns(t *testing.T) {
	st := &configv1alpha1.ExternalSecretStatus{
		Conditions: []metav1.Condition{
			{Type: "Example", Status: metav1.ConditionTrue, Reason: "SomeoneElse"},
			{Type: configv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: configv1alpha1.ReasonSynced},
		},
		TargetUID:       "t-uid",
		LastValueChange: &configv1alpha1.ValueChange{ID: "veil-apiservers", Cause: configv1alpha1.ValueChangeDetected},
	}
	body, err := applyStatusBody("ExternalSecret", "app", "db", st,
		func(s *configv1alpha1.ExternalSecretStatus) *[]metav1.Condition { return &s.Conditions }, ownedExternalSecretStatus)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got["apiVersion"] != "config.veil.dev/v1alpha1" || got["kind"] != "ExternalSecret" || len(got) != 4 {
		t.Errorf("applied %s", body)
	}
	if m := got["metadata"].(map[string]any); len(m) != 2 || m["name"] != "db" || m["namespace"] != "app" {
		t.Errorf("metadata %v", m)
	}
	status := got["status"].(map[string]any)
	conds := status["conditions"].([]any)
	if len(conds) != 1 || conds[0].(map[string]any)["type"] != configv1alpha1.ConditionReady || status["targetUID"] != "t-uid" {
		t.Errorf("status %v", status)
	}
	if _, ok := status["lastValueChange"]; ok {
		t.Errorf("veil-syncer applies veil-apiserver's lastValueChange, and would put back an older one: %v", status)
	}
	if len(st.Conditions) != 2 || st.LastValueChange == nil {
		t.Error("the status passed in was changed")
	}
}

// TestStatusIsWrittenOneWay: both controllers write status only with a
// forced server-side apply of the status subresource, as veil-syncer.
func TestStatusIsWrittenOneWay(t *testing.T) {
	f := newSyncFixture(t, testES(configv1alpha1.ExternalSecretTarget{}), map[string][]byte{"password": []byte(syncCanary)})
	f.sync(t)
	p := newPushFixture(t, testPushSecret(configv1alpha1.PushSecretDeletionPolicyDelete), sourceSecret("5", map[string]string{"password": "a", "token": "b"}))
	p.sync(t)
	writes := 0
	for _, a := range append(f.veil.Actions(), p.veil.Actions()...) {
		pa, ok := a.(clienttesting.PatchActionImpl)
		if !ok || pa.GetSubresource() != "status" {
			continue
		}
		writes++
		o := pa.PatchOptions
		if pa.GetPatchType() != types.ApplyPatchType || o.FieldManager != fieldManager || o.Force == nil || !*o.Force {
			t.Errorf("status of %s written with %s, options %+v", pa.GetResource().Resource, pa.GetPatchType(), o)
		}
	}
	if writes != 2 {
		t.Errorf("%d status writes, want one each", writes)
	}
}
