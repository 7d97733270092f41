package v1alpha1

import "time"

// MinGeneratorRefreshInterval is the shortest refreshInterval a PushSecret
// that pushes a generator's values (selector.generatorRef) is given: each
// refresh writes a new value to every store, so a tiny interval would make
// veil-syncer rewrite provider secrets, and their readers' Secrets, in a
// busy loop. A shorter one is lengthened to it; 0 still means once for
// each generation of the PushSecret.
const MinGeneratorRefreshInterval = time.Minute

// PushSecretGeneratorRef names a generator of the PushSecret's namespace.
// Each push generates new values with it and pushes them: the values exist
// only at the provider, and are read back through an ExternalSecret.
// Unlike External Secrets Operator, the generator is only ever read from
// the PushSecret's own namespace, and creating or changing a PushSecret
// that names one needs get on it.
//
// +kubebuilder:validation:XValidation:rule="self.apiVersion == 'config.veil.dev/v1alpha1'",message="generatorRef.apiVersion must be config.veil.dev/v1alpha1 (External Secrets Operator's generators.external-secrets.io/v1alpha1 becomes config.veil.dev/v1alpha1; veil convert rewrites it)"
// +kubebuilder:validation:XValidation:rule="self.kind == 'Password'",message="Veil generates only Password; other generator kinds (ECRAuthorizationToken, VaultDynamicSecret, ...) are not supported"
type PushSecretGeneratorRef struct {
	// APIVersion of the generator: config.veil.dev/v1alpha1.
	// +required
	// +kubebuilder:validation:MaxLength=64
	APIVersion string `json:"apiVersion"`
	// Kind of the generator: Password.
	// +required
	// +kubebuilder:validation:MaxLength=64
	Kind string `json:"kind"`
	// Name of the generator, in the PushSecret's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}
