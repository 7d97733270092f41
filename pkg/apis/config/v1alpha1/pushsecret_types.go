package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
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
//
// +kubebuilder:validation:XValidation:rule="(has(self.data) && size(self.data) > 0) || (has(self.dataTo) && size(self.dataTo) > 0)",message="set data or dataTo: there is nothing to push"
// +kubebuilder:validation:XValidation:rule="!has(self.dataTo) || self.dataTo.all(d, self.secretStoreRefs.exists(r, r.name == d.storeRef.name && (has(r.kind) ? r.kind : 'SecretStore') == (has(d.storeRef.kind) ? d.storeRef.kind : 'SecretStore')))",message="every dataTo[].storeRef must be one of secretStoreRefs"
// +kubebuilder:validation:XValidation:rule="!has(self.selector.generatorRef) || ((!has(self.dataTo) || size(self.dataTo) == 0) && !has(self.template))",message="a PushSecret with selector.generatorRef pushes the generated keys as data names them: dataTo and template apply to a source Secret only; map each generated key in data"
type PushSecretSpec struct {
	// RefreshInterval is how often the push is repeated; 1h when unset.
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`

	// SecretStoreRefs are the stores to push to.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
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

	// Data maps keys of the source Secret to remote keys. An entry here
	// names its source key for every store, and takes that key out of
	// every dataTo entry, as in External Secrets Operator.
	// +optional
	// +listType=atomic
	Data []PushSecretData `json:"data,omitempty"`

	// Template, as in External Secrets Operator, is applied to the source
	// Secret's data before anything is pushed: data and dataTo then name
	// keys of the rendered data. The engine and bounds of an
	// ExternalSecret's target template (engineVersion v2); templateFrom
	// ConfigMaps are read in the PushSecret's namespace, and whoever names
	// one must be allowed to get it. type and metadata have no effect on a
	// push.
	// +optional
	Template *ExternalSecretTemplate `json:"template,omitempty"`

	// DataTo pushes many keys of the source Secret at once, each to the one
	// store its entry names (see PushSecretDataTo). The keys all dataTo
	// entries match, together, are bounded by MaxDataToKeys.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	DataTo []PushSecretDataTo `json:"dataTo,omitempty"`
}

// MaxPushMetadataBytes bounds data[].metadata and dataTo[].metadata, as JSON.
const MaxPushMetadataBytes = 16 << 10

// MaxDataToKeys bounds the source keys that spec.dataTo may push in one
// PushSecret, so that whoever may write the source Secret cannot make one
// push write an unbounded number of remote keys: a push that would take
// more is refused whole (Ready=False, TooManyKeys), nothing written.
const MaxDataToKeys = 100

// MaxDataToRemoteKeyLength bounds a remote key that dataTo derives from a
// source key name, as the CRD bounds one written in spec.data.
const MaxDataToRemoteKeyLength = 512

// PushSecretDataTo pushes the keys of the source Secret that match, each
// to a remote key named after it (rewritten by rewrite), or, with
// remoteKey, all of them as one JSON object of strings under that remote
// key, as External Secrets Operator does. Two source keys that end as the
// same remote key make the push fail, naming both, rather than one of them
// winning; so does a remote key a data entry also writes.
//
// +kubebuilder:validation:XValidation:rule="!has(self.remoteKey) || !has(self.rewrite) || size(self.rewrite) == 0",message="remoteKey and rewrite are mutually exclusive: rewrite names each key's own remote key, remoteKey pushes them all as one"
type PushSecretDataTo struct {
	// StoreRef is the store these keys are pushed to; it must be one of
	// spec.secretStoreRefs. Veil names it; ESO's labelSelector is not
	// supported.
	// +required
	StoreRef SecretStoreRef `json:"storeRef"`
	// RemoteKey, when set, is the one remote key that receives every
	// matched key, as a JSON object of each key to its value as a string.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	RemoteKey string `json:"remoteKey,omitempty"`
	// Match selects source keys; every key when unset.
	// +optional
	Match *PushSecretDataToMatch `json:"match,omitempty"`
	// Rewrite renames each matched key into its remote key, each operation
	// applied in order to the output of the one before, as dataFrom's
	// rewrite of an ExternalSecret. Without it, a key is pushed to the
	// remote key of its own name.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	// +optional
	Rewrite []ExternalSecretRewrite `json:"rewrite,omitempty"`
	// Metadata, as in data[], is what the provider records with the remote key besides
	// its value, as in External Secrets Operator: an object of apiVersion
	// kubernetes.external-secrets.io/v1alpha1, kind PushSecretMetadata,
	// whose spec each provider defines (AWS Secrets Manager: tags,
	// description, kmsKeyId, secretPushFormat, replicationLocations;
	// Parameter Store: secretType, kmsKeyID, tier, tags, description;
	// Vault KV v2: customMetadata). A field the store's provider does not
	// know fails the push of the key, naming it, rather than being
	// dropped. It comes from this spec only, never from the Secret, and
	// is at most 16 KiB as JSON. Metadata without that wrapper (some of
	// ESO's examples show one) is admitted, as ESO admits it, and fails the
	// push of the key with a status saying how to wrap it, as in ESO.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:validation:MaxProperties=16
	Metadata *apiextensionsv1.JSON `json:"metadata,omitempty"`
	// ConversionStrategy, as in data[]: None only.
	// +kubebuilder:validation:Enum=None
	// +optional
	ConversionStrategy string `json:"conversionStrategy,omitempty"`
}

// PushSecretDataToMatch selects source keys by name.
type PushSecretDataToMatch struct {
	// Regexp (RE2, unanchored, as ESO) that a key name must match; every
	// key when unset or empty.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Regexp string `json:"regexp,omitempty"`
}

// PushSecretSelector names the source: a Secret, or a generator whose
// freshly generated value is pushed (rotation). Exactly one of them.
//
// +kubebuilder:validation:XValidation:rule="has(self.secret) != has(self.generatorRef)",message="set exactly one of selector.secret (a Secret to push) and selector.generatorRef (a Password to generate and push)"
type PushSecretSelector struct {
	// Secret is a Secret of the PushSecret's namespace.
	// +optional
	Secret PushSecretSecret `json:"secret,omitzero"`
	// GeneratorRef is a Password of the PushSecret's namespace: each
	// refresh pushes newly generated passwords (its keys, "password" by
	// default, are the secretKeys of data), never stored by Veil.
	// +optional
	GeneratorRef *PushSecretGeneratorRef `json:"generatorRef,omitempty"`
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
	// Metadata is what the provider records with the remote key besides
	// its value, as in External Secrets Operator: an object of apiVersion
	// kubernetes.external-secrets.io/v1alpha1, kind PushSecretMetadata,
	// whose spec each provider defines (AWS Secrets Manager: tags,
	// description, kmsKeyId, secretPushFormat, replicationLocations;
	// Parameter Store: secretType, kmsKeyID, tier, tags, description;
	// Vault KV v2: customMetadata). A field the store's provider does not
	// know fails the push of the key, naming it, rather than being
	// dropped. It comes from this spec only, never from the Secret, and
	// is at most 16 KiB as JSON. Metadata without that wrapper (some of
	// ESO's examples show one) is admitted, as ESO admits it, and fails the
	// push of the key with a status saying how to wrap it, as in ESO.
	// +optional
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:validation:MaxProperties=16
	Metadata *apiextensionsv1.JSON `json:"metadata,omitempty"`
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
