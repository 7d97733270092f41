package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PushSecret writes keys of a Secret of its namespace to remote keys through
// stores. veil-syncer carries it out by creating SecretPushes
// (externalsecrets.veil.dev), so every provider write is an authorised,
// audited Kubernetes request.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories={veil},shortName=ps
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.spec.selector.secret.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PushSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   PushSecretSpec   `json:"spec"`
	Status PushSecretStatus `json:"status,omitempty"`
}

// PushSecretList is a list of PushSecrets.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type PushSecretList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PushSecret `json:"items"`
}

// PushSecretUpdatePolicy says whether an existing remote value is overwritten.
// +kubebuilder:validation:Enum=Replace;IfNotExists
type PushSecretUpdatePolicy string

const (
	// PushSecretUpdatePolicyReplace also overwrites remote values Veil did
	// not create, and makes them this PushSecret's; never one another
	// PushSecret owns.
	PushSecretUpdatePolicyReplace PushSecretUpdatePolicy = "Replace"
	// PushSecretUpdatePolicyIfNotExists never overwrites a remote value.
	PushSecretUpdatePolicyIfNotExists PushSecretUpdatePolicy = "IfNotExists"
)

// PushSecretDeletionPolicy says whether remote keys are deleted with the PushSecret.
// +kubebuilder:validation:Enum=Delete;None
type PushSecretDeletionPolicy string

const (
	PushSecretDeletionPolicyDelete PushSecretDeletionPolicy = "Delete"
	PushSecretDeletionPolicyNone   PushSecretDeletionPolicy = "None"
)

// PushSecretSpec names the source Secret, the stores and the remote keys.
type PushSecretSpec struct {
	// RefreshInterval is how often the push is repeated; 1h when unset.
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`

	// SecretStoreRefs are the stores to push to.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	SecretStoreRefs []SecretStoreRef `json:"secretStoreRefs"`

	// UpdatePolicy: unset, a push creates remote values and updates the ones
	// this PushSecret owns (Veil records the owner, namespace and UID, with
	// each remote key it creates), and refuses to overwrite any other;
	// Replace also takes over values Veil did not create; IfNotExists never
	// overwrites. No policy overwrites a value another PushSecret owns.
	UpdatePolicy PushSecretUpdatePolicy `json:"updatePolicy,omitempty"`

	// +kubebuilder:default=None
	DeletionPolicy PushSecretDeletionPolicy `json:"deletionPolicy,omitempty"`

	// Selector names the source Secret, in the PushSecret's namespace.
	// +required
	Selector PushSecretSelector `json:"selector"`

	// Data maps keys of the source Secret to remote keys.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	Data []PushSecretData `json:"data"`
}

// PushSecretSelector names the source Secret.
type PushSecretSelector struct {
	// +required
	Secret PushSecretSecret `json:"secret"`
}

// PushSecretSecret is a Secret of the PushSecret's namespace.
type PushSecretSecret struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// PushSecretData maps one key of the source Secret, or the whole Secret, to
// a remote key.
type PushSecretData struct {
	// +required
	Match PushSecretMatch `json:"match"`
	// ConversionStrategy, as in External Secrets Operator: "None" (the
	// default there and the only one here) pushes the key as it is named.
	// ESO's "ReverseUnicode" is not supported.
	// +kubebuilder:validation:Enum=None
	ConversionStrategy string `json:"conversionStrategy,omitempty"`
}

// PushSecretMatch names the source key and the remote key.
type PushSecretMatch struct {
	// SecretKey of the source Secret. Unset, as in External Secrets
	// Operator, the whole Secret is pushed: one JSON object of each of its
	// keys to its value as a string (UTF-8 values only), written as the
	// remote key's value or, with remoteRef.property, as that property.
	// +optional
	// +kubebuilder:validation:MinLength=1
	SecretKey string `json:"secretKey,omitempty"`
	// +required
	RemoteRef PushSecretRemoteRef `json:"remoteRef"`
}

// PushSecretRemoteRef names where a value is written.
type PushSecretRemoteRef struct {
	// RemoteKey is the remote secret (a Vault path, an AWS name).
	// +required
	// +kubebuilder:validation:MinLength=1
	RemoteKey string `json:"remoteKey"`
	// Property writes the value as one field of a JSON remote value.
	Property string `json:"property,omitempty"`
}

// PushSecretStatus is written by veil-syncer.
type PushSecretStatus struct {
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// RefreshTime is when the push was last carried out.
	RefreshTime *metav1.Time `json:"refreshTime,omitempty"`

	// SyncedResourceVersion is the PushSecret generation and source Secret
	// resourceVersion last pushed.
	SyncedResourceVersion string `json:"syncedResourceVersion,omitempty"`

	// SyncedPushSecrets maps "Kind/name" of each store to the remote keys
	// pushed: each remote key, followed by "#" and the property when one
	// property of it is written, to the result of its last push.
	SyncedPushSecrets map[string]map[string]PushSecretSyncedData `json:"syncedPushSecrets,omitempty"`

	// DataHMAC is an HMAC-SHA256 of the pushed data, where it is pushed, and
	// this PushSecret's namespace, name and UID, under a key only
	// veil-syncer holds: the same data pushed by another PushSecret has
	// another HMAC.
	DataHMAC string `json:"dataHMAC,omitempty"`
}

// PushSecretSyncedData records one pushed remote key.
type PushSecretSyncedData struct {
	// +required
	Match PushSecretMatch `json:"match"`
	// Result of the last push of this key: Pushed, Unchanged, SkippedExists,
	// Deleted, NotOwner (the key is another PushSecret's, or, for a
	// delete, not Veil's) or Failed. Only keys this PushSecret pushed
	// (pushTime set) are ever deleted with it.
	Result string `json:"result,omitempty"`
	// PushTime is when it was last written.
	PushTime *metav1.Time `json:"pushTime,omitempty"`
}
