package stores

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/warning"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// OpenCondition returns the index of the first of a ClusterSecretStore's
// spec.conditions whose namespaceSelector matches a namespace created
// with no labels (only kubernetes.io/metadata.name, which Kubernetes
// sets), or -1. Such a selector — `{}`, or only NotIn and DoesNotExist
// expressions — lets in every namespace but those carrying particular
// labels, including namespaces created later, and whoever may create a
// namespace or edit its labels can stay clear of those labels.
func OpenCondition(css *configv1alpha1.ClusterSecretStore) int {
	for i, c := range css.Spec.Conditions {
		if c.NamespaceSelector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(c.NamespaceSelector)
		if err != nil {
			continue
		}
		// Two names, so that a NotIn naming one of them is not taken for
		// a closed selector.
		for _, name := range []string{"veil-new-namespace-a", "veil-new-namespace-b"} {
			if sel.Matches(labels.Set{corev1.LabelMetadataName: name}) {
				return i
			}
		}
	}
	return -1
}

// OpenConditionMessage says what an open condition lets in and what to
// write instead.
func OpenConditionMessage(css *configv1alpha1.ClusterSecretStore, i int) string {
	return fmt.Sprintf("ClusterSecretStore %s: spec.conditions[%d].namespaceSelector matches every namespace without particular labels, including namespaces created later; "+
		"name the namespaces instead (spec.conditions[].namespaces, or a selector on %s with the operator In)", css.Name, i, corev1.LabelMetadataName)
}

// warnIfOpen tells whoever reads or pushes through a ClusterSecretStore
// with an open condition.
func warnIfOpen(ctx context.Context, css *configv1alpha1.ClusterSecretStore) {
	if i := OpenCondition(css); i >= 0 {
		warning.AddWarning(ctx, "", OpenConditionMessage(css, i))
	}
}
