package credentials

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

func ptr[T any](v T) *T { return &v }

func secret(ns, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

var (
	namespaced = &providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "team-a", Name: "vault"}
	cluster    = &providers.Store{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "shared"}
)

func TestNamespaceRule(t *testing.T) {
	client := fake.NewClientset(secret("team-a", "creds", map[string]string{"token": "a"}), secret("team-b", "creds", map[string]string{"token": "b"}))
	r := NewReader(client, 0)
	ctx := context.Background()

	cases := []struct {
		store  *providers.Store
		sel    configv1alpha1.SecretKeySelector
		want   string
		reason providers.Reason
		says   string
	}{
		{namespaced, configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"}, "a", "", ""},
		{namespaced, configv1alpha1.SecretKeySelector{Name: "creds", Key: "token", Namespace: ptr("team-a")}, "a", "", ""},
		{namespaced, configv1alpha1.SecretKeySelector{Name: "creds", Key: "token", Namespace: ptr("team-b")}, "", providers.Forbidden, `may only use credentials of its own namespace "team-a"`},
		{cluster, configv1alpha1.SecretKeySelector{Name: "creds", Key: "token", Namespace: ptr("team-b")}, "b", "", ""},
		{cluster, configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"}, "", providers.Invalid, "must set namespace"},
		{namespaced, configv1alpha1.SecretKeySelector{Name: "nope", Key: "token"}, "", providers.Invalid, "Secret team-a/nope does not exist"},
		{namespaced, configv1alpha1.SecretKeySelector{Name: "creds", Key: "nokey"}, "", providers.Invalid, `has no key "nokey"`},
	}
	for i, c := range cases {
		got, err := r.ForStore(c.store).SecretKey(ctx, c.sel)
		if c.reason == "" {
			if err != nil || string(got) != c.want {
				t.Errorf("case %d: got %q, %v; want %q", i, got, err, c.want)
			}
			continue
		}
		if providers.ReasonOf(err) != c.reason || !strings.Contains(err.Error(), c.says) {
			t.Errorf("case %d: err %v, want %s saying %q", i, err, c.reason, c.says)
		}
	}
}

func TestReadsAreCachedForTTL(t *testing.T) {
	client := fake.NewClientset(secret("team-a", "creds", map[string]string{"token": "a"}))
	gets := 0
	client.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		gets++
		return false, nil, nil
	})
	clock := clocktesting.NewFakePassiveClock(time.Now())
	r := NewReader(client, 10*time.Second)
	r.clock = clock
	rec := r.ForStore(namespaced)
	sel := configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"}
	for range 5 {
		if _, err := rec.SecretKey(context.Background(), sel); err != nil {
			t.Fatal(err)
		}
	}
	if gets != 1 {
		t.Errorf("5 reads within the TTL made %d GETs, want 1", gets)
	}
	clock.SetTime(clock.Now().Add(11 * time.Second))
	if _, err := rec.SecretKey(context.Background(), sel); err != nil {
		t.Fatal(err)
	}
	if gets != 2 {
		t.Errorf("a read after the TTL made %d GETs in all, want 2", gets)
	}
}

func TestFingerprintFollowsTheCredential(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(secret("team-a", "creds", map[string]string{"token": "first"}))
	r := NewReader(client, 0)
	rec := r.ForStore(namespaced)

	if fp, err := rec.Fingerprint(ctx); err != nil || fp != "" {
		t.Fatalf("a store that read no credential: %q, %v, want empty", fp, err)
	}
	if _, err := rec.SecretKey(ctx, configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"}); err != nil {
		t.Fatal(err)
	}
	fp1, err := rec.Fingerprint(ctx)
	if err != nil || fp1 == "" {
		t.Fatalf("fingerprint: %q, %v", fp1, err)
	}
	if strings.Contains(fp1, "first") {
		t.Error("the fingerprint carries the credential")
	}
	if fp, _ := rec.Fingerprint(ctx); fp != fp1 {
		t.Error("the fingerprint of an unchanged credential changed")
	}

	if _, err := client.CoreV1().Secrets("team-a").Update(ctx, secret("team-a", "creds", map[string]string{"token": "second"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	fp2, err := rec.Fingerprint(ctx)
	if err != nil || fp2 == fp1 {
		t.Errorf("after rotation: %q, %v; want a new fingerprint", fp2, err)
	}
	if err := client.CoreV1().Secrets("team-a").Delete(ctx, "creds", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if fp3, err := rec.Fingerprint(ctx); err != nil || fp3 == fp2 || fp3 == fp1 {
		t.Errorf("after deletion: %q, %v; want yet another fingerprint", fp3, err)
	}

	// Two processes (two keys) fingerprint the same credential differently,
	// so a fingerprint is useless outside the process that made it.
	other := NewReader(fake.NewClientset(secret("team-a", "creds", map[string]string{"token": "first"})), 0).ForStore(namespaced)
	if _, err := other.SecretKey(ctx, configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"}); err != nil {
		t.Fatal(err)
	}
	if fp, _ := other.Fingerprint(ctx); fp == fp1 {
		t.Error("fingerprints are not keyed per process")
	}
}

func TestServiceAccountToken(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "reader"}})
	var got *authenticationv1.TokenRequest
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca := a.(k8stesting.CreateAction)
		if a.GetSubresource() != "token" || ca.GetNamespace() != "team-a" {
			t.Errorf("unexpected token request %s/%s in %s", a.GetResource().Resource, a.GetSubresource(), ca.GetNamespace())
		}
		got = ca.GetObject().(*authenticationv1.TokenRequest)
		return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{Token: "jwt"}}, nil
	})
	rec := NewReader(client, 0).ForStore(namespaced)
	token, err := rec.ServiceAccountToken(ctx, configv1alpha1.ServiceAccountSelector{Name: "reader", Audiences: []string{"vault"}}, 600)
	if err != nil || token != "jwt" {
		t.Fatalf("token %q, %v", token, err)
	}
	if got == nil || *got.Spec.ExpirationSeconds != 600 || len(got.Spec.Audiences) != 1 || got.Spec.Audiences[0] != "vault" {
		t.Errorf("TokenRequest %+v", got)
	}
	if _, err := rec.ServiceAccountToken(ctx, configv1alpha1.ServiceAccountSelector{Name: "reader", Namespace: ptr("team-b")}, 600); providers.ReasonOf(err) != providers.Forbidden {
		t.Errorf("a SecretStore asking for another namespace's ServiceAccount: %v, want Forbidden", err)
	}
	fp, err := rec.Fingerprint(ctx)
	if err != nil || fp == "" || strings.Contains(fp, "jwt") {
		t.Errorf("fingerprint %q, %v: want the ServiceAccount's identity, never its token", fp, err)
	}
}

// TestRefusingReaderReadsNothing: the Reader of a veil-apiserver run with
// --in-process-providers=false has no client at all; every read and token
// request fails as Forbidden with the reason, and records nothing.
func TestRefusingReaderReadsNothing(t *testing.T) {
	r := NewRefusing("remote only")
	if r.client != nil {
		t.Fatal("a refusing Reader holds a client")
	}
	rec := r.ForStore(namespaced)
	ctx := context.Background()
	_, err := rec.SecretKey(ctx, configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"})
	if providers.ReasonOf(err) != providers.Forbidden || !strings.Contains(err.Error(), "remote only") {
		t.Errorf("SecretKey: %v, want Forbidden saying why", err)
	}
	_, err = rec.ConfigMapKey(ctx, "ca", "ca.crt", nil)
	if providers.ReasonOf(err) != providers.Forbidden || !strings.Contains(err.Error(), "remote only") {
		t.Errorf("ConfigMapKey: %v, want Forbidden saying why", err)
	}
	_, err = rec.ServiceAccountToken(ctx, configv1alpha1.ServiceAccountSelector{Name: "reader", Audiences: []string{"vault"}}, 600)
	if providers.ReasonOf(err) != providers.Forbidden || !strings.Contains(err.Error(), "remote only") {
		t.Errorf("ServiceAccountToken: %v, want Forbidden saying why", err)
	}
	if fp, err := rec.Fingerprint(ctx); fp != "" || err != nil {
		t.Errorf("Fingerprint after refused reads: %q, %v; want nothing recorded", fp, err)
	}
}
