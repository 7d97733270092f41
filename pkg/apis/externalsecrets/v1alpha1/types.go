package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExternalSecretValue holds the values of the ExternalSecret of the same
// namespace and name, read from its store when requested. It is never
// stored: reading it reads the provider (through Veil's cache), and reading
// it needs its own RBAC permission, separate from reading ExternalSecrets.
//
// +genclient
// +genclient:onlyVerbs=get,list
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type ExternalSecretValue struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata; labels are copied from the ExternalSecret.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Type is the Secret type the values are meant for (the target
	// template's type, Opaque otherwise).
	Type string `json:"type,omitempty"`

	// Data holds the values by key, base64-encoded like a Secret's data.
	Data map[string][]byte `json:"data,omitempty"`

	// Source says where the values came from. It never holds credentials.
	Source ValueSource `json:"source"`
}

// ValueSource describes where values came from.
type ValueSource struct {
	// StoreRef names the store the values were read through.
	StoreRef StoreRef `json:"storeRef"`
	// Provider is the kind of provider of the store (vault, aws, fake).
	Provider string `json:"provider"`
	// FetchTime is when the oldest of the values was read from the provider.
	FetchTime metav1.Time `json:"fetchTime"`
	// Remote lists the remote values read and their versions.
	// +listType=atomic
	Remote []RemoteValue `json:"remote,omitempty"`
}

// StoreRef names a SecretStore or ClusterSecretStore.
type StoreRef struct {
	// Kind is SecretStore or ClusterSecretStore.
	Kind string `json:"kind"`
	// Name of the store.
	Name string `json:"name"`
}

// RemoteValue names one remote value read and the version it had.
type RemoteValue struct {
	// Key is the remote key.
	Key string `json:"key"`
	// Version is the provider's version of the value, when it has one.
	Version string `json:"version,omitempty"`
}

// ExternalSecretValueList is a list of ExternalSecretValues.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type ExternalSecretValueList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []ExternalSecretValue `json:"items"`
}
