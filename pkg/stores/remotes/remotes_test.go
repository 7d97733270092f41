package remotes

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	veilfake "github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// selfSigned writes a certificate and key that serve both as
// veil-apiserver's client certificate and as a registration's CA bundle.
func selfSigned(t *testing.T) (certFile, keyFile string, certPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, certPEM
}

func registration(name, endpoint string, generation int64, ca []byte) *configv1alpha1.ProviderRegistration {
	return &configv1alpha1.ProviderRegistration{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Generation: generation},
		Spec: configv1alpha1.ProviderRegistrationSpec{Provider: "vault", Endpoint: endpoint,
			ServerName: "veil-provider-vault.providers.svc", CABundle: string(ca)},
	}
}

func newRemotes(t *testing.T, endpoints []string, regs ...*configv1alpha1.ProviderRegistration) (*Providers, cache.Indexer) {
	t.Helper()
	certFile, keyFile, _ := selfSigned(t)
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, r := range regs {
		if err := idx.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	list, err := allowlist.Parse(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	r := &Providers{Registrations: configlisters.NewProviderRegistrationLister(idx), Live: veilfake.NewSimpleClientset().ConfigV1alpha1(),
		CertFile: certFile, KeyFile: keyFile, Endpoints: list}
	t.Cleanup(r.Close)
	return r, idx
}

func TestRemotesRefuse(t *testing.T) {
	_, _, ca := selfSigned(t)
	store := &providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "team", Name: "vault"}
	tests := []struct {
		name       string
		remotes    func(t *testing.T) *Providers
		reg        string
		wantReason providers.Reason
		wantMsg    []string
	}{
		{
			name: "no client certificate",
			remotes: func(t *testing.T) *Providers {
				r, _ := newRemotes(t, nil, registration("vault", "provider.example:8443", 1, ca))
				r.CertFile, r.KeyFile = "", ""
				return r
			},
			reg: "vault", wantReason: providers.Invalid,
			wantMsg: []string{`ProviderRegistration "vault"`, "--provider-client-cert-file"},
		},
		{
			name:    "unknown registration",
			remotes: func(t *testing.T) *Providers { r, _ := newRemotes(t, nil); return r },
			reg:     "nope", wantReason: providers.NotFound,
			wantMsg: []string{`ProviderRegistration "nope", which does not exist`, "SecretStore team/vault", "spec.provider.remote.registration"},
		},
		{
			name: "endpoint outside the allowlist",
			remotes: func(t *testing.T) *Providers {
				r, _ := newRemotes(t, []string{"*.allowed.example"}, registration("vault", "provider.example:8443", 1, ca))
				return r
			},
			reg: "vault", wantReason: providers.Forbidden,
			wantMsg: []string{"--allowed-provider-endpoints", `ProviderRegistration "vault"`},
		},
		{
			name: "metadata address",
			remotes: func(t *testing.T) *Providers {
				r, _ := newRemotes(t, nil, registration("vault", "169.254.169.254:8443", 1, ca))
				return r
			},
			reg: "vault", wantReason: providers.Forbidden,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.remotes(t).Provider(context.Background(), store, tt.reg)
			if got := providers.ReasonOf(err); got != tt.wantReason {
				t.Fatalf("reason %s (%v), want %s", got, err, tt.wantReason)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not say %q", err, m)
				}
			}
		})
	}
}

// One provider (one connection) per registration, shared by its stores; a
// new one, with a new stamp, when the registration changes.
func TestRemotesOnePerRegistration(t *testing.T) {
	_, _, ca := selfSigned(t)
	r, idx := newRemotes(t, nil, registration("vault", "127.0.0.1:8443", 1, ca))
	ctx := context.Background()
	a := &providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "a", Name: "s"}
	b := &providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "b", Name: "s"}
	p1, s1, err := r.Provider(ctx, a, "vault")
	if err != nil {
		t.Fatal(err)
	}
	p2, s2, err := r.Provider(ctx, b, "vault")
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 || s1 != s2 {
		t.Fatalf("two stores of one registration got two providers (%p, %p) or stamps (%q, %q)", p1, p2, s1, s2)
	}
	if p1.Name() != "vault" {
		t.Errorf("provider name %q, want the registration's kind vault", p1.Name())
	}
	if err := idx.Update(registration("vault", "127.0.0.2:8443", 2, ca)); err != nil {
		t.Fatal(err)
	}
	p3, s3, err := r.Provider(ctx, a, "vault")
	if err != nil {
		t.Fatal(err)
	}
	if p3 == p1 || s3 == s1 {
		t.Fatalf("a changed registration kept its provider or stamp %q", s3)
	}
	r.Forget("vault")
	r.mu.Lock()
	n := len(r.entries)
	r.mu.Unlock()
	if n != 0 {
		t.Errorf("%d providers kept after Forget", n)
	}
}
