package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// SecretStore says how to reach one provider and authenticate to it. It is
// usable only by ExternalSecrets and PushSecrets of its own namespace, and
// every credential Secret it names must be in that namespace too.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories={veil},shortName=ss
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.status.provider`
// +kubebuilder:printcolumn:name="Read-only",type=boolean,JSONPath=`.spec.readOnly`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SecretStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   SecretStoreSpec   `json:"spec"`
	Status SecretStoreStatus `json:"status,omitempty"`
}

// SecretStoreList is a list of SecretStores.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type SecretStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SecretStore `json:"items"`
}

// ClusterSecretStore is a SecretStore that ExternalSecrets of several
// namespaces may use. Unlike External Secrets Operator, a ClusterSecretStore
// without conditions may be used from no namespace at all.
//
// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories={veil},shortName=css
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.status.provider`
// +kubebuilder:printcolumn:name="Read-only",type=boolean,JSONPath=`.spec.readOnly`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterSecretStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   ClusterSecretStoreSpec `json:"spec"`
	Status SecretStoreStatus      `json:"status,omitempty"`
}

// ClusterSecretStoreList is a list of ClusterSecretStores.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type ClusterSecretStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterSecretStore `json:"items"`
}

// SecretStoreSpec is what a SecretStore and a ClusterSecretStore share.
type SecretStoreSpec struct {
	// Provider names exactly one provider and its connection.
	// +required
	Provider SecretStoreProvider `json:"provider"`

	// DefaultRefreshInterval is how old a value read through this store may
	// be, for ExternalSecrets that do not set spec.refreshInterval. Unset
	// means the apiserver's --default-refresh-interval.
	DefaultRefreshInterval *metav1.Duration `json:"defaultRefreshInterval,omitempty"`

	// ReadOnly refuses every push through this store.
	ReadOnly bool `json:"readOnly,omitempty"`

	// Controller, as in External Secrets Operator, names the ESO
	// controller instance meant to handle this store. Veil runs one: the
	// field is admitted so that ESO's manifests apply unchanged (kubectl
	// refuses an unknown field), and changes nothing; veil convert says so.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Controller string `json:"controller,omitempty"`

	// RetrySettings, as in External Secrets Operator, configure the retries
	// of provider calls. Admitted so that ESO's manifests apply unchanged;
	// Veil's provider calls keep their own bounded timeouts and retries
	// (a tenant cannot make a shared provider retry more), and veil
	// convert says so.
	// +optional
	RetrySettings *SecretStoreRetrySettings `json:"retrySettings,omitempty"`

	// RefreshInterval, as in External Secrets Operator (whole seconds, or
	// a duration such as "5m"), is how often ESO checks the store again.
	// Admitted so that ESO's manifests apply unchanged; Veil checks a
	// store when it or its credentials change and at every use, and veil
	// convert says so.
	// +optional
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : size(self) <= 32",message="refreshInterval is a number of seconds (0 or more) or a duration of at most 32 characters"
	RefreshInterval *intstr.IntOrString `json:"refreshInterval,omitempty"`
}

// SecretStoreRetrySettings are External Secrets Operator's retry settings,
// admitted for compatibility (see SecretStoreSpec.RetrySettings).
type SecretStoreRetrySettings struct {
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxRetries *int32 `json:"maxRetries,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=32
	RetryInterval *string `json:"retryInterval,omitempty"`
}

// ClusterSecretStoreSpec adds to a store the namespaces that may use it.
type ClusterSecretStoreSpec struct {
	SecretStoreSpec `json:",inline"`

	// Conditions name the namespaces that may use this store: a namespace
	// may if it matches any one condition. With no conditions, no namespace
	// may.
	// +kubebuilder:validation:MaxItems=32
	Conditions []ClusterSecretStoreCondition `json:"conditions,omitempty"`
}

// ClusterSecretStoreCondition matches namespaces; a namespace matches it if
// it matches any of its fields.
type ClusterSecretStoreCondition struct {
	// NamespaceSelector matches namespaces by their labels.
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// Namespaces lists namespaces by name.
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=63
	Namespaces []string `json:"namespaces,omitempty"`

	// NamespaceRegexes matches namespaces whose name matches one of these
	// regular expressions (Go's RE2 syntax, unanchored: "^team-" matches
	// "team-a"), as in External Secrets Operator. A pattern also matches
	// namespaces created later, by whoever may create namespaces: anchor
	// both ends to name namespaces ("^(team-a|team-b)$"). A pattern that
	// matches any name is reported like an open namespaceSelector.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=256
	NamespaceRegexes []string `json:"namespaceRegexes,omitempty"`

	// RemoteKeyPrefix confines the namespaces this condition matches to the
	// remote keys under it, for reads (data, dataFrom.extract and find) and
	// pushes. "{namespace}" stands for the reading or pushing namespace, so
	// "teams/{namespace}/" gives every namespace its own keys. It ends with
	// "/", and "{namespace}" is always followed by "/", so that namespace
	// "a" is never confined to a prefix of namespace "a-b"'s keys. Under a
	// prefix, remote keys may only use letters, digits and "/_+=.@-", with
	// no empty segment and no segment ending in "." (so no "." or ".."),
	// and are compared byte for byte: anything else (ARNs, encodings,
	// backslashes, non-ASCII) is refused. A namespace that several
	// conditions match may use a key if one of them has no prefix, or the
	// key is under the prefix of one of them.
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^/?([A-Za-z0-9_.+=@-]|\{namespace\})+(/([A-Za-z0-9_.+=@-]|\{namespace\})+)*/$`
	// +kubebuilder:validation:XValidation:rule="!self.contains('./')",message="no segment of remoteKeyPrefix may end with \".\" (so no \".\" or \"..\" segments)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('[{]namespace[}][^/]')",message="{namespace} in remoteKeyPrefix must be followed by \"/\", so that one namespace's prefix is never a prefix of another's"
	RemoteKeyPrefix string `json:"remoteKeyPrefix,omitempty"`
}

// SecretStoreProvider holds exactly one provider.
//
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type SecretStoreProvider struct {
	// Vault reads and writes a HashiCorp Vault (or OpenBao) KV engine.
	Vault *VaultProvider `json:"vault,omitempty"`

	// AWS reads and writes AWS Secrets Manager or Parameter Store.
	AWS *AWSProvider `json:"aws,omitempty"`

	// Fake serves the values written in this spec. It is for demos and tests:
	// its values are stored in etcd like any spec.
	Fake *FakeProvider `json:"fake,omitempty"`

	// Remote is a provider process named by a ProviderRegistration, which
	// holds the backend and its credentials: this store holds none.
	Remote *RemoteProvider `json:"remote,omitempty"`
}

// SecretStoreStatus reports what Veil knows of a store.
type SecretStoreStatus struct {
	// Provider is the kind of provider the store uses.
	Provider string `json:"provider,omitempty"`

	// Conditions: Ready says whether the store can be used.
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// FakeProvider serves fixed values.
type FakeProvider struct {
	// +listType=atomic
	Data []FakeProviderData `json:"data,omitempty"`
}

// FakeProviderData is one remote value of the fake provider.
type FakeProviderData struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
	// +required
	Value string `json:"value"`
	// Version, if set, is only served to reads that ask for it; the entry
	// without a version is the latest.
	Version string `json:"version,omitempty"`
}

// SecretKeySelector names one key of a Secret. The Secret must be in the
// namespace of the SecretStore that names it; Namespace is only for
// ClusterSecretStores, which have no namespace of their own.
type SecretKeySelector struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +required
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
	// Namespace of the Secret; only for ClusterSecretStores.
	Namespace *string `json:"namespace,omitempty"`
}

// ServiceAccountSelector names a ServiceAccount whose token Veil requests
// through the TokenRequest API. The ServiceAccount must be in the namespace
// of the SecretStore that names it.
type ServiceAccountSelector struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Namespace of the ServiceAccount; only for ClusterSecretStores.
	Namespace *string `json:"namespace,omitempty"`
	// Audiences of the requested token.
	// +listType=set
	Audiences []string `json:"audiences,omitempty"`
}

// CAProvider names a CA bundle held in a Secret or ConfigMap.
type CAProvider struct {
	// +required
	// +kubebuilder:validation:Enum=Secret;ConfigMap
	Type string `json:"type"`
	// +required
	Name string `json:"name"`
	// +required
	Key string `json:"key"`
	// Namespace of the object; only for ClusterSecretStores.
	Namespace *string `json:"namespace,omitempty"`
}
