package v1alpha1

// AWSService is the AWS service a store reads.
// +kubebuilder:validation:Enum=SecretsManager;ParameterStore;CertificateManager
type AWSService string

const (
	AWSServiceSecretsManager AWSService = "SecretsManager"
	AWSServiceParameterStore AWSService = "ParameterStore"
	// AWSServiceCertificateManager reads certificates from AWS
	// Certificate Manager by exporting them, and imports kubernetes.io/tls
	// Secrets into it with PushSecret.
	AWSServiceCertificateManager AWSService = "CertificateManager"
)

// AWSProvider connects to AWS Secrets Manager, Parameter Store or
// Certificate Manager.
//
// +kubebuilder:validation:XValidation:rule="!has(self.transitiveTagKeys) || (has(self.sessionTags) && self.transitiveTagKeys.all(k, self.sessionTags.exists(t, t.key == k)))",message="every transitiveTagKeys entry must be the key of a sessionTags entry"
type AWSProvider struct {
	// +required
	Service AWSService `json:"service"`

	// +required
	// +kubebuilder:validation:MinLength=1
	Region string `json:"region"`

	// Endpoint overrides the service endpoint (VPC endpoints, FIPS, tests).
	// It must match veil-apiserver's --allowed-provider-endpoints.
	Endpoint string `json:"endpoint,omitempty"`

	// STSEndpoint overrides the STS endpoint used to assume Role or to
	// exchange a web identity token; the regional STS endpoint when unset.
	// It is separate from Endpoint because a VPC endpoint serves one
	// service only. It must match --allowed-provider-endpoints too.
	STSEndpoint string `json:"stsEndpoint,omitempty"`

	// Role is the ARN of a role to assume after authenticating. Veil tags
	// the session with the store's kind, namespace and name (so the role's
	// trust policy must allow sts:TagSession), and names the session after
	// the store, so CloudTrail attributes every call to it.
	Role string `json:"role,omitempty"`

	// AdditionalRoles are role ARNs assumed one after the other, starting
	// from the credentials of Auth, before Role is assumed with the last
	// one's credentials (role chaining); without Role, the store acts as
	// the last of them. These hops are plain AssumeRole calls: ExternalID,
	// SessionTags and TransitiveTagKeys apply to Role only. They need keys
	// (auth.secretRef) or, for a ClusterSecretStore, the apiserver's own
	// identity.
	// +kubebuilder:validation:MaxItems=5
	// +listType=atomic
	// +kubebuilder:validation:items:Pattern=`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$`
	// +kubebuilder:validation:items:MaxLength=2048
	AdditionalRoles []string `json:"additionalRoles,omitempty"`

	// ExternalID is passed when assuming Role.
	ExternalID string `json:"externalID,omitempty"`

	// SessionTags are added to the assumed-role session, after the tags
	// naming the store that Veil always adds (at most 50 in all, STS's
	// limit).
	// +kubebuilder:validation:MaxItems=47
	// +listType=atomic
	SessionTags []AWSTag `json:"sessionTags,omitempty"`

	// TransitiveTagKeys are keys of SessionTags that pass on to the
	// sessions chained from Role's session.
	// +kubebuilder:validation:MaxItems=50
	// +listType=atomic
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	TransitiveTagKeys []string `json:"transitiveTagKeys,omitempty"`

	// Prefix is prepended to every remote key.
	Prefix string `json:"prefix,omitempty"`

	// Auth is how Veil authenticates. With none, a ClusterSecretStore uses
	// the apiserver's own identity (the SDK's default chain); a SecretStore
	// must name one.
	Auth AWSAuth `json:"auth,omitempty"`

	// SecretsManager configures Secrets Manager writes.
	SecretsManager *AWSSecretsManager `json:"secretsManager,omitempty"`
}

// AWSTag is a key/value tag.
type AWSTag struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Key string `json:"key"`
	// +required
	// +kubebuilder:validation:MaxLength=256
	Value string `json:"value"`
}

// AWSAuth holds at most one way to authenticate.
//
// +kubebuilder:validation:MaxProperties=1
type AWSAuth struct {
	// SecretRef names static keys held in a Secret.
	SecretRef *AWSAuthSecretRef `json:"secretRef,omitempty"`
	// JWT exchanges a ServiceAccount token for a role (web identity).
	JWT *AWSJWTAuth `json:"jwt,omitempty"`
}

// AWSAuthSecretRef names the Secret keys of an access key.
type AWSAuthSecretRef struct {
	// +required
	AccessKeyID SecretKeySelector `json:"accessKeyIDSecretRef"`
	// +required
	SecretAccessKey SecretKeySelector  `json:"secretAccessKeySecretRef"`
	SessionToken    *SecretKeySelector `json:"sessionTokenSecretRef,omitempty"`
}

// AWSJWTAuth is web identity with a ServiceAccount token.
type AWSJWTAuth struct {
	// ServiceAccountRef names the ServiceAccount, in the store's namespace,
	// whose token (audience sts.amazonaws.com) Veil exchanges for spec.role.
	// +required
	ServiceAccountRef ServiceAccountSelector `json:"serviceAccountRef"`
}

// AWSSecretsManager configures Secrets Manager writes.
type AWSSecretsManager struct {
	// RecoveryWindowInDays applies when a push deletes a secret; 30 when unset.
	// +kubebuilder:validation:Minimum=7
	// +kubebuilder:validation:Maximum=30
	RecoveryWindowInDays int64 `json:"recoveryWindowInDays,omitempty"`
	// ForceDeleteWithoutRecovery deletes at once.
	ForceDeleteWithoutRecovery bool `json:"forceDeleteWithoutRecovery,omitempty"`
}
