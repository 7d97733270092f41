// Package v1alpha1 is the v1alpha1 version of externalsecrets.veil.dev.
//
// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/veil-dev/veil/pkg/apis/externalsecrets
// +k8s:defaulter-gen=TypeMeta
// +groupName=externalsecrets.veil.dev
// +k8s:openapi-model-package=dev.veil.externalsecrets.v1alpha1
package v1alpha1
