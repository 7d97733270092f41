package storestatus

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
)

func registeredFor(t *testing.T, allowed []string, cert bool, regs ...*configv1alpha1.ProviderRegistration) *Registered {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, r := range regs {
		if err := idx.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	list, err := allowlist.Parse(allowed)
	if err != nil {
		t.Fatal(err)
	}
	return &Registered{Registrations: configlisters.NewProviderRegistrationLister(idx), Endpoints: list, HasClientCertificate: cert,
		clock: clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
}

func TestRegisteredWant(t *testing.T) {
	reg := &configv1alpha1.ProviderRegistration{ObjectMeta: metav1.ObjectMeta{Name: "vault"},
		Spec: configv1alpha1.ProviderRegistrationSpec{Provider: "vault", Endpoint: "provider.example:8443", ServerName: "provider.example"}}
	tests := []struct {
		name    string
		r       *Registered
		reg     string
		status  metav1.ConditionStatus
		reason  string
		message string
	}{
		{"registered", registeredFor(t, nil, true, reg), "vault", metav1.ConditionTrue, configv1alpha1.ReasonRegistered, "provider.example:8443"},
		{"missing", registeredFor(t, nil, true, reg), "nope", metav1.ConditionFalse, configv1alpha1.ReasonRegistrationNotFound, `ProviderRegistration "nope" does not exist`},
		{"endpoint refused", registeredFor(t, []string{"*.other.example"}, true, reg), "vault", metav1.ConditionFalse, configv1alpha1.ReasonEndpointNotAllowed, "--allowed-provider-endpoints"},
		{"no client certificate", registeredFor(t, nil, false, reg), "vault", metav1.ConditionFalse, configv1alpha1.ReasonNoClientCertificate, "--provider-client-cert-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.r.Want(tt.reg, 3)
			if c.Type != configv1alpha1.ConditionProviderRegistered || c.Status != tt.status || c.Reason != tt.reason || c.ObservedGeneration != 3 || !strings.Contains(c.Message, tt.message) {
				t.Errorf("condition %+v, want %s %s saying %q", c, tt.status, tt.reason, tt.message)
			}
		})
	}
}

// The condition is applied to a store naming a registration, under its own
// field manager, not again while it holds, and removed from a store that
// stops naming one; a store that never named one is not written.
func TestRegisteredSync(t *testing.T) {
	client := fake.NewSimpleClientset()
	var patches []applied
	client.PrependReactor("patch", "secretstores", func(a clienttesting.Action) (bool, runtime.Object, error) {
		p := a.(clienttesting.PatchAction)
		if p.GetSubresource() != "status" {
			t.Errorf("patch of %q, want status", p.GetSubresource())
		}
		var got applied
		if err := json.Unmarshal(p.GetPatch(), &got); err != nil {
			t.Fatal(err)
		}
		patches = append(patches, got)
		return true, &configv1alpha1.SecretStore{}, nil
	})
	r := registeredFor(t, nil, true)
	r.Client = client.ConfigV1alpha1()
	ctx := context.Background()
	remote := &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Remote: &configv1alpha1.RemoteProvider{Registration: "nope"}}}
	inProcess := &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{}}}

	if err := r.sync(ctx, configv1alpha1.SecretStoreKind, "team", "s", 1, remote, nil); err != nil {
		t.Fatal(err)
	}
	if len(patches) != 1 || len(patches[0].Status.Conditions) != 1 || patches[0].Status.Conditions[0].Reason != configv1alpha1.ReasonRegistrationNotFound {
		t.Fatalf("patches %+v, want one RegistrationNotFound", patches)
	}
	held := patches[0].Status.Conditions
	if err := r.sync(ctx, configv1alpha1.SecretStoreKind, "team", "s", 1, remote, held); err != nil {
		t.Fatal(err)
	}
	if len(patches) != 1 {
		t.Errorf("the condition held already and was written again")
	}
	if err := r.sync(ctx, configv1alpha1.SecretStoreKind, "team", "s", 2, inProcess, held); err != nil {
		t.Fatal(err)
	}
	if len(patches) != 2 || len(patches[1].Status.Conditions) != 0 {
		t.Errorf("patches %+v, want the condition removed", patches)
	}
	if err := r.sync(ctx, configv1alpha1.SecretStoreKind, "team", "t", 1, inProcess, nil); err != nil {
		t.Fatal(err)
	}
	if len(patches) != 2 {
		t.Errorf("a store that never named a registration was written")
	}
}

// With --in-process-providers=false, a store that names no registration
// gets the condition False, saying it is not served and what to change;
// naming one later gives it the usual condition.
func TestRegisteredRemoteOnly(t *testing.T) {
	client := fake.NewSimpleClientset()
	var patches []applied
	client.PrependReactor("patch", "secretstores", func(a clienttesting.Action) (bool, runtime.Object, error) {
		var got applied
		if err := json.Unmarshal(a.(clienttesting.PatchAction).GetPatch(), &got); err != nil {
			t.Fatal(err)
		}
		patches = append(patches, got)
		return true, &configv1alpha1.SecretStore{}, nil
	})
	r := registeredFor(t, nil, true)
	r.Client = client.ConfigV1alpha1()
	r.RemoteOnly = true
	ctx := context.Background()
	inProcess := &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{Server: "https://vault.example"}}}
	remote := &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Remote: &configv1alpha1.RemoteProvider{Registration: "nope"}}}

	if err := r.sync(ctx, configv1alpha1.SecretStoreKind, "team", "s", 1, inProcess, nil); err != nil {
		t.Fatal(err)
	}
	if len(patches) != 1 || len(patches[0].Status.Conditions) != 1 {
		t.Fatalf("patches %+v, want one condition", patches)
	}
	c := patches[0].Status.Conditions[0]
	if c.Status != metav1.ConditionFalse || c.Reason != configv1alpha1.ReasonInProcessProvidersDisabled ||
		!strings.Contains(c.Message, "--in-process-providers=false") || !strings.Contains(c.Message, "name a ProviderRegistration in spec.provider.remote.registration") {
		t.Errorf("condition %+v, want False InProcessProvidersDisabled saying what to change", c)
	}
	if err := r.sync(ctx, configv1alpha1.SecretStoreKind, "team", "s", 1, inProcess, patches[0].Status.Conditions); err != nil {
		t.Fatal(err)
	}
	if len(patches) != 1 {
		t.Errorf("the condition held already and was written again")
	}
	if err := r.sync(ctx, configv1alpha1.SecretStoreKind, "team", "s", 2, remote, patches[0].Status.Conditions); err != nil {
		t.Fatal(err)
	}
	if len(patches) != 2 || patches[1].Status.Conditions[0].Reason != configv1alpha1.ReasonRegistrationNotFound {
		t.Errorf("patches %+v, want RegistrationNotFound once the store names a registration", patches)
	}
}
