package syncer

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
)

// wholePushSecret pushes the whole source Secret to ci/all, and one key of
// it, as ESO allows side by side.
func wholePushSecret() *configv1alpha1.PushSecret {
	ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyDelete)
	ps.Spec.Data = []configv1alpha1.PushSecretData{
		{Match: configv1alpha1.PushSecretMatch{RemoteRef: configv1alpha1.PushSecretRemoteRef{RemoteKey: "ci/all"}}},
		{Match: configv1alpha1.PushSecretMatch{RemoteRef: configv1alpha1.PushSecretRemoteRef{RemoteKey: "ci/app", Property: "everything"}}},
		{Match: configv1alpha1.PushSecretMatch{SecretKey: "token", RemoteRef: configv1alpha1.PushSecretRemoteRef{RemoteKey: "ci/token"}}},
	}
	return ps
}

func TestPushWholeSecret(t *testing.T) {
	ps := wholePushSecret()
	src := map[string]string{"password": pushCanary, "token": "t1", "html": "<a&b>"}
	f := newPushFixture(t, ps, sourceSecret("5", src))

	res, got := f.sync(t)
	if res.result != resultPushed || res.retry || len(f.pushes) != 1 {
		t.Fatalf("first sync: %+v, %d SecretPushes", res, len(f.pushes))
	}
	data := f.pushes[0].Spec.Data
	if len(data) != 2 || string(data["token"]) != "t1" {
		t.Fatalf("SecretPush carries keys %d, want the whole Secret and token", len(data))
	}
	// As ESO writes it: sorted keys, values as strings, HTML not escaped.
	want := `{"html":"<a&b>","password":"` + pushCanary + `","token":"t1"}`
	if string(data[""]) != want {
		t.Errorf("the whole Secret is pushed as %d bytes, want the JSON object %d bytes", len(data[""]), len(want))
	}
	var obj map[string]string
	if err := json.Unmarshal(data[""], &obj); err != nil || len(obj) != 3 || obj["password"] != pushCanary {
		t.Errorf("the pushed value is not the Secret's JSON object: %v", err)
	}
	e := got.Status.SyncedPushSecrets["SecretStore/vault"]["ci/all"]
	if e.Result != "Pushed" || e.Match.SecretKey != "" || e.PushTime == nil {
		t.Errorf("syncedPushSecrets[ci/all] = %+v", e)
	}
	if c := ready(t, got); c.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %s %s: %s", c.Status, c.Reason, c.Message)
	}
	if b, _ := json.Marshal(got.Status); strings.Contains(string(b), pushCanary) {
		t.Errorf("the status carries the value")
	}
	f.events(t)

	// The same Secret again (another resourceVersion): the same bytes, so
	// the same HMAC and no SecretPush.
	f.setSource(t, sourceSecret("6", src))
	if res, _ = f.sync(t); res.result != resultUnchanged || len(f.pushes) != 1 {
		t.Fatalf("unchanged Secret: %+v, %d SecretPushes", res, len(f.pushes))
	}

	// Any key changing, even one no entry names, changes the whole value.
	src["added"] = "x"
	f.setSource(t, sourceSecret("7", src))
	if res, _ = f.sync(t); res.result != resultPushed || len(f.pushes) != 2 || !strings.Contains(string(f.pushes[1].Spec.Data[""]), `"added":"x"`) {
		t.Fatalf("changed Secret: %+v, %d SecretPushes", res, len(f.pushes))
	}
	f.events(t)
}

func TestPushWholeSecretRefused(t *testing.T) {
	for _, c := range []struct {
		name   string
		source *corev1.Secret
		says   string
	}{
		{name: "not UTF-8", source: &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: "team", ResourceVersion: "1"},
			Data:       map[string][]byte{"token": []byte("t1"), "blob": {0xff, 0xfe}, "password": []byte(pushCanary)},
		}, says: `keys "blob" are not UTF-8`},
		{name: "too large", source: sourceSecret("1", map[string]string{"token": "t1", "password": pushCanary, "big": strings.Repeat("\x01", esv1alpha1.MaxWholeSecretBytes/6+1)}),
			says: "more than the 1048576 (1 MiB)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newPushFixture(t, wholePushSecret(), c.source)
			res, got := f.sync(t)
			if res.result != configv1alpha1.ReasonSourceInvalid || res.retry {
				t.Errorf("result %+v", res)
			}
			if r := ready(t, got); r.Status != metav1.ConditionFalse || r.Reason != configv1alpha1.ReasonSourceInvalid || !strings.Contains(r.Message, c.says) {
				t.Errorf("Ready = %s %s: %s", r.Status, r.Reason, r.Message)
			}
			if len(f.pushes) != 0 {
				t.Errorf("%d SecretPushes, want none", len(f.pushes))
			}
			f.events(t)
		})
	}
}

func TestPushWholeSecretDelete(t *testing.T) {
	ps := wholePushSecret()
	f := newPushFixture(t, ps, sourceSecret("5", map[string]string{"password": pushCanary, "token": "t1"}))
	if res, _ := f.sync(t); res.result != resultPushed {
		t.Fatalf("push: %+v", res)
	}
	live, err := f.veil.ConfigV1alpha1().PushSecrets("team").Get(t.Context(), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	live.DeletionTimestamp = &now
	f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
		return answerAll(ps, sp, esv1alpha1.SecretPushResultDeleted), nil
	}
	if res := f.c.sync(t.Context(), f.c.current(live)); res.result != resultDeleted {
		t.Fatalf("delete: %+v", res)
	}
	if len(f.pushes) != 2 || f.pushes[1].Spec.Action != esv1alpha1.SecretPushActionDelete || len(f.pushes[1].Spec.Data) != 0 {
		t.Errorf("the remote keys of whole-Secret entries are deleted like any: %d SecretPushes", len(f.pushes))
	}
	f.events(t)
}
