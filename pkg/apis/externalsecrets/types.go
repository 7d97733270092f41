package externalsecrets

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExternalSecretValue holds the resolved values of the ExternalSecret of the
// same namespace and name.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type ExternalSecretValue struct {
	metav1.TypeMeta
	metav1.ObjectMeta

	// Type is the Secret type the values are meant for.
	Type string
	// Data holds the values by key.
	Data map[string][]byte
	// Source says where the values came from.
	Source ValueSource
}

// ValueSource describes where values came from; it never holds credentials.
type ValueSource struct {
	StoreRef StoreRef
	Provider string
	// FetchTime is when the oldest of the values was read from the provider.
	FetchTime metav1.Time
	Remote    []RemoteValue
}

// StoreRef names the store the values were read through.
type StoreRef struct {
	Kind string
	Name string
}

// RemoteValue names one remote value read and the version it had.
type RemoteValue struct {
	Key     string
	Version string
}

// ExternalSecretValueList is a list of ExternalSecretValues.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type ExternalSecretValueList struct {
	metav1.TypeMeta
	metav1.ListMeta

	Items []ExternalSecretValue
}

// SecretPush asks veil-apiserver to write values to the remote keys named
// by the PushSecret of the same namespace and name, or to delete them.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type SecretPush struct {
	metav1.TypeMeta
	metav1.ObjectMeta

	Spec   SecretPushSpec
	Status SecretPushStatus
}

// SecretPushAction is what a SecretPush does.
type SecretPushAction string

const (
	SecretPushActionPush   SecretPushAction = "Push"
	SecretPushActionDelete SecretPushAction = "Delete"
)

// SecretPushSpec carries the values to push.
type SecretPushSpec struct {
	Action SecretPushAction
	// Data holds the values by the secretKey of the PushSecret's data[].match.
	Data map[string][]byte
	// SecretKeys, with action Delete only, names the source keys that
	// spec.dataTo pushed, so that their remote keys can be named again.
	SecretKeys []string
}

// SecretPushStatus reports what happened to each remote key.
type SecretPushStatus struct {
	Results []SecretPushResult
}

// SecretPushResult is the outcome for one remote key of one store.
type SecretPushResult struct {
	StoreRef  StoreRef
	SecretKey string
	RemoteKey string
	Property  string
	Result    string // one of the v1alpha1.SecretPushResult* values
	Reason    string
	Message   string
}
