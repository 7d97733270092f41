package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxClusterNamespaces is how many namespaces one ClusterExternalSecret or
// ClusterPushSecret is provisioned in at most. veil-syncer provisions the
// first ones by name and reports Ready=False, reason TooManyNamespaces, when
// more match: a selector matching every namespace of a large cluster is a
// mistake to fix, not thousands of objects to write.
const MaxClusterNamespaces = 500

// MaxFailedNamespaces bounds status.failedNamespaces; the Ready condition
// counts the rest.
const MaxFailedNamespaces = 100

// ClusterExternalSecret creates the same ExternalSecret in every namespace
// its selectors match, as External Secrets Operator's does. Creating one,
// or changing what it reads, needs every permission creating its
// ExternalSecret would need, granted in all namespaces (admission policy
// veil-clusterexternalsecrets): it is never a way around the rules for
// ExternalSecrets.
//
// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories={veil},shortName=ces
// +kubebuilder:printcolumn:name="Store",type=string,JSONPath=`.spec.externalSecretSpec.secretStoreRef.name`
// +kubebuilder:printcolumn:name="Refresh",type=string,JSONPath=`.spec.refreshTime`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterExternalSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   ClusterExternalSecretSpec `json:"spec"`
	Status ClusterSecretFanOutStatus `json:"status,omitempty"`
}

// ClusterExternalSecretList is a list of ClusterExternalSecrets.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type ClusterExternalSecretList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterExternalSecret `json:"items"`
}

// ClusterExternalSecretSpec is the ExternalSecret to create and where.
type ClusterExternalSecretSpec struct {
	// ExternalSecretSpec is the spec of each ExternalSecret.
	// +required
	ExternalSecretSpec ExternalSecretSpec `json:"externalSecretSpec"`

	// ExternalSecretName names each ExternalSecret; the
	// ClusterExternalSecret's name when unset.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	ExternalSecretName string `json:"externalSecretName,omitempty"`

	// ExternalSecretMetadata are labels and annotations set on each
	// ExternalSecret (veil-syncer adds its own label
	// veil.dev/cluster-external-secret).
	// +optional
	ExternalSecretMetadata ClusterSecretMetadata `json:"externalSecretMetadata,omitempty"`

	NamespaceSelection `json:",inline"`

	// RefreshTime is how often veil-syncer checks that the ExternalSecrets
	// exist, as they should, in the matching namespaces; it also acts at
	// once when a namespace or one of them changes. 1h when unset.
	// +optional
	RefreshTime *metav1.Duration `json:"refreshTime,omitempty"`
}

// NamespaceSelection says which namespaces a ClusterExternalSecret or
// ClusterPushSecret is provisioned in: those any selector matches, and
// those named. A selector lets whoever may label namespaces (patch on
// namespaces; not Kubernetes' admin or edit roles) make it match; the list
// of names, or a selector on kubernetes.io/metadata.name, which nobody can
// change, leaves the choice to the author alone.
type NamespaceSelection struct {
	// NamespaceSelector selects namespaces by label. Deprecated in
	// External Secrets Operator in favour of namespaceSelectors; both are
	// honoured.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// NamespaceSelectors select namespaces by label: a namespace any of
	// them matches is selected.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	NamespaceSelectors []*metav1.LabelSelector `json:"namespaceSelectors,omitempty"`

	// Namespaces selects namespaces by name, in addition to the selectors.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=500
	// +kubebuilder:validation:items:MaxLength=63
	Namespaces []string `json:"namespaces,omitempty"`
}

// ClusterSecretMetadata are labels and annotations set on the objects a
// ClusterExternalSecret or ClusterPushSecret creates.
type ClusterSecretMetadata struct {
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ClusterSecretFanOutStatus is written by veil-syncer.
type ClusterSecretFanOutStatus struct {
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ProvisionedNamespaces are the namespaces whose object is this
	// one's, as its spec says.
	// +listType=set
	ProvisionedNamespaces []string `json:"provisionedNamespaces,omitempty"`

	// FailedNamespaces are selected namespaces where it is not, and why
	// (at most 100; the Ready condition counts them all). What happens
	// inside each object (its sync) is in that object's own status.
	// +listType=map
	// +listMapKey=namespace
	FailedNamespaces []ClusterSecretNamespaceFailure `json:"failedNamespaces,omitempty"`
}

// ClusterSecretNamespaceFailure is a selected namespace left unprovisioned.
type ClusterSecretNamespaceFailure struct {
	// +required
	Namespace string `json:"namespace"`
	// Reason says why, and what to do.
	// +optional
	Reason string `json:"reason,omitempty"`
}
