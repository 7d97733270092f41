package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ExternalSecret names remote values. Reading it shows where values come
// from; reading the ExternalSecretValue of the same name (group
// externalsecrets.veil.dev) returns them, under a separate RBAC permission.
// With spec.target, veil-syncer also keeps a Secret in sync.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,categories={veil},shortName=es
// +kubebuilder:printcolumn:name="Store",type=string,JSONPath=`.spec.secretStoreRef.name`
// +kubebuilder:printcolumn:name="Refresh",type=string,JSONPath=`.spec.refreshInterval`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.target.name`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:selectablefield:JSONPath=`.spec.target.creationPolicy`
type ExternalSecret struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   ExternalSecretSpec   `json:"spec"`
	Status ExternalSecretStatus `json:"status,omitempty"`
}

// ExternalSecretList is a list of ExternalSecrets.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type ExternalSecretList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ExternalSecret `json:"items"`
}

// ExternalSecretSpec names the store and the remote values.
//
// +kubebuilder:validation:XValidation:rule="has(self.data) || has(self.dataFrom)",message="name at least one value in data or dataFrom"
// +kubebuilder:validation:XValidation:rule="has(self.secretStoreRef) || ((!has(self.data) || self.data.all(d, has(d.sourceRef) && has(d.sourceRef.storeRef))) && (!has(self.dataFrom) || self.dataFrom.all(d, has(d.sourceRef) && has(d.sourceRef.storeRef))))",message="without spec.secretStoreRef, every data and dataFrom entry must name its store in sourceRef.storeRef: set spec.secretStoreRef as the store of the others"
// +kubebuilder:validation:XValidation:rule="(has(self.data) ? self.data.filter(d, has(d.sourceRef) && has(d.sourceRef.storeRef)).size() : 0) + (has(self.dataFrom) ? self.dataFrom.filter(d, has(d.sourceRef) && has(d.sourceRef.storeRef)).size() : 0) <= 20",message="at most 20 data and dataFrom entries may name their own store in sourceRef.storeRef: read the others through spec.secretStoreRef"
type ExternalSecretSpec struct {
	// SecretStoreRef names the store to read through: every data and
	// dataFrom entry without its own sourceRef.storeRef. It may be unset
	// only when every entry names its store.
	// +optional
	SecretStoreRef *SecretStoreRef `json:"secretStoreRef,omitempty"`

	// RefreshInterval is how old a value served for this ExternalSecret may
	// be, and how often veil-syncer refreshes its target. Unset means the
	// store's defaultRefreshInterval.
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`

	// RefreshPolicy says when veil-syncer writes the target again, as in
	// External Secrets Operator: Periodic (every refreshInterval, and when
	// values change), CreatedOnce (once; never updated after the Secret
	// was written) or OnChange (only when this ExternalSecret's spec,
	// labels or annotations change). Reads of the ExternalSecretValue are
	// not affected.
	// +optional
	RefreshPolicy RefreshPolicy `json:"refreshPolicy,omitempty"`

	// Data maps keys of the result to remote values.
	// +listType=map
	// +listMapKey=secretKey
	// +kubebuilder:validation:MaxItems=500
	Data []ExternalSecretData `json:"data,omitempty"`

	// DataFrom adds whole remote secrets to the result; data wins over
	// dataFrom for the same key, and later dataFrom entries win over earlier.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	DataFrom []ExternalSecretDataFromRemoteRef `json:"dataFrom,omitempty"`

	// Target asks veil-syncer to keep a Secret with these values. Without
	// it, values are only served through the API and never stored in etcd.
	Target *ExternalSecretTarget `json:"target,omitempty"`

	// SyncWindows restricts when veil-syncer refreshes the target of a
	// Periodic ExternalSecret, as in External Secrets Operator: schedules
	// in UTC. The first write, and writes after a change of this
	// ExternalSecret's spec, labels or annotations, are never held; reads
	// of the ExternalSecretValue are not affected.
	// +optional
	SyncWindows *SyncWindows `json:"syncWindows,omitempty"`
}

// MaxSyncWindows bounds spec.syncWindows.windows.
const MaxSyncWindows = 10

// MaxSyncWindowDuration bounds a window's duration: 31 days.
const MaxSyncWindowDuration = 31 * 24 * time.Hour

// SyncWindowKind says whether windows allow or deny refreshes.
// +kubebuilder:validation:Enum=allow;deny
type SyncWindowKind string

const (
	// SyncWindowAllow: refreshes only while at least one window is open.
	SyncWindowAllow SyncWindowKind = "allow"
	// SyncWindowDeny: no refresh while any window is open.
	SyncWindowDeny SyncWindowKind = "deny"
)

// SyncWindows are times when refreshes of the target are allowed (kind
// allow) or held (kind deny).
type SyncWindows struct {
	// +required
	Kind SyncWindowKind `json:"kind"`
	// Windows open at each time of their schedule, for their duration.
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=10
	Windows []SyncWindow `json:"windows"`
}

// SyncWindow opens at every time of Schedule and stays open for Duration.
//
// +kubebuilder:validation:XValidation:rule="duration(self.duration) > duration('0s') && duration(self.duration) <= duration('744h')",message="duration must be more than 0s and at most 744h (31 days)"
type SyncWindow struct {
	// Schedule is a cron schedule in UTC: five fields (minute, hour, day
	// of month, month, day of week; "*", numbers, ranges "a-b", steps "/n",
	// lists "a,b", month and weekday names) or @yearly, @annually,
	// @monthly, @weekly, @daily, @midnight or @hourly. "@every" has no
	// fixed start and is not accepted.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^(@(annually|yearly|monthly|weekly|daily|midnight|hourly)|[^\s]+( [^\s]+){4})$`
	Schedule string `json:"schedule"`
	// Duration is how long the window stays open after each start (at
	// most 744h).
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	Duration metav1.Duration `json:"duration"`
}

// RefreshPolicy says when veil-syncer writes a target again.
// +kubebuilder:validation:Enum=Periodic;CreatedOnce;OnChange
type RefreshPolicy string

const (
	// RefreshPeriodic syncs every refreshInterval and when values change
	// (the default).
	RefreshPeriodic RefreshPolicy = "Periodic"
	// RefreshCreatedOnce writes the Secret once and never updates it.
	RefreshCreatedOnce RefreshPolicy = "CreatedOnce"
	// RefreshOnChange syncs only when the ExternalSecret's spec, labels
	// or annotations change.
	RefreshOnChange RefreshPolicy = "OnChange"
)

// StoreKind is SecretStore or ClusterSecretStore.
// +kubebuilder:validation:Enum=SecretStore;ClusterSecretStore
type StoreKind string

const (
	SecretStoreKind        StoreKind = "SecretStore"
	ClusterSecretStoreKind StoreKind = "ClusterSecretStore"
)

// SecretStoreRef names a SecretStore of the same namespace or a ClusterSecretStore.
type SecretStoreRef struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Kind of the store; SecretStore when unset.
	// +kubebuilder:default=SecretStore
	Kind StoreKind `json:"kind,omitempty"`
}

// ExternalSecretData maps one key of the result to one remote value.
type ExternalSecretData struct {
	// SecretKey is the key of the value in the result.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	SecretKey string `json:"secretKey"`

	// +required
	RemoteRef ExternalSecretDataRemoteRef `json:"remoteRef"`

	// SourceRef names the store this entry is read from, instead of
	// spec.secretStoreRef.
	// +optional
	SourceRef *StoreSourceRef `json:"sourceRef,omitempty"`
}

// MaxSourceStoreRefs bounds the data and dataFrom entries that name their
// own store (sourceRef.storeRef): each is checked on every write by the
// admission policy veil-externalsecrets.
const MaxSourceStoreRefs = 20

// MaxStoresPerExternalSecret bounds the distinct stores one
// ExternalSecret reads from (spec.secretStoreRef and every
// sourceRef.storeRef).
const MaxStoresPerExternalSecret = 5

// StoreSourceRef names the store one data or dataFrom entry is read from.
// Generators (generatorRef) are not supported by Veil.
//
// +kubebuilder:validation:XValidation:rule="!has(self.generatorRef)",message="an ExternalSecret cannot read a generator (sourceRef.generatorRef): Veil never stores generated values. Read the value from a store (sourceRef.storeRef, or spec.secretStoreRef); to generate and rotate a password, push it with a PushSecret whose selector.generatorRef names a Password, and read it back from that store"
// +kubebuilder:validation:XValidation:rule="has(self.storeRef) || has(self.generatorRef)",message="sourceRef names no source: set storeRef, or remove sourceRef to use spec.secretStoreRef"
type StoreSourceRef struct {
	// StoreRef names a SecretStore of the same namespace or a
	// ClusterSecretStore, with the same rules as spec.secretStoreRef.
	// +optional
	StoreRef *SecretStoreRef `json:"storeRef,omitempty"`
	// GeneratorRef is accepted by the schema so that External Secrets
	// Operator manifests are refused with a reason: Veil has no generators.
	// +optional
	GeneratorRef *GeneratorRef `json:"generatorRef,omitempty"`
}

// GeneratorRef names an External Secrets Operator generator. Veil refuses it.
type GeneratorRef struct {
	// +kubebuilder:validation:MaxLength=253
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Kind string `json:"kind,omitempty"`
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Name string `json:"name,omitempty"`
}

// DecodingStrategy says how a remote value is decoded before it is served.
// +kubebuilder:validation:Enum=None;Base64;Base64URL;Auto
type DecodingStrategy string

const (
	DecodeNone      DecodingStrategy = "None"
	DecodeBase64    DecodingStrategy = "Base64"
	DecodeBase64URL DecodingStrategy = "Base64URL"
	// DecodeAuto decodes padded base64 or base64url when the value is
	// such, and keeps it as it is otherwise (as External Secrets Operator).
	DecodeAuto DecodingStrategy = "Auto"
)

// ExternalSecretDataRemoteRef names a remote value.
type ExternalSecretDataRemoteRef struct {
	// Key is the remote key (a Vault path, an AWS secret name or ARN, a
	// parameter name).
	// +required
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`

	// Property selects a field inside a JSON value ("a.b" for nesting).
	Property string `json:"property,omitempty"`

	// Version of the remote value; the latest when unset.
	Version string `json:"version,omitempty"`

	// DecodingStrategy; None when unset.
	// +kubebuilder:default=None
	DecodingStrategy DecodingStrategy `json:"decodingStrategy,omitempty"`

	// ConversionStrategy says how dataFrom.extract turns field names into
	// Secret keys when no rewrite is given: Default replaces each character
	// a Secret key cannot hold with "_", Unicode with "_UXXXX_" (its code
	// point in hex). It has no effect in data[], whose secretKey is given.
	// +kubebuilder:default=Default
	ConversionStrategy ConversionStrategy `json:"conversionStrategy,omitempty"`

	// MetadataPolicy Fetch reads the remote key's metadata instead of its
	// value (Vault KV v2 custom_metadata and version metadata, AWS tags),
	// as a JSON object that property selects from. None (the default)
	// reads the value.
	// +kubebuilder:default=None
	MetadataPolicy MetadataPolicy `json:"metadataPolicy,omitempty"`
}

// ConversionStrategy says how remote names become Secret keys.
// +kubebuilder:validation:Enum=Default;Unicode
type ConversionStrategy string

const (
	// ConvertDefault replaces every character a Secret key cannot hold with "_".
	ConvertDefault ConversionStrategy = "Default"
	// ConvertUnicode replaces it with "_UXXXX_", its code point in hex,
	// so distinct names stay distinct.
	ConvertUnicode ConversionStrategy = "Unicode"
)

// MetadataPolicy says whether a remote reference reads a value or its metadata.
// +kubebuilder:validation:Enum=None;Fetch
type MetadataPolicy string

const (
	MetadataNone  MetadataPolicy = "None"
	MetadataFetch MetadataPolicy = "Fetch"
)

// MaxRewrites bounds dataFrom[].rewrite: each is run over every key of
// the entry on every read.
const MaxRewrites = 10

// ExternalSecretDataFromRemoteRef adds many keys at once: exactly one of
// extract and find.
//
// +kubebuilder:validation:XValidation:rule="has(self.extract) != has(self.find) || (has(self.sourceRef) && has(self.sourceRef.generatorRef))",message="set exactly one of extract and find"
type ExternalSecretDataFromRemoteRef struct {
	// Extract adds every field of one JSON remote value.
	Extract *ExternalSecretDataRemoteRef `json:"extract,omitempty"`
	// Find adds every remote value that matches, keyed by its name.
	Find *ExternalSecretFind `json:"find,omitempty"`

	// Rewrite renames the keys extract or find returns, each operation
	// applied in order to the output of the one before, as in External
	// Secrets Operator; conversionStrategy is then not applied. Every key
	// must end as a valid Secret key.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	// +optional
	Rewrite []ExternalSecretRewrite `json:"rewrite,omitempty"`

	// SourceRef names the store this entry is read from, instead of
	// spec.secretStoreRef.
	// +optional
	SourceRef *StoreSourceRef `json:"sourceRef,omitempty"`
}

// ExternalSecretRewrite is one rename: exactly one of regexp and transform.
//
// +kubebuilder:validation:XValidation:rule="has(self.regexp) != has(self.transform)",message="set exactly one of regexp and transform in each rewrite (merge is not supported by Veil)"
type ExternalSecretRewrite struct {
	// Regexp replaces every match of source (RE2 syntax) with target, in
	// which $1 or ${name} stand for groups.
	// +optional
	Regexp *RewriteRegexp `json:"regexp,omitempty"`
	// Transform renders template with the key as .value, with the
	// functions and bounds of target templates.
	// +optional
	Transform *RewriteTransform `json:"transform,omitempty"`
}

// RewriteRegexp replaces matches of Source with Target.
type RewriteRegexp struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Source string `json:"source"`
	// +required
	// +kubebuilder:validation:MaxLength=1024
	Target string `json:"target"`
}

// RewriteTransform renames each key by a template.
type RewriteTransform struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Template string `json:"template"`
}

// ExternalSecretFind matches remote values by name or tags; with only a
// path, every remote value under it (as External Secrets Operator's Vault
// provider does), within the find bounds.
//
// +kubebuilder:validation:XValidation:rule="has(self.name) || has(self.tags) || has(self.path)",message="set name, tags or path"
type ExternalSecretFind struct {
	// Path limits the search to keys under it.
	Path *string `json:"path,omitempty"`
	// Name matches remote keys by a regular expression.
	Name *FindName `json:"name,omitempty"`
	// Tags matches remote values carrying all these tags.
	Tags map[string]string `json:"tags,omitempty"`
	// DecodingStrategy; None when unset.
	// +kubebuilder:default=None
	DecodingStrategy DecodingStrategy `json:"decodingStrategy,omitempty"`
	// ConversionStrategy says how remote key names become Secret keys when
	// no rewrite is given (see ExternalSecretDataRemoteRef).
	// +kubebuilder:default=Default
	ConversionStrategy ConversionStrategy `json:"conversionStrategy,omitempty"`
}

// FindName is a regular expression on remote key names.
type FindName struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	RegExp string `json:"regexp"`
}

// CreationPolicy says how veil-syncer owns the target Secret.
// +kubebuilder:validation:Enum=Owner;Orphan;Merge;None
type CreationPolicy string

const (
	// CreatePolicyOwner creates the Secret with an owner reference, so it is
	// deleted with the ExternalSecret.
	CreatePolicyOwner CreationPolicy = "Owner"
	// CreatePolicyOrphan creates the Secret without an owner reference.
	CreatePolicyOrphan CreationPolicy = "Orphan"
	// CreatePolicyMerge adds keys to an existing Secret and never removes
	// others. The Secret must opt in with the annotation
	// veil.dev/merge-from set to the ExternalSecret's name: otherwise anyone
	// allowed to create an ExternalSecret could make veil-syncer write into
	// any Secret of the namespace.
	CreatePolicyMerge CreationPolicy = "Merge"
	// CreatePolicyNone writes no Secret.
	CreatePolicyNone CreationPolicy = "None"
)

// DeletionPolicy says what happens to the target when the remote values disappear.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

const (
	// DeletionPolicyRetain keeps the Secret with its last values.
	DeletionPolicyRetain DeletionPolicy = "Retain"
	// DeletionPolicyDelete deletes the Secret veil-syncer created (the one
	// whose UID is in status.targetUID, never one created in its place);
	// a Secret merged into (creationPolicy Merge) is never deleted.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// ExternalSecretTarget describes the Secret veil-syncer materialises.
type ExternalSecretTarget struct {
	// Name of the Secret; the ExternalSecret's name when unset.
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// +kubebuilder:default=Owner
	CreationPolicy CreationPolicy `json:"creationPolicy,omitempty"`

	// +kubebuilder:default=Retain
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// Template shapes the Secret.
	Template *ExternalSecretTemplate `json:"template,omitempty"`

	// Immutable makes the Secret immutable.
	Immutable bool `json:"immutable,omitempty"`

	// RolloutRestartTargets are restarted, by a pod template annotation,
	// when the data of the Secret changes.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	RolloutRestartTargets []RolloutRestartTarget `json:"rolloutRestartTargets,omitempty"`
}

// ExternalSecretTemplate shapes the target Secret.
//
// +kubebuilder:validation:XValidation:rule="!has(self.engineVersion) || self.engineVersion == 'v2'",message="engineVersion v1 is not supported: Veil's templates are External Secrets Operator's v2 engine (Go text/template); rewrite the templates for v2 and set engineVersion: v2"
type ExternalSecretTemplate struct {
	// Type of the Secret; Opaque when unset.
	Type corev1.SecretType `json:"type,omitempty"`

	// EngineVersion is the template engine: v2, External Secrets
	// Operator's Go text/template engine, the only one Veil has.
	// +kubebuilder:validation:MaxLength=8
	// +kubebuilder:default=v2
	EngineVersion string `json:"engineVersion,omitempty"`

	// MergePolicy Replace (the default) makes the rendered templates the
	// whole data; Merge lays them over the values, so keys without a
	// template keep their value.
	// +kubebuilder:default=Replace
	MergePolicy TemplateMergePolicy `json:"mergePolicy,omitempty"`

	// TemplateFrom adds templates kept in ConfigMaps of the
	// ExternalSecret's own namespace.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=10
	// +optional
	TemplateFrom []TemplateFrom `json:"templateFrom,omitempty"`
	// Metadata added to the Secret.
	Metadata ExternalSecretTemplateMetadata `json:"metadata,omitempty"`
	// Data maps keys of the Secret to Go text/template templates over the
	// values; without it, the values are the Secret's data.
	Data map[string]string `json:"data,omitempty"`
}

// TemplateMergePolicy says how rendered templates meet the values.
// +kubebuilder:validation:Enum=Replace;Merge
type TemplateMergePolicy string

const (
	MergePolicyReplace TemplateMergePolicy = "Replace"
	MergePolicyMerge   TemplateMergePolicy = "Merge"
)

// TemplateFrom names templates in a ConfigMap of the ExternalSecret's
// namespace. Secret sources are accepted by the schema, so External Secrets
// Operator manifests apply, but refused at sync: veil-syncer does not read
// Secrets.
//
// +kubebuilder:validation:XValidation:rule="[has(self.configMap), has(self.secret), has(self.literal)].filter(x, x).size() <= 1",message="set at most one of configMap, secret and literal"
type TemplateFrom struct {
	// ConfigMap holds templates, each item a key of it.
	// +optional
	ConfigMap *TemplateRef `json:"configMap,omitempty"`
	// Secret is refused by veil-syncer, which may not read Secrets: put the
	// templates in a ConfigMap or in template.data.
	// +optional
	Secret *TemplateRef `json:"secret,omitempty"`
	// Target is where the rendered templates go: Data (the default),
	// Annotations or Labels.
	// +kubebuilder:validation:Enum=Data;Annotations;Labels
	// +kubebuilder:default=Data
	Target TemplateTarget `json:"target,omitempty"`
	// Literal is a template whose output is YAML of keys and values
	// (templateAs KeysAndValues).
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	Literal *string `json:"literal,omitempty"`
}

// TemplateTarget is the part of the Secret a templateFrom writes.
type TemplateTarget string

const (
	TemplateTargetData        TemplateTarget = "Data"
	TemplateTargetAnnotations TemplateTarget = "Annotations"
	TemplateTargetLabels      TemplateTarget = "Labels"
)

// TemplateRef names a ConfigMap of the ExternalSecret's namespace and the
// keys of it that are templates.
type TemplateRef struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// +required
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=50
	Items []TemplateRefItem `json:"items"`
}

// TemplateRefItem is one key of a ConfigMap that is a template.
type TemplateRefItem struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
	// TemplateAs Values (the default) renders the ConfigMap value as the
	// template of the Secret key of the same name; KeysAndValues renders
	// it into YAML whose keys and values are all added.
	// +kubebuilder:default=Values
	TemplateAs TemplateScope `json:"templateAs,omitempty"`
}

// TemplateScope says how a templateFrom item is read.
// +kubebuilder:validation:Enum=Values;KeysAndValues
type TemplateScope string

const (
	TemplateScopeValues        TemplateScope = "Values"
	TemplateScopeKeysAndValues TemplateScope = "KeysAndValues"
)

// ExternalSecretTemplateMetadata are labels, annotations and finalizers
// of the target.
type ExternalSecretTemplateMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Finalizers are added to a Secret veil-syncer creates (creationPolicy
	// Owner or Orphan), as in External Secrets Operator, for whoever's
	// cleanup they stand for to remove; veil-syncer never removes them, so
	// they can hold the Secret, and its namespace, from being deleted.
	// Each is domain-qualified ("example.com/name"), in no domain of
	// Kubernetes (kubernetes.io, k8s.io) or of Veil (veil.dev).
	// +listType=set
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=317
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self.all(f, f.contains('/'))",message="each finalizer must be domain-qualified (example.com/name): the ones without a domain (orphan, foregroundDeletion, kubernetes) steer Kubernetes' deletion of objects"
	// +kubebuilder:validation:XValidation:rule="self.all(f, !f.contains('/') || ['kubernetes.io', 'k8s.io', 'veil.dev'].all(d, !f.startsWith(d + '/') && !f.substring(0, f.indexOf('/')).endsWith('.' + d)))",message="a finalizer in a domain of Kubernetes (kubernetes.io, k8s.io) or of Veil (veil.dev) is refused: those mean something to Kubernetes or Veil; use a domain of your own"
	// +optional
	Finalizers []string `json:"finalizers,omitempty"`
}

// RolloutRestartTarget names a workload of the same namespace.
type RolloutRestartTarget struct {
	// +required
	// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
	Kind string `json:"kind"`
	// +required
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// ExternalSecretStatus is written by veil-syncer for ExternalSecrets with a target.
type ExternalSecretStatus struct {
	// Conditions: Ready says whether the target is in sync.
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// RefreshTime is when the target was last checked against the values.
	RefreshTime *metav1.Time `json:"refreshTime,omitempty"`

	// SyncedResourceVersion is the ExternalSecret generation and target
	// resourceVersion last synced.
	SyncedResourceVersion string `json:"syncedResourceVersion,omitempty"`

	// DataHMAC is an HMAC-SHA256 of the target's data and of this
	// ExternalSecret's namespace, name and UID, under a key only veil-syncer
	// holds: it tells whether the data changed. The same data in another
	// ExternalSecret has another HMAC, so it cannot be compared with an HMAC
	// of chosen data made through an ExternalSecret elsewhere.
	DataHMAC string `json:"dataHMAC,omitempty"`

	// TargetUID is the UID of the Secret veil-syncer last wrote. It deletes
	// a target (deletionPolicy Delete) only on this UID, so a Secret someone
	// created in its place is never deleted.
	TargetUID types.UID `json:"targetUID,omitempty"`

	// LastValueChange is the last change veil-apiserver saw to a remote
	// value this ExternalSecret reads: pushed through Veil, detected at
	// the provider, or a change of its store. Every veil-apiserver replica
	// reads again the values it cached before it saw a new one, and
	// watchers of the ExternalSecretValue are sent the new values.
	// +optional
	LastValueChange *ValueChange `json:"lastValueChange,omitempty"`
}

// ValueChange names one change of remote values. It carries no value.
type ValueChange struct {
	// ID is new for every change; only its equality matters.
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id"`

	// Time is when veil-apiserver saw the change.
	Time metav1.Time `json:"time"`

	// Cause is Pushed (a PushSecret wrote a remote key this reads),
	// Detected (a remote key this reads changed at the provider) or
	// StoreChanged (its store's spec changed).
	// +kubebuilder:validation:Enum=Pushed;Detected;StoreChanged
	Cause ValueChangeCause `json:"cause"`

	// Keys are the remote keys this ExternalSecret reads that changed,
	// when the cause names them (at most 10, each at most 512 bytes; the
	// others are counted in MoreKeys).
	// +optional
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MaxLength=512
	// +listType=atomic
	Keys []string `json:"keys,omitempty"`

	// MoreKeys counts the changed keys Keys leaves out.
	// +optional
	MoreKeys int32 `json:"moreKeys,omitempty"`
}

// ValueChangeCause is why values changed.
type ValueChangeCause string

const (
	ValueChangePushed       ValueChangeCause = "Pushed"
	ValueChangeDetected     ValueChangeCause = "Detected"
	ValueChangeStoreChanged ValueChangeCause = "StoreChanged"
)
