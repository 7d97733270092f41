package providers

import (
	"bytes"
	"encoding/json"
)

// Push metadata, as External Secrets Operator defines it: an object of
// apiVersion kubernetes.external-secrets.io/v1alpha1 and kind
// PushSecretMetadata, whose spec each provider defines. Veil takes the same
// objects, and a provider refuses a field it does not know rather than
// ignoring it, so that a manifest never seems to do what it does not.
const (
	PushMetadataAPIVersion = "kubernetes.external-secrets.io/v1alpha1"
	PushMetadataKind       = "PushSecretMetadata"
)

// ParsePushMetadata decodes raw (may be empty: nothing is set) into spec,
// a pointer to the provider's spec type. Unknown fields, another
// apiVersion or kind, and anything but one object are Invalid, naming what
// to fix. Metadata is never a value, so errors may quote it.
func ParsePushMetadata(raw []byte, store string, spec any) error {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	var wrapper struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Spec       json.RawMessage `json:"spec"`
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&wrapper); err != nil {
		return Errorf(Invalid, "%s: the push metadata must be an object with apiVersion %s, kind %s and the provider's fields under spec, as External Secrets Operator reads it (%v); move the fields under spec and add apiVersion and kind",
			store, PushMetadataAPIVersion, PushMetadataKind, err)
	}
	if wrapper.APIVersion != PushMetadataAPIVersion || wrapper.Kind != PushMetadataKind {
		return Errorf(Invalid, "%s: the push metadata has apiVersion %q and kind %q; it must be apiVersion %s, kind %s",
			store, wrapper.APIVersion, wrapper.Kind, PushMetadataAPIVersion, PushMetadataKind)
	}
	if len(wrapper.Spec) == 0 {
		return nil
	}
	d = json.NewDecoder(bytes.NewReader(wrapper.Spec))
	d.DisallowUnknownFields()
	if err := d.Decode(spec); err != nil {
		return Errorf(Invalid, "%s: the push metadata's spec is not one this provider takes: %v; remove or fix that field", store, err)
	}
	return nil
}

// NoPushMetadata refuses metadata for a provider that takes none.
func NoPushMetadata(raw []byte, store, provider string) error {
	if t := bytes.TrimSpace(raw); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil
	}
	return Errorf(Invalid, "%s: the %s provider takes no push metadata; remove metadata from the PushSecret's entry for this store", store, provider)
}
