// Package v1alpha1 holds the configuration API of Veil: stores, ExternalSecrets
// and PushSecrets. These are CustomResourceDefinitions stored by
// kube-apiserver; they never carry secret values, except the demo-only fake
// provider, whose values are its spec.
//
// +k8s:deepcopy-gen=package
// +groupName=config.veil.dev
// +kubebuilder:validation:Optional
package v1alpha1
