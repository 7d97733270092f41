package vault

import (
	"maps"
	"slices"
	"strings"

	"github.com/veil-dev/veil/pkg/providers"
)

// Push metadata for Vault KV v2. External Secrets Operator's Vault
// provider reads none; Veil takes one field, customMetadata, written to the
// key's custom_metadata beside the marks that record its owner, within
// Vault's own bounds. Anything else is refused rather than dropped.
type pushMetaSpec struct {
	CustomMetadata map[string]string `json:"customMetadata,omitempty"`
}

// Vault's bounds of custom_metadata: 64 keys (Veil's marks take 4), keys
// of at most 128 bytes, values of at most 512.
const (
	maxCustomKeys  = 64 - 4
	maxCustomKey   = 128
	maxCustomValue = 512
)

func (c *client) parsePushMeta(raw []byte) (map[string]string, error) {
	var spec pushMetaSpec
	if err := providers.ParsePushMetadata(raw, c.store, &spec); err != nil {
		return nil, err
	}
	if len(spec.CustomMetadata) > maxCustomKeys {
		return nil, providers.Errorf(providers.Invalid, "%s: push metadata customMetadata has %d keys, more than the %d Vault leaves besides Veil's owner marks", c.store, len(spec.CustomMetadata), maxCustomKeys)
	}
	for _, k := range slices.Sorted(maps.Keys(spec.CustomMetadata)) {
		v := spec.CustomMetadata[k]
		switch {
		case k == "" || len(k) > maxCustomKey:
			return nil, providers.Errorf(providers.Invalid, "%s: push metadata customMetadata key %.140q must be 1 to %d bytes", c.store, k, maxCustomKey)
		case len(v) > maxCustomValue:
			return nil, providers.Errorf(providers.Invalid, "%s: push metadata customMetadata %q has a value of %d bytes, more than %d", c.store, k, len(v), maxCustomValue)
		case k == managedByKey || strings.HasPrefix(k, "veil.dev/"):
			return nil, providers.Errorf(providers.Invalid, "%s: push metadata customMetadata key %q is Veil's own (it records which PushSecret owns the key); use another key", c.store, k)
		}
	}
	return spec.CustomMetadata, nil
}

// customDiffers: meta lacks some of want, or holds it otherwise.
func customDiffers(meta *kvMetadata, want map[string]string) bool {
	for k, v := range want {
		if meta == nil || meta.custom[k] != v {
			return true
		}
	}
	return false
}
