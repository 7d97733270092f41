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
// +genclient:onlyVerbs=get,list,watch
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

// SecretPush asks veil-apiserver to write values to the remote keys that
// the PushSecret of the same namespace and name maps them to — or, with
// action Delete, to delete those remote keys. Like a TokenReview, it is only
// ever created, never stored: the response's status says what happened to
// each remote key, and never echoes a value. It is how veil-syncer pushes
// without holding provider credentials, and how a CI job with
// `create secretpushes` writes values under Kubernetes RBAC and audit.
//
// +genclient
// +genclient:onlyVerbs=create
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type SecretPush struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata; the name is the PushSecret's.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec SecretPushSpec `json:"spec"`
	// Status is set by veil-apiserver in the response.
	Status SecretPushStatus `json:"status,omitempty"`
}

// SecretPushAction is what a SecretPush does.
type SecretPushAction string

const (
	// SecretPushActionPush writes spec.data.
	SecretPushActionPush SecretPushAction = "Push"
	// SecretPushActionDelete deletes the PushSecret's remote keys (or
	// properties) that it owns; veil-syncer sends it when a PushSecret with
	// deletionPolicy Delete is deleted.
	SecretPushActionDelete SecretPushAction = "Delete"
)

// MaxWholeSecretBytes bounds the value under the empty key of
// SecretPushSpec.Data, the whole Secret as JSON: 1 MiB, what a Secret can
// hold and the most Veil serves or pushes as one value.
const MaxWholeSecretBytes = 1 << 20

// SecretPushSpec carries the values to push.
type SecretPushSpec struct {
	// Action is Push (the default) or Delete.
	// +optional
	Action SecretPushAction `json:"action,omitempty"`
	// Data holds the values, base64-encoded like a Secret's, by the
	// secretKey of the PushSecret's data[].match; the empty key holds the
	// value of the entries without secretKey, the whole Secret as one JSON
	// object of strings. With action Push it must hold exactly the
	// PushSecret's secretKeys and the source keys its dataTo matches;
	// with Delete, nothing.
	// +optional
	Data map[string][]byte `json:"data,omitempty"`
	// SecretKeys, with action Delete only, names the keys of the source
	// Secret that the PushSecret's dataTo pushed (veil-syncer takes them
	// from its status), so that their remote keys, which are made of those
	// names, can be named again and deleted. Only keys the PushSecret owns
	// are ever deleted. At most MaxDataToKeys (config.veil.dev) plus the
	// number of its data entries.
	// +listType=atomic
	// +optional
	SecretKeys []string `json:"secretKeys,omitempty"`
}

// SecretPushStatus reports what happened to each remote key.
type SecretPushStatus struct {
	// Results has one entry per store and remote key (or property).
	// +listType=atomic
	// +optional
	Results []SecretPushResult `json:"results,omitempty"`
}

// Values of SecretPushResult.Result, what happened to one remote key. The
// internal type carries the same strings, and veil-syncer copies them into
// PushSecret status.syncedPushSecrets[].result, so users read the same word
// in both places.
const (
	// SecretPushResultPushed: the value was written.
	SecretPushResultPushed = "Pushed"
	// SecretPushResultUnchanged: the remote key already held the value, and
	// nothing was written.
	SecretPushResultUnchanged = "Unchanged"
	// SecretPushResultSkippedExists: updatePolicy IfNotExists and the remote
	// key exists; it was left as it was.
	SecretPushResultSkippedExists = "SkippedExists"
	// SecretPushResultDeleted: action Delete removed the remote key (or its
	// property).
	SecretPushResultDeleted = "Deleted"
	// SecretPushResultNotOwner: the remote key is another PushSecret's (a
	// push or a delete) or, for a delete, not Veil's; it was left as it
	// was, and retrying does not change that.
	SecretPushResultNotOwner = "NotOwner"
	// SecretPushResultFailed: the remote key could not be written or
	// deleted; reason and message say why, and a retry may succeed.
	SecretPushResultFailed = "Failed"
	// SecretPushResultDryRun: a dry-run request passed every check, and
	// nothing was written.
	SecretPushResultDryRun = "DryRun"
)

// SecretPushResult is the outcome for one remote key of one store.
type SecretPushResult struct {
	// StoreRef names the store written through.
	StoreRef StoreRef `json:"storeRef"`
	// SecretKey is the key of spec.data that was pushed.
	SecretKey string `json:"secretKey"`
	// RemoteKey is the remote key written or deleted.
	RemoteKey string `json:"remoteKey"`
	// Property is the field of the remote JSON value written, if any.
	// +optional
	Property string `json:"property,omitempty"`
	// Result is one of the SecretPushResult* values: Pushed, Unchanged,
	// SkippedExists (updatePolicy IfNotExists), Deleted, NotOwner (the
	// remote key is another PushSecret's or, for a delete, not Veil's; it
	// was left as it was), Failed, or DryRun.
	Result string `json:"result"`
	// Reason classifies a failure: NotFound, Forbidden, Unavailable,
	// Invalid, Conflict or NotOwner.
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message says what went wrong and what to do; never a value.
	// +optional
	Message string `json:"message,omitempty"`
}
