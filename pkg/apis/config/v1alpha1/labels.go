package v1alpha1

// Marks veil-syncer puts on, or reads from, the objects users see. The
// keys are part of the API: users select on them, set them, and find them
// in `kubectl get -o yaml`.
const (
	// ManagedByLabel, with the value ManagedBySyncer, marks a Secret
	// veil-syncer created for an ExternalSecret. veil-syncer writes only
	// to Secrets that carry it (or opted in with MergeFromAnnotation), and
	// its admission policy lets it write no other Secret.
	ManagedByLabel = "veil.dev/managed-by"
	// ManagedBySyncer is the value of ManagedByLabel.
	ManagedBySyncer = "veil-syncer"
	// ExternalSecretAnnotation names the ExternalSecret a Secret with
	// ManagedByLabel belongs to, so two ExternalSecrets naming one target
	// cannot take it from each other.
	ExternalSecretAnnotation = "veil.dev/external-secret"
	// MergeFromAnnotation is how a Secret opts in to creationPolicy Merge:
	// its value names the one ExternalSecret of its namespace allowed to
	// add keys to it.
	MergeFromAnnotation = "veil.dev/merge-from"
	// DataHMACAnnotation is an HMAC-SHA256 of the data veil-syncer last
	// wrote to a Secret, under a key only veil-syncer holds: it changes
	// when the data does and reveals nothing about the values.
	DataHMACAnnotation = "veil.dev/data-hmac"
	// RestartedForAnnotation is set on the pod template of each workload
	// of spec.target.rolloutRestartTargets to "<ExternalSecret>@<data
	// HMAC>": a new value restarts the workload, and a retried patch with
	// the same value restarts nothing.
	RestartedForAnnotation = "veil.dev/restarted-for"
	// ClusterExternalSecretLabel names the ClusterExternalSecret an
	// ExternalSecret was created for; with an owner reference to it, it is
	// what lets veil-syncer change or delete that ExternalSecret (admission
	// policy veil-syncer-externalsecrets).
	ClusterExternalSecretLabel = "veil.dev/cluster-external-secret"
	// ClusterPushSecretLabel is the same for a ClusterPushSecret's PushSecrets.
	ClusterPushSecretLabel = "veil.dev/cluster-push-secret"
)

// PushSecretFinalizer holds a PushSecret with deletionPolicy Delete until
// veil-syncer has deleted its remote keys (or found that it never will, see
// ReasonDeleteRefused).
const PushSecretFinalizer = "veil.dev/pushsecret"
