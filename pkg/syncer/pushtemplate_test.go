package syncer

import (
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestPushTemplate: spec.template renders the source Secret before the
// push, as in ESO (template-v2-push-secret.yaml): data names keys of the
// rendered data; templateFrom ConfigMaps are read in the namespace; Merge
// keeps the keys without a template.
func TestPushTemplate(t *testing.T) {
	ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyNone)
	ps.Spec.Template = &configv1alpha1.ExternalSecretTemplate{
		EngineVersion: "v2",
		MergePolicy:   configv1alpha1.MergePolicyMerge,
		Data:          map[string]string{"password": `{{ .password | upper }} was templated`},
		TemplateFrom: []configv1alpha1.TemplateFrom{{ConfigMap: &configv1alpha1.TemplateRef{Name: "tmpl",
			Items: []configv1alpha1.TemplateRefItem{{Key: "token"}}}}},
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "tmpl", Namespace: "team"}, Data: map[string]string{"token": `t-{{ .token }}`}}
	f := newPushFixture(t, ps, sourceSecret("5", map[string]string{"password": pushCanary, "token": "abc"}), cm)
	f.c.configMaps = f.kube.CoreV1()
	res, after := f.sync(t)
	if res.result != resultPushed {
		t.Fatalf("push: %+v", res)
	}
	got := f.pushes[0].Spec.Data
	if string(got["password"]) != strings.ToUpper(pushCanary)+" was templated" || string(got["token"]) != "t-abc" {
		t.Errorf("pushed %q, %q", got["password"], got["token"])
	}
	if c := ready(t, after); c.Status != metav1.ConditionTrue {
		t.Errorf("Ready %+v", c)
	}

	// A template that fails pushes nothing and says why, without a value.
	ps2 := testPushSecret(configv1alpha1.PushSecretDeletionPolicyNone)
	ps2.Spec.Template = &configv1alpha1.ExternalSecretTemplate{Data: map[string]string{"password": `{{ .missing }}`}}
	f = newPushFixture(t, ps2, sourceSecret("5", map[string]string{"password": pushCanary, "token": "abc"}))
	res, after = f.sync(t)
	if res.result != configv1alpha1.ReasonTemplateError || len(f.pushes) != 0 {
		t.Fatalf("%+v, %d SecretPushes", res, len(f.pushes))
	}
	if c := ready(t, after); !strings.Contains(c.Message, "spec.template") {
		t.Errorf("Ready %+v", c)
	}
	f.events(t)

	// engineVersion other than v2 is refused, as for ExternalSecrets.
	ps3 := testPushSecret(configv1alpha1.PushSecretDeletionPolicyNone)
	ps3.Spec.Template = &configv1alpha1.ExternalSecretTemplate{EngineVersion: "v1", Data: map[string]string{"password": `x`}}
	f = newPushFixture(t, ps3, sourceSecret("5", map[string]string{"password": pushCanary, "token": "abc"}))
	if res, _ := f.sync(t); res.result != configv1alpha1.ReasonTemplateError {
		t.Errorf("engineVersion v1: %+v", res)
	}
}

// TestPushTemplateKeysFromValuesNotMatched: a KeysAndValues template can
// make a key of a value; dataTo would make that key a remote key, named in
// status and Events, so dataTo matches only keys not made by rendering.
func TestPushTemplateKeysFromValuesNotMatched(t *testing.T) {
	ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyNone)
	ps.Spec.Data = ps.Spec.Data[:1]
	ps.Spec.DataTo = []configv1alpha1.PushSecretDataTo{{StoreRef: ps.Spec.SecretStoreRefs[0]}}
	literal := `{{ .token }}: x`
	ps.Spec.Template = &configv1alpha1.ExternalSecretTemplate{
		MergePolicy:  configv1alpha1.MergePolicyMerge,
		Data:         map[string]string{"rendered": `r-{{ .token }}`},
		TemplateFrom: []configv1alpha1.TemplateFrom{{Literal: &literal}},
	}
	f := newPushFixture(t, ps, sourceSecret("5", map[string]string{"password": "p", "token": "tokencanary"}))
	if res, _ := f.sync(t); res.result != resultPushed {
		t.Fatalf("push: %+v", res)
	}
	var sent []string
	for k := range f.pushes[0].Spec.Data {
		sent = append(sent, k)
	}
	sort.Strings(sent)
	if strings.Join(sent, ",") != "password,rendered,token" {
		t.Errorf("sent %v; a key made of a value must not reach dataTo", sent)
	}
}
