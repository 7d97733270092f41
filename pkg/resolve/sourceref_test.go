package resolve

import (
	"context"
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/cache"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/stores"
)

// TestEntriesReadFromTheirOwnStores: an entry with sourceRef.storeRef is
// read through that store, with its own client and cache entries, the
// others through spec.secretStoreRef; the source is secretStoreRef's.
func TestEntriesReadFromTheirOwnStores(t *testing.T) {
	main := newRemoteSystem(map[string]string{"db": `{"user":"main"}`, "token": "T"}, "t")
	other := newRemoteSystem(map[string]string{"db": `{"user":"other","pass":"P"}`}, "t")
	w := newTenantWorld(t, main, cache.Config{}, map[string]string{"app": "t"})
	s1 := w.storeIn("app")
	s2 := &stores.Store{
		Store:    providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "app", Name: "other", Generation: 1, Spec: &configv1alpha1.SecretStoreSpec{}},
		UID:      types.UID("uid-other"),
		Provider: tenantProvider{other},
	}
	otherRef := configv1alpha1.SecretStoreRef{Name: "other"}
	es := externalSecretOf("app", "es", nil, remoteRef("user", "db", "user"), remoteRef("token", "token", ""))
	own := remoteRef("other-user", "db", "user")
	own.SourceRef = &configv1alpha1.StoreSourceRef{StoreRef: &otherRef}
	es.Spec.Data = append(es.Spec.Data, own)
	es.Spec.DataFrom = []configv1alpha1.ExternalSecretDataFromRemoteRef{{
		Extract:   &configv1alpha1.ExternalSecretDataRemoteRef{Key: "db"},
		SourceRef: &configv1alpha1.StoreSourceRef{StoreRef: &otherRef},
	}}
	if got := es.StoreRefs(); len(got) != 2 || got[0].Name != "vault" || got[1] != otherRef.Normalized() {
		t.Fatalf("StoreRefs() = %v", got)
	}
	from := []storeRead{{ref: es.StoreRefs()[0], store: s1}, {ref: es.StoreRefs()[1], store: s2}}
	v, err := w.resolver.readFrom(context.Background(), es, from)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"user": "main", "token": "T", "other-user": "other", "pass": "P"}
	if len(v.Data) != len(want) {
		t.Errorf("keys %d, want %d", len(v.Data), len(want))
	}
	for k, val := range want {
		if string(v.Data[k]) != val {
			t.Errorf("%s: wrong value", k)
		}
	}
	if v.Source.StoreRef.Name != "vault" {
		t.Errorf("source %+v, want secretStoreRef's store", v.Source.StoreRef)
	}
	// Each store is read for its own entries only: main for db and token,
	// other once for db (its data entry and extract share the read).
	if main.getsBy("t") != 2 || other.getsBy("t") != 1 {
		t.Errorf("reads: main %d, other %d; want 2 and 1", main.getsBy("t"), other.getsBy("t"))
	}

	// An entry whose store is not among those read is refused, not read
	// through another store.
	_, err = w.resolver.readFrom(context.Background(), es, from[:1])
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Reason != providers.Invalid {
		t.Errorf("an entry's store left out: %v, want Invalid", err)
	}
}

// TestTooManyStores: more distinct stores than MaxStoresPerExternalSecret
// are refused before any store is even looked up.
func TestTooManyStores(t *testing.T) {
	es := externalSecretOf("app", "es", nil)
	for i := range configv1alpha1.MaxStoresPerExternalSecret + 1 {
		d := remoteRef(string(rune('a'+i)), "k", "")
		d.SourceRef = &configv1alpha1.StoreSourceRef{StoreRef: &configv1alpha1.SecretStoreRef{Name: "s" + string(rune('a'+i))}}
		es.Spec.Data = append(es.Spec.Data, d)
	}
	r := &Resolver{} // no Stores: a lookup would panic
	_, err := r.Resolve(context.Background(), es)
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Reason != providers.Invalid || !strings.Contains(err.Error(), "more than the 5") {
		t.Errorf("%v, want Invalid naming the bound", err)
	}
	es.Spec.SecretStoreRef = nil
	es.Spec.Data = nil
	if _, err := r.Resolve(context.Background(), es); !errors.As(err, &pe) || !strings.Contains(err.Error(), "names no store") {
		t.Errorf("no store at all: %v", err)
	}
}

// TestReadThrough: what an ExternalSecret asks of each store.
func TestReadThrough(t *testing.T) {
	es := externalSecretOf("app", "es", nil, remoteRef("a", "a", ""))
	ccs := configv1alpha1.SecretStoreRef{Name: "shared", Kind: configv1alpha1.ClusterSecretStoreKind}
	b := remoteRef("b", "b", "")
	b.SourceRef = &configv1alpha1.StoreSourceRef{StoreRef: &ccs}
	// Named explicitly with the default's name and kind: the same store.
	c := remoteRef("c", "c", "")
	c.SourceRef = &configv1alpha1.StoreSourceRef{StoreRef: &configv1alpha1.SecretStoreRef{Name: "vault", Kind: configv1alpha1.SecretStoreKind}}
	es.Spec.Data = append(es.Spec.Data, b, c)
	refs := es.StoreRefs()
	if len(refs) != 2 {
		t.Fatalf("StoreRefs() = %v, want vault and shared", refs)
	}
	main, shared := es.ReadThrough(refs[0]), es.ReadThrough(ccs)
	if len(main.Spec.Data) != 2 || main.Spec.Data[0].SecretKey != "a" || main.Spec.Data[1].SecretKey != "c" {
		t.Errorf("through vault: %+v", main.Spec.Data)
	}
	if len(shared.Spec.Data) != 1 || shared.Spec.Data[0].SecretKey != "b" || *shared.Spec.SecretStoreRef != ccs {
		t.Errorf("through shared: %+v", shared.Spec)
	}
}
