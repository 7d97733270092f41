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

	// ExternalID is passed when assuming Role.
	ExternalID string `json:"externalID,omitempty"`

	// SessionTags are added to the assumed-role session, after the tags
	// naming the store that Veil always adds.
	// +listType=atomic
	SessionTags []AWSTag `json:"sessionTags,omitempty"`

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
	Key string `json:"key"`
	// +required
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
