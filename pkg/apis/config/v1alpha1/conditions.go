package v1alpha1

// ConditionReady is the condition veil-syncer keeps in the status of every
// ExternalSecret with a target and every PushSecret. `kubectl get` shows it
// in the READY column. Its reason says why it is True or False; the
// failure reasons are also the result label of veil_syncer_syncs_total
// (ExternalSecrets) and veil_syncer_push_syncs_total (PushSecrets), so an
// alert and a `kubectl describe` name the same cause.
const ConditionReady = "Ready"

// ConditionSyncWindow is on ExternalSecrets with spec.syncWindows: False
// while veil-syncer holds a refresh of the target because of a window
// (reason SyncWindowHeld, saying until when), True when refreshes may
// happen (reason SyncWindowOpen). Ready keeps the outcome of the last sync.
const ConditionSyncWindow = "SyncWindow"

// Reasons of the SyncWindow condition.
const (
	ReasonSyncWindowHeld = "SyncWindowHeld"
	ReasonSyncWindowOpen = "SyncWindowOpen"
)

// Reasons of an ExternalSecret's Ready condition.
const (
	// ReasonSynced: the target Secret holds the remote values (True). A
	// PushSecret uses it too: every remote key was pushed.
	ReasonSynced = "Synced"
	// ReasonCreationPolicyNone: creationPolicy None, so veil-syncer writes
	// no Secret and has nothing to keep in sync (True).
	ReasonCreationPolicyNone = "CreationPolicyNone"
	// ReasonTargetConflict: the target Secret exists and is not this
	// ExternalSecret's (another ExternalSecret's, or not veil-syncer's, or
	// creationPolicy Merge without the Secret's veil.dev/merge-from naming
	// this ExternalSecret). Nothing was written.
	ReasonTargetConflict = "TargetConflict"
	// ReasonTargetMissing: creationPolicy Merge and the target Secret does
	// not exist; veil-syncer only merges into a Secret someone created.
	ReasonTargetMissing = "TargetMissing"
	// ReasonTargetImmutable: the target Secret is immutable and its data
	// differs; delete it to have it written again.
	ReasonTargetImmutable = "TargetImmutable"
	// ReasonTargetInvalid: the Secret the ExternalSecret asks for cannot be
	// built, or kube-apiserver refused it as written (its type's required
	// keys, a too large value, ...); the message says what to fix.
	ReasonTargetInvalid = "TargetInvalid"
	// ReasonTemplateError: spec.target.template does not render; the
	// message says where, never with a value.
	ReasonTemplateError = "TemplateError"
	// ReasonRemoteNotFound: a remote value the ExternalSecret names does
	// not exist; the target keeps or loses its data as deletionPolicy says.
	ReasonRemoteNotFound = "RemoteNotFound"
	// ReasonValuesUnavailable: veil-apiserver could not give the values
	// (provider outage, a store the namespace may not use, ...); the target
	// keeps its last data and is retried with backoff.
	ReasonValuesUnavailable = "ValuesUnavailable"
	// ReasonWriteFailed: writing the target Secret failed for a reason that
	// may pass; it is retried with backoff.
	ReasonWriteFailed = "WriteFailed"
	// ReasonRolloutFailed: the Secret was written but a workload of
	// spec.target.rolloutRestartTargets could not be restarted.
	ReasonRolloutFailed = "RolloutRestartFailed"
	// ReasonNamespaceExcluded: veil-syncer never writes in this namespace
	// (--excluded-namespaces); move the ExternalSecret elsewhere or remove
	// its target.
	ReasonNamespaceExcluded = "NamespaceExcluded"
)

// Reasons of a PushSecret's Ready condition besides ReasonSynced.
const (
	// ReasonNotPermitted: the namespace has not granted veil-syncer read
	// on the source Secret or create on secretpushes (bind the ClusterRole
	// veil-syncer:push-source in the namespace).
	ReasonNotPermitted = "NotPermitted"
	// ReasonSourceNotFound: the source Secret does not exist. Nothing is
	// pushed, and no remote key is deleted.
	ReasonSourceNotFound = "SourceNotFound"
	// ReasonKeyNotFound: the source Secret lacks a key of data[].match.
	// Nothing is pushed, and no remote key is deleted.
	ReasonKeyNotFound = "KeyNotFound"
	// ReasonSourceInvalid: the source Secret cannot be pushed whole, for
	// the data entries without secretKey (a value that is not UTF-8, or
	// more than 1 MiB as JSON). Nothing is pushed, and no remote key is
	// deleted.
	ReasonSourceInvalid = "SourceInvalid"
	// ReasonTooManyKeys: spec.dataTo matches more than MaxDataToKeys keys
	// of the source Secret. Nothing is pushed, and no remote key is
	// deleted.
	ReasonTooManyKeys = "TooManyKeys"
	// ReasonSourceUnavailable: the source Secret could not be read for a
	// reason that may pass; it is retried with backoff.
	ReasonSourceUnavailable = "SourceUnavailable"
	// ReasonPushRefused: veil-apiserver refused the SecretPush and nothing
	// was written (a read-only store, a store the namespace may not use,
	// ...); the message says what to fix.
	ReasonPushRefused = "PushRefused"
	// ReasonPushFailed: a remote key could not be written, or the
	// SecretPush got no answer; status.syncedPushSecrets says which key.
	ReasonPushFailed = "PushFailed"
	// ReasonDeleteFailed: the PushSecret is being deleted and its remote
	// keys could not be, for now; the finalizer stays until they are.
	ReasonDeleteFailed = "DeleteFailed"
	// ReasonDeleteRefused: the PushSecret is being deleted and some of its
	// remote keys will never be deleted for it (not its own, or a store
	// that refuses): they are left, and the finalizer is released.
	ReasonDeleteRefused = "DeleteRefused"
	// ReasonFinalizerFailed: the finalizer veil.dev/pushsecret could not
	// be added or removed; it is retried with backoff.
	ReasonFinalizerFailed = "FinalizerFailed"
)

// The condition veil-apiserver keeps in every ClusterSecretStore's status
// about which namespaces its spec.conditions let in.
const (
	// ConditionMatchesAllNamespaces is True when a namespaceSelector of
	// spec.conditions matches every namespace that lacks particular labels,
	// including namespaces created later: `{}`, or only NotIn and
	// DoesNotExist expressions. Whoever may create a namespace, or label
	// their own, can then use the store.
	ConditionMatchesAllNamespaces = "MatchesAllNamespaces"

	// ReasonOpenNamespaceSelector: a namespaceSelector matches a new
	// namespace without labels.
	ReasonOpenNamespaceSelector = "OpenNamespaceSelector"
	// ReasonNamespacesChosen: every condition needs a namespace to be named
	// or to carry labels a new namespace does not have.
	ReasonNamespacesChosen = "NamespacesChosen"
)
