package syncer

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/record"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
)

// TestExcludedNamespaceIsNeverWritten: an ExternalSecret in an excluded
// namespace is reported, and neither its values nor its target are touched
// (the controller has no Secret writer: a write would panic).
func TestExcludedNamespaceIsNeverWritten(t *testing.T) {
	es := testES(configv1alpha1.ExternalSecretTarget{})
	es.Namespace = "kube-system"
	veil := newVeilClientset(es)
	c := &Controller{
		skeleton: newExternalSecretSkeleton(veil, record.NewFakeRecorder(10), 0),
		veil:     veil, excluded: sets.New("kube-system"),
	}
	if res := c.sync(context.Background(), es); res.result != configv1alpha1.ReasonNamespaceExcluded || res.retry {
		t.Errorf("result %+v, want %s without retry", res, configv1alpha1.ReasonNamespaceExcluded)
	}
	for _, a := range veil.Actions() {
		if a.GetResource().Resource != "externalsecrets" || a.GetSubresource() != "status" {
			t.Errorf("a request other than the status write: %s %s/%s", a.GetVerb(), a.GetResource().Resource, a.GetSubresource())
		}
	}
	got, err := veil.ConfigV1alpha1().ExternalSecrets("kube-system").Get(context.Background(), es.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready := apimeta.FindStatusCondition(got.Status.Conditions, configv1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != configv1alpha1.ReasonNamespaceExcluded || !strings.Contains(ready.Message, "kube-system") {
		t.Errorf("Ready = %+v, want False, %s, naming the namespace", ready, configv1alpha1.ReasonNamespaceExcluded)
	}
}

// TestDesiredRefusesTypesKubernetesActsOn: only the types the admission
// policy veil-syncer-secrets admits are rendered.
func TestDesiredRefusesTypesKubernetesActsOn(t *testing.T) {
	c := &Controller{key: []byte(strings.Repeat("k", 32))}
	v := &esv1alpha1.ExternalSecretValue{Type: "Opaque", Data: map[string][]byte{"k": []byte("v")}}
	for _, typ := range writableSecretTypes {
		es := testES(configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{Type: typ}})
		if _, err := c.desired(context.Background(), es, v, "db"); err != nil {
			t.Errorf("type %s: %v", typ, err)
		}
	}
	for _, typ := range []corev1.SecretType{corev1.SecretTypeServiceAccountToken, corev1.SecretTypeBootstrapToken, "helm.sh/release.v1"} {
		es := testES(configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{Type: typ}})
		if _, err := c.desired(context.Background(), es, v, "db"); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("type %s: %v, want refused", typ, err)
		}
	}
}

func TestExcludedNamespacesMustNotHoldTheSyncersOwn(t *testing.T) {
	o := NewOptions()
	o.ExcludedNamespaces = []string{"kube-system", o.Namespace}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--excluded-namespaces") {
		t.Errorf("Validate = %v, want an error naming --excluded-namespaces", err)
	}
	if err := NewOptions().Validate(); err != nil {
		t.Errorf("the defaults: %v", err)
	}
}
