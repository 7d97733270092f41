package convert

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// GeneratorsGroup is External Secrets Operator's API group of generators.
const GeneratorsGroup = "generators." + ESOGroup

// isPasswordGenerator: ESO's Password generator, which Veil has as
// config.veil.dev's Password. ESO's other generators have no equivalent.
func isPasswordGenerator(group, kind string) bool {
	return group == GeneratorsGroup && kind == "Password"
}

// convertGeneratorRefs rewrites the apiVersion of ESO's Password in a
// PushSecret's selector.generatorRef (and a ClusterPushSecret's, which Veil
// then refuses with its own message) to Veil's. Other kinds are left as
// they are, for the CRD's rules to refuse with theirs.
func convertGeneratorRefs(o *unstructured.Unstructured) {
	var path []string
	switch o.GetKind() {
	case "PushSecret":
		path = []string{"spec", "selector", "generatorRef"}
	case "ClusterPushSecret":
		path = []string{"spec", "pushSecretSpec", "selector", "generatorRef"}
	default:
		return
	}
	ref, ok, _ := unstructured.NestedMap(o.Object, path...)
	if !ok {
		return
	}
	if ref["apiVersion"] == GeneratorsGroup+"/v1alpha1" && ref["kind"] == "Password" {
		ref["apiVersion"] = configv1alpha1.SchemeGroupVersion.String()
		_ = unstructured.SetNestedMap(o.Object, ref, path...)
	}
}
