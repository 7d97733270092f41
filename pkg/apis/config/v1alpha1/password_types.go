package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Password is a generator of random passwords, as External Secrets
// Operator's Password (generators.external-secrets.io/v1alpha1): a
// PushSecret that names it in spec.selector.generatorRef pushes a new
// password on each refresh (rotation). The password exists only at the
// provider; Veil never stores it. A Password holds no secret itself.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,categories={veil}
// +kubebuilder:printcolumn:name="Length",type=integer,JSONPath=`.spec.length`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Password struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec PasswordSpec `json:"spec,omitempty"`
}

// PasswordList is a list of Passwords.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type PasswordList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Password `json:"items"`
}

// MaxPasswordLength bounds spec.length, and so each generated password.
const MaxPasswordLength = 1024

// MaxPasswordKeys bounds spec.secretKeys.
const MaxPasswordKeys = 16

// DefaultPasswordSymbols are the symbols used when spec.symbolCharacters
// is unset or empty, as in External Secrets Operator.
const DefaultPasswordSymbols = "~!@#$%^&*()_+`-={}|[]\\:\"<>?,./"

// PasswordSpec says what each generated password is made of: exactly
// digits digits, exactly symbols symbols from symbolCharacters, and letters
// for the rest (lower case, and upper case unless noUpper), in a random
// order; no character twice unless allowRepeat.
//
// +kubebuilder:validation:XValidation:rule="(has(self.digits) ? self.digits : self.length / 4) + (has(self.symbols) ? self.symbols : self.length / 4) <= self.length",message="digits + symbols must not exceed length (each defaults to a quarter of length)"
// +kubebuilder:validation:XValidation:rule="self.allowRepeat || (has(self.digits) ? self.digits : self.length / 4) <= 10",message="without allowRepeat a password holds at most 10 digits (each at most once); lower digits or set allowRepeat: true"
// +kubebuilder:validation:XValidation:rule="self.allowRepeat || self.length - (has(self.digits) ? self.digits : self.length / 4) - (has(self.symbols) ? self.symbols : self.length / 4) <= (self.noUpper ? 26 : 52)",message="without allowRepeat a password holds at most 52 letters (26 with noUpper), each at most once; lower length or set allowRepeat: true"
// +kubebuilder:validation:XValidation:rule="self.allowRepeat || (has(self.symbols) ? self.symbols : self.length / 4) <= (has(self.symbolCharacters) && size(self.symbolCharacters) > 0 ? size(self.symbolCharacters) : 32)",message="without allowRepeat a password holds each symbol at most once: symbols must not exceed the number of symbolCharacters"
type PasswordSpec struct {
	// Length of each password, in characters; 24 when unset, at most 1024.
	// +kubebuilder:default=24
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	Length int32 `json:"length,omitempty"`

	// Digits is how many digits each password holds; a quarter of length
	// (rounded down) when unset.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1024
	Digits *int32 `json:"digits,omitempty"`

	// Symbols is how many symbols each password holds; a quarter of length
	// (rounded down) when unset.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1024
	Symbols *int32 `json:"symbols,omitempty"`

	// SymbolCharacters are the symbols to choose from; unset or empty,
	// ~!@#$%^&*()_+`-={}|[]\:"<>?,./ as in External Secrets Operator.
	// ASCII punctuation only (no letters, digits, spaces or control
	// characters), at most 32; a character listed twice counts once.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[!-/:-@\[-\x60{-~]*$`
	SymbolCharacters *string `json:"symbolCharacters,omitempty"`

	// NoUpper leaves out upper case letters.
	// +optional
	// +kubebuilder:default=false
	NoUpper bool `json:"noUpper,omitempty"`

	// AllowRepeat lets a character appear more than once in a password.
	// +optional
	// +kubebuilder:default=false
	AllowRepeat bool `json:"allowRepeat,omitempty"`

	// SecretKeys are the keys generated, each with its own password;
	// ["password"] when unset. At most 16.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[-._a-zA-Z0-9]+$`
	SecretKeys []string `json:"secretKeys,omitempty"`

	// Encoding of each password: raw (the default: as generated), base64,
	// base64url, base32 or hex (of the password's bytes).
	// +optional
	// +kubebuilder:default=raw
	// +kubebuilder:validation:Enum=raw;base64;base64url;base32;hex
	Encoding *string `json:"encoding,omitempty"`
}
