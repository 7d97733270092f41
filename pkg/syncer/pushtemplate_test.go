package syncer

import (
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
