package v1alpha1

// VaultKVVersion is the version of a Vault KV secrets engine.
// +kubebuilder:validation:Enum=v1;v2
type VaultKVVersion string

const (
	VaultKVv1 VaultKVVersion = "v1"
	VaultKVv2 VaultKVVersion = "v2"
)

// VaultProvider connects to a KV secrets engine of Vault or OpenBao.
//
// +kubebuilder:validation:XValidation:rule="self.server.startsWith('https://') || self.server.startsWith('http://')",message="server must be an http:// or https:// URL"
type VaultProvider struct {
	// Server is the URL of Vault, https://vault.example.com:8200. An http://
	// URL is refused unless veil-apiserver runs with --allow-plaintext-providers.
	// +required
	Server string `json:"server"`

	// Path is the mount path of the KV engine; "secret" when unset.
	Path *string `json:"path,omitempty"`

	// Version of the KV engine; v2 when unset.
	// +kubebuilder:default=v2
	Version VaultKVVersion `json:"version,omitempty"`

	// Namespace is the Vault Enterprise / OpenBao namespace of the KV
	// engine (the X-Vault-Namespace header of reads and writes, and of
	// logins unless auth.namespace is set); the root namespace when unset.
	// +kubebuilder:validation:MaxLength=256
	Namespace *string `json:"namespace,omitempty"`

	// CABundle is PEM to verify Vault's certificate with; the system roots
	// are used when neither it nor CAProvider is set. Verification is never
	// skipped.
	CABundle []byte `json:"caBundle,omitempty"`

	// CAProvider names a Secret or ConfigMap holding the CA bundle.
	CAProvider *CAProvider `json:"caProvider,omitempty"`

	// TLS names a client certificate for mutual TLS with Vault.
	TLS *VaultClientTLS `json:"tls,omitempty"`

	// ReadYourWrites makes reads after a push see it on Vault performance
	// standbys (X-Vault-Index).
	ReadYourWrites bool `json:"readYourWrites,omitempty"`

	// ForwardInconsistent, as in External Secrets Operator, turns on
	// readYourWrites and, with readYourWrites also set, asks Vault to
	// forward a read its standby cannot yet serve to the active node
	// (X-Vault-Inconsistent: forward-active-node).
	ForwardInconsistent bool `json:"forwardInconsistent,omitempty"`

	// Headers are added to every request to Vault (a proxy in front of it
	// may want them). Vault's own headers (X-Vault-*) and those of HTTP
	// itself (Authorization, Host, Cookie, Content-*, ...) may not be set:
	// they would change whom Veil acts as or where its requests go.
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 64 && k.matches('^[A-Za-z0-9._-]+$') && !k.lowerAscii().startsWith('x-vault-') && self[k].size() <= 1024)",message="at most 16 headers, names of letters, digits, '.', '_' and '-' (at most 64, none starting X-Vault-), values of at most 1024 characters"
	Headers map[string]string `json:"headers,omitempty"`

	// CheckAndSet makes pushes use KV v2 check-and-set.
	CheckAndSet *VaultCheckAndSet `json:"checkAndSet,omitempty"`

	// Auth is how Veil logs in to Vault.
	// +required
	Auth VaultAuth `json:"auth"`
}

// VaultCheckAndSet configures KV v2 check-and-set writes.
type VaultCheckAndSet struct {
	// Required makes every push carry the cas parameter.
	Required bool `json:"required,omitempty"`
}

// VaultClientTLS names the client certificate and key Veil presents to Vault.
type VaultClientTLS struct {
	// +required
	CertSecretRef SecretKeySelector `json:"certSecretRef"`
	// +required
	KeySecretRef SecretKeySelector `json:"keySecretRef"`
}

// VaultAuth holds exactly one auth method, and the namespace to log in to.
//
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=2
// +kubebuilder:validation:XValidation:rule="[has(self.tokenSecretRef), has(self.appRole), has(self.kubernetes), has(self.jwt), has(self.cert), has(self.userPass), has(self.ldap), has(self.iam)].filter(m, m).size() == 1",message="set exactly one auth method: tokenSecretRef, appRole, kubernetes, jwt, cert, userPass, ldap or iam"
type VaultAuth struct {
	// Namespace is the Vault Enterprise / OpenBao namespace to log in to,
	// as in External Secrets Operator: login requests and the token's own
	// renewal and revocation are sent to it, reads and writes to
	// spec.provider.vault.namespace. Unset: the login goes to
	// spec.provider.vault.namespace too; empty: to the root namespace.
	// +kubebuilder:validation:MaxLength=256
	Namespace *string `json:"namespace,omitempty"`

	// TokenSecretRef names a Secret holding a Vault token.
	TokenSecretRef *SecretKeySelector `json:"tokenSecretRef,omitempty"`

	// AppRole logs in with a role id and a secret id.
	AppRole *VaultAppRole `json:"appRole,omitempty"`

	// Kubernetes logs in with a ServiceAccount token that Veil requests
	// from kube-apiserver.
	Kubernetes *VaultKubernetesAuth `json:"kubernetes,omitempty"`

	// JWT logs in with a JWT: a ServiceAccount token or one from a Secret.
	JWT *VaultJWTAuth `json:"jwt,omitempty"`

	// Cert logs in with the client certificate of spec.tls or of its own.
	Cert *VaultCertAuth `json:"cert,omitempty"`

	// UserPass logs in with a username and a password from a Secret.
	UserPass *VaultUserPassAuth `json:"userPass,omitempty"`

	// Ldap logs in to Vault's LDAP auth method with a username and a
	// password from a Secret.
	Ldap *VaultLdapAuth `json:"ldap,omitempty"`

	// Iam logs in to Vault's AWS auth method (iam type) with a signed
	// sts:GetCallerIdentity request.
	Iam *VaultIamAuth `json:"iam,omitempty"`
}

// VaultAppRole is Vault's AppRole auth method.
//
// +kubebuilder:validation:XValidation:rule="has(self.roleId) != has(self.roleRef)",message="set exactly one of roleId and roleRef"
type VaultAppRole struct {
	// Path is the mount path of the auth method; "approle" when unset.
	// +kubebuilder:default=approle
	Path string `json:"path,omitempty"`
	// RoleID is the role id, which is not secret.
	RoleID string `json:"roleId,omitempty"`
	// RoleRef names a Secret key holding the role id.
	RoleRef *SecretKeySelector `json:"roleRef,omitempty"`
	// SecretRef names a Secret key holding the secret id.
	// +required
	SecretRef SecretKeySelector `json:"secretRef"`
}

// VaultKubernetesAuth is Vault's Kubernetes auth method. As in External
// Secrets Operator, serviceAccountRef is used when both it and secretRef
// are set. With neither, ESO logs in with its own ServiceAccount token;
// Veil never lends its own identity to a store, so such a store is
// accepted and reports, in its Ready condition, that it needs one of them.
type VaultKubernetesAuth struct {
	// Path is the mount path of the auth method; "kubernetes" when unset.
	// +kubebuilder:default=kubernetes
	Path string `json:"mountPath,omitempty"`
	// Role is the Vault role to log in as.
	// +required
	// +kubebuilder:validation:MinLength=1
	Role string `json:"role"`
	// ServiceAccountRef names the ServiceAccount, in the store's namespace,
	// whose short-lived token Veil requests and presents. It wins over
	// secretRef when both are set.
	ServiceAccountRef *ServiceAccountSelector `json:"serviceAccountRef,omitempty"`
	// SecretRef names a Secret key holding a ServiceAccount token.
	SecretRef *SecretKeySelector `json:"secretRef,omitempty"`
}

// VaultJWTAuth is Vault's JWT/OIDC auth method used with a JWT. As in
// External Secrets Operator, secretRef is used when both it and
// kubernetesServiceAccountToken are set.
//
// +kubebuilder:validation:XValidation:rule="has(self.kubernetesServiceAccountToken) || has(self.secretRef)",message="set kubernetesServiceAccountToken or secretRef: the JWT to log in with comes from one of them"
type VaultJWTAuth struct {
	// Path is the mount path of the auth method; "jwt" when unset.
	// +kubebuilder:default=jwt
	Path string `json:"path,omitempty"`
	// Role is the Vault role to log in as.
	Role string `json:"role,omitempty"`
	// SecretRef names a Secret key holding the JWT. It wins over
	// kubernetesServiceAccountToken when both are set.
	SecretRef *SecretKeySelector `json:"secretRef,omitempty"`
	// KubernetesServiceAccountToken has Veil request a ServiceAccount token.
	KubernetesServiceAccountToken *VaultKubernetesServiceAccountTokenAuth `json:"kubernetesServiceAccountToken,omitempty"`
}

// VaultKubernetesServiceAccountTokenAuth describes a requested ServiceAccount token.
type VaultKubernetesServiceAccountTokenAuth struct {
	// +required
	ServiceAccountRef ServiceAccountSelector `json:"serviceAccountRef"`
	// Audiences the token is requested for, after serviceAccountRef's own
	// audiences; ["vault"] when unset, as in External Secrets Operator.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	Audiences []string `json:"audiences,omitempty"`
	// ExpirationSeconds of the token; 600 when unset.
	// +kubebuilder:validation:Minimum=600
	ExpirationSeconds *int64 `json:"expirationSeconds,omitempty"`
}

// VaultCertAuth is Vault's TLS certificate auth method.
type VaultCertAuth struct {
	// Path is the mount path of the auth method; "cert" when unset.
	// +kubebuilder:default=cert
	Path string `json:"path,omitempty"`
	// Name of the certificate role; any matching role when unset.
	Name string `json:"name,omitempty"`
	// ClientCert names the PEM client certificate; spec.tls when unset.
	ClientCert *SecretKeySelector `json:"clientCert,omitempty"`
	// SecretRef names the PEM private key; spec.tls when unset.
	SecretRef *SecretKeySelector `json:"secretRef,omitempty"`
}

// VaultUserPassAuth is Vault's userpass auth method.
type VaultUserPassAuth struct {
	// Path is the mount path of the auth method; "userpass" when unset.
	// +kubebuilder:default=userpass
	// +kubebuilder:validation:MaxLength=256
	Path string `json:"path,omitempty"`
	// Username to log in as. It is part of the login URL, so it is limited
	// to what Vault's userpass method accepts in a name: letters, digits
	// and "_", with ".", "@" and "-" inside.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_]([A-Za-z0-9_.@-]*[A-Za-z0-9_])?$`
	Username string `json:"username"`
	// SecretRef names a Secret key holding the password.
	// +required
	SecretRef SecretKeySelector `json:"secretRef"`
}

// VaultLdapAuth is Vault's LDAP auth method.
type VaultLdapAuth struct {
	// Path is the mount path of the auth method; "ldap" when unset.
	// +kubebuilder:default=ldap
	// +kubebuilder:validation:MaxLength=256
	Path string `json:"path,omitempty"`
	// Username is the LDAP user to log in as; surrounding spaces are
	// ignored, as in External Secrets Operator. It is part of the login
	// URL, so it may not hold "/" or control characters, nor be "." or "..".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[^/\x00-\x1F\x7F]+$`
	// +kubebuilder:validation:XValidation:rule="self.trim() != '.' && self.trim() != '..'",message="username may not be . or .."
	Username string `json:"username"`
	// SecretRef names a Secret key holding the password.
	// +required
	SecretRef SecretKeySelector `json:"secretRef"`
}

// VaultIamAuth is the iam type of Vault's AWS auth method: Veil signs an
// sts:GetCallerIdentity request with AWS credentials, and Vault has STS
// check it. As in External Secrets Operator, jwt is used when both it and
// secretRef are set. With neither, ESO uses its own pod's AWS identity;
// Veil never lends its own identity to a store, so such a store is
// accepted and reports, in its Ready condition, what to set.
type VaultIamAuth struct {
	// Path is the mount path of the AWS auth method; "aws" when unset.
	// +kubebuilder:default=aws
	// +kubebuilder:validation:MaxLength=256
	Path string `json:"path,omitempty"`
	// Region signs the request, and picks the STS endpoint it is signed
	// for; us-east-1 (the global endpoint, sts.amazonaws.com) when unset.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+(-[a-z0-9]+)*$`
	Region string `json:"region,omitempty"`
	// AWSIAMRole is the ARN of an IAM role to assume with the credentials
	// before signing. With jwt, the ServiceAccount token is exchanged for
	// this role, which jwt then needs.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^arn:[^\s]+$`
	AWSIAMRole string `json:"role,omitempty"`
	// Role is the Vault role of the AWS auth method to log in as.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Role string `json:"vaultRole"`
	// ExternalID is passed when assuming role.
	// +kubebuilder:validation:MaxLength=1224
	// +kubebuilder:validation:Pattern=`^[\w+=,.@:/-]*$`
	ExternalID string `json:"externalID,omitempty"`
	// VaultAWSIAMServerID is signed into the request as the
	// X-Vault-AWS-IAM-Server-ID header, which Vault checks against its
	// iam_server_id_header_value to stop a request signed for it being
	// replayed to another server.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[\x20-\x7E]*$`
	VaultAWSIAMServerID string `json:"vaultAwsIamServerID,omitempty"`
	// SecretRef names the Secret keys of an AWS access key.
	SecretRef *AWSAuthSecretRef `json:"secretRef,omitempty"`
	// JWT exchanges a token of a ServiceAccount in the store's namespace
	// for role (web identity, as IRSA does). It wins over secretRef.
	JWTAuth *AWSJWTAuth `json:"jwt,omitempty"`
	// STSEndpoint is where Veil assumes role (a Veil extension, as
	// spec.provider.aws.stsEndpoint); the regional STS endpoint when
	// unset. It must match --allowed-provider-endpoints. The signed
	// GetCallerIdentity request is sent by Vault, to its sts_endpoint.
	// +kubebuilder:validation:MaxLength=2048
	STSEndpoint string `json:"stsEndpoint,omitempty"`
}
