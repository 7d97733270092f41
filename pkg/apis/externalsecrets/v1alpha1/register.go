package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the group veil-apiserver serves.
const GroupName = "externalsecrets.veil.dev"

// SchemeGroupVersion is the group version used to register these objects.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: "v1alpha1"}

// Resource takes an unqualified resource and returns a group-qualified one.
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

var (
	// localSchemeBuilder also receives the generated conversion and default
	// functions, through their init functions.
	localSchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes, addDefaultingFuncs, addFieldLabelConversions)
	// AddToScheme adds the types of this group version to a scheme.
	AddToScheme = localSchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(SchemeGroupVersion,
		&ExternalSecretValue{}, &ExternalSecretValueList{},
		&SecretPush{},
	)
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// TargetCreationPolicyField selects values by their ExternalSecret's
// spec.target.creationPolicy, a selectable field of the ExternalSecret CRD
// that is empty without a target. veil-syncer watches the values of
// ExternalSecrets it writes a Secret for with it.
const TargetCreationPolicyField = "spec.target.creationPolicy"

// addFieldLabelConversions lets field selectors on values name, besides
// metadata.name and metadata.namespace, TargetCreationPolicyField.
func addFieldLabelConversions(scheme *runtime.Scheme) error {
	return scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind("ExternalSecretValue"), func(label, value string) (string, string, error) {
		if label == TargetCreationPolicyField {
			return label, value, nil
		}
		return runtime.DefaultMetaV1FieldSelectorConversion(label, value)
	})
}
