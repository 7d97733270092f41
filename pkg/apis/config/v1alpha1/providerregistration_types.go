package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProviderRegistration names a provider process (veil-provider) that
// veil-apiserver reaches over mutual TLS, and how to recognise it. Stores
// name it in spec.provider.remote; the backend and its credentials are the
// provider process's own, so veil-apiserver holds none for such stores.
// It is cluster-scoped and only cluster administrators may write it: who
// writes it decides where veil-apiserver sends its client certificate and
// whose answers it takes for values.
//
// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,categories={veil},shortName=preg
// +kubebuilder:printcolumn:name="Provider",type=string,JSONPath=`.spec.provider`
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.spec.endpoint`
// +kubebuilder:printcolumn:name="Identity",type=string,JSONPath=`.spec.serverName`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ProviderRegistration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ProviderRegistrationSpec `json:"spec"`
}

// ProviderRegistrationList is a list of ProviderRegistrations.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type ProviderRegistrationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ProviderRegistration `json:"items"`
}

// ProviderRegistrationSpec says where a provider process listens and how
// veil-apiserver verifies it.
type ProviderRegistrationSpec struct {
	// Provider is the kind of provider the process serves: veil-provider's
	// --provider (vault, aws, fake), or the name another provider process
	// gives itself in the protocol's handshake (kubernetes for
	// veil-provider-kubernetes). veil-apiserver refuses a process that says
	// it serves another. It is not a list of Veil's: a provider written
	// against the protocol alone needs no change to Veil to be registered.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Provider string `json:"provider"`

	// Endpoint is host:port of the process's gRPC listener, usually its
	// Service ("veil-provider-vault.veil-providers.svc:8443").
	// veil-apiserver's --allowed-provider-endpoints applies to the host.
	// +required
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=261
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9.-]+:[0-9]{1,5}$') || self.matches('^\\\\[[0-9A-Fa-f:.]+\\\\]:[0-9]{1,5}$')",message="endpoint must be host:port, such as veil-provider-vault.veil-providers.svc:8443 (an IPv6 address in brackets), with no scheme or path"
	// +kubebuilder:validation:XValidation:rule="!self.matches(':[0-9]{1,5}$') || (int(self.substring(self.lastIndexOf(':') + 1)) >= 1 && int(self.substring(self.lastIndexOf(':') + 1)) <= 65535)",message="the port of endpoint must be between 1 and 65535"
	Endpoint string `json:"endpoint"`

	// ServerName is the DNS name the process's certificate must carry (a
	// DNS SAN), whatever address the endpoint resolves to.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$')",message="serverName must be a DNS name (letters, digits, '-' and '.'), the DNS SAN of the provider's certificate; no wildcard, scheme or port"
	ServerName string `json:"serverName"`

	// CABundle is the PEM bundle of the CA certificates that sign the
	// process's certificate: the deployer's or cert-manager's CA, never a
	// private key.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	// +kubebuilder:validation:XValidation:rule="self.contains('-----BEGIN CERTIFICATE-----')",message="caBundle must hold PEM certificates (-----BEGIN CERTIFICATE-----)"
	// +kubebuilder:validation:XValidation:rule="!self.contains('PRIVATE KEY')",message="caBundle must hold only certificates: remove the private key, which must never leave the CA"
	CABundle string `json:"caBundle"`
}

// RemoteProvider names the ProviderRegistration of a provider process that
// serves the store. The process's own configuration holds the store's
// backend, credentials and the keys it may serve.
type RemoteProvider struct {
	// Registration is the name of a ProviderRegistration.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Registration string `json:"registration"`
}

// The condition veil-apiserver keeps in the status of every store that
// names a ProviderRegistration.
const (
	// ConditionProviderRegistered is True when the ProviderRegistration a
	// store's spec.provider.remote names exists and veil-apiserver may use
	// its endpoint. It says nothing of the provider process itself, which
	// a read reaches.
	ConditionProviderRegistered = "ProviderRegistered"

	// ReasonRegistered: the registration exists and its endpoint is allowed.
	ReasonRegistered = "Registered"
	// ReasonRegistrationNotFound: no ProviderRegistration has the name.
	ReasonRegistrationNotFound = "RegistrationNotFound"
	// ReasonEndpointNotAllowed: veil-apiserver's --allowed-provider-endpoints
	// refuses the registration's endpoint.
	ReasonEndpointNotAllowed = "EndpointNotAllowed"
	// ReasonNoClientCertificate: veil-apiserver runs without a client
	// certificate for provider processes.
	ReasonNoClientCertificate = "NoClientCertificate"
	// ReasonInProcessProvidersDisabled: the store names no registration,
	// and veil-apiserver runs with --in-process-providers=false, so it
	// does not serve the store (the condition is then on every store).
	ReasonInProcessProvidersDisabled = "InProcessProvidersDisabled"
)
