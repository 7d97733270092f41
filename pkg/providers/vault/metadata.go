package vault

import (
	"context"
	"encoding/json"
	"fmt"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

var _ providers.MetadataGetter = &client{}

// versionMetadataKeys are the fields of a KV v2 key's own metadata that
// remoteRef.metadataPolicy Fetch returns besides custom_metadata, as
// External Secrets Operator does.
var versionMetadataKeys = []string{"created_time", "current_version", "delete_version_after"}

// GetMetadata returns the KV v2 metadata of key as a JSON object of
// strings: custom_metadata, and the fields above. A custom_metadata key of
// the same name wins. KV v1 keeps no metadata.
func (c *client) GetMetadata(ctx context.Context, key string) (providers.Value, error) {
	key, err := c.cleanKey(key)
	if err != nil {
		return providers.Value{}, err
	}
	if c.version == configv1alpha1.VaultKVv1 {
		return providers.Value{}, providers.Errorf(providers.Invalid, "%s reads a Vault KV v1 mount, which keeps no metadata; remove remoteRef.metadataPolicy Fetch from remote key %q, or use a KV v2 mount", c.store, key)
	}
	t := target{action: "read the metadata of", what: fmt.Sprintf("key %q", key), path: c.metadataPath(key), capability: "read"}
	sec, err := c.read(ctx, "kv-metadata", t, nil)
	if err != nil {
		return providers.Value{}, err
	}
	out := map[string]string{}
	for _, k := range versionMetadataKeys {
		if v, ok := sec.Data[k]; ok && v != nil {
			out[k] = fmt.Sprint(v)
		}
	}
	if cm, ok := sec.Data["custom_metadata"].(map[string]any); ok {
		for k, v := range cm {
			if v != nil {
				out[k] = fmt.Sprint(v)
			}
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return providers.Value{}, providers.Errorf(providers.Unavailable, "%s: Vault returned the metadata of %s in a form Veil cannot encode", c.store, t.what)
	}
	return providers.Value{Data: b, Version: fmt.Sprint(sec.Data["current_version"])}, nil
}
