// Package externalsecrets is the internal version of the virtual resources
// veil-apiserver serves. They are computed on every request and never stored.
//
// +k8s:deepcopy-gen=package
// +groupName=externalsecrets.veil.dev
package externalsecrets
