package changes

import (
	"context"
	"slices"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestMarkFollowsEveryStoreAnExternalSecretReads: an entry read from its
// own store (sourceRef.storeRef) is a reader of that store, for that
// entry's keys only; the same key through secretStoreRef's store is not.
func TestMarkFollowsEveryStoreAnExternalSecretReads(t *testing.T) {
	shared := configv1alpha1.SecretStoreRef{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "shared"}
	es := externalSecret("a", "mixed", storeRef("vault"), "db")
	es.Spec.Data = append(es.Spec.Data, configv1alpha1.ExternalSecretData{
		SecretKey: "api", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "api"},
		SourceRef: &configv1alpha1.StoreSourceRef{StoreRef: &shared},
	})
	m, p := newMarker(t, es)
	sharedStore := Store{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "shared"}
	vaultStore := Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "a", Name: "vault"}

	if reads := Reads(es); len(reads) != 2 || len(reads[sharedStore].Spec.Data) != 1 || len(reads[vaultStore].Spec.Data) != 1 {
		t.Fatalf("Reads() = %v", reads)
	}
	// "db" changed in the shared store: not read from there.
	if n, err := m.Mark(context.Background(), sharedStore, []string{"db"}, configv1alpha1.ValueChangeDetected); err != nil || n != 0 {
		t.Errorf("db in the shared store: marked %d, %v; want none", n, err)
	}
	if n, err := m.Mark(context.Background(), sharedStore, []string{"api", "db"}, configv1alpha1.ValueChangeDetected); err != nil || n != 1 {
		t.Fatalf("api in the shared store: marked %d, %v; want 1", n, err)
	}
	if keys := p.change("a/mixed")["keys"].([]any); !slices.Equal(keys, []any{"api"}) {
		t.Errorf("told of keys %v, want only api", keys)
	}
	p.reset()
	if n, err := m.Mark(context.Background(), vaultStore, nil, configv1alpha1.ValueChangeStoreChanged); err != nil || n != 1 {
		t.Errorf("secretStoreRef's store changed: marked %d, %v; want 1", n, err)
	}
}
