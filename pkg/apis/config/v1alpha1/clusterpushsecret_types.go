package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterPushSecret creates the same PushSecret in every namespace its
// selectors match, as External Secrets Operator's does. Creating one, or
// changing it, needs the permissions creating its PushSecret would need,
// granted in all namespaces (admission policy veil-clusterpushsecrets); and
// veil-syncer still pushes only from namespaces that granted it
// veil-syncer:push-source.
//
// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories={veil},shortName=cps
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.spec.pushSecretSpec.selector.secret.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterPushSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   ClusterPushSecretSpec     `json:"spec"`
	Status ClusterSecretFanOutStatus `json:"status,omitempty"`
}

// ClusterPushSecretList is a list of ClusterPushSecrets.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type ClusterPushSecretList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterPushSecret `json:"items"`
}

// ClusterPushSecretSpec is the PushSecret to create and where.
type ClusterPushSecretSpec struct {
	// PushSecretSpec is the spec of each PushSecret. Its selector names a
	// Secret: a generator (selector.generatorRef) is not supported here,
	// because each namespace's generator would be used on the
	// ClusterPushSecret author's behalf.
	// +required
	// +kubebuilder:validation:XValidation:rule="!has(self.selector.generatorRef)",message="a ClusterPushSecret cannot push a generator's values (selector.generatorRef): use a PushSecret in each namespace"
	PushSecretSpec PushSecretSpec `json:"pushSecretSpec"`

	// PushSecretName names each PushSecret; the ClusterPushSecret's name
	// when unset.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	PushSecretName string `json:"pushSecretName,omitempty"`

	// PushSecretMetadata are labels and annotations set on each PushSecret
	// (veil-syncer adds its own label veil.dev/cluster-push-secret).
	// +optional
	PushSecretMetadata ClusterSecretMetadata `json:"pushSecretMetadata,omitempty"`

	NamespaceSelection `json:",inline"`

	// RefreshTime is how often veil-syncer checks that the PushSecrets
	// exist, as they should, in the matching namespaces. 1h when unset.
	// +optional
	RefreshTime *metav1.Duration `json:"refreshTime,omitempty"`
}
