package vault

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/credentials"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/test/harness"
)

func TestEndpoints(t *testing.T) {
	for _, tc := range []struct {
		server, want, err string
	}{
		{server: "https://vault.example.com:8200", want: "https://vault.example.com:8200"},
		{server: "http://127.0.0.1:8200/", want: "http://127.0.0.1:8200/"},
		{server: "vault.example.com", err: "is not an https:// URL"},
		{server: "ftp://vault.example.com", err: "is not an https:// URL"},
		{server: "https://", err: "is not an https:// URL"},
		{server: "https://admin:hunter2@vault.example.com", err: "must not carry user info"},
	} {
		f := newFixture(t)
		urls, err := provider{}.Endpoints(f.store(configv1alpha1.VaultProvider{Server: tc.server}))
		if tc.err != "" {
			wantError(t, err, providers.Invalid, tc.err, "hunter2")
			continue
		}
		if err != nil || len(urls) != 1 || urls[0].String() != tc.want {
			t.Errorf("%s: %v, %v", tc.server, urls, err)
		}
	}
}

func TestPlaintextNeedsTheFlag(t *testing.T) {
	_, sec := tokenFor(t, `path "secret/*" { capabilities = ["read"] }`)
	if _, err := server.PutKV(ctxFor(t), "secret", unique(t), map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	spec := configv1alpha1.VaultProvider{Server: server.HTTPURL, Auth: tokenAuth()}
	f := newFixture(t, sec)
	_, err := f.newClient(spec)
	wantError(t, err, providers.Forbidden, "start veil-apiserver with --allow-plaintext-providers")
	if f.dialer.count() != 0 {
		t.Errorf("dialed %v before refusing", f.dialer.dialed)
	}
	f.plain = true
	c := f.mustClient(spec)
	if _, err := c.Get(ctxFor(t), providers.Ref{Key: unique(t)}); providers.ReasonOf(err) != providers.NotFound {
		t.Errorf("plaintext read allowed by the flag: %v", err)
	}
}

func TestDialsOnlyThroughEnv(t *testing.T) {
	_, sec := tokenFor(t, `path "secret/*" { capabilities = ["read"] }`)
	f := newFixture(t, sec)
	c := f.mustClient(httpsSpec(tokenAuth()))
	if _, err := c.Get(ctxFor(t), providers.Ref{Key: "x"}); providers.ReasonOf(err) != providers.NotFound {
		t.Fatal(err)
	}
	if f.dialer.count() == 0 {
		t.Fatal("the client connected without env.DialContext")
	}

	// --allowed-provider-endpoints is enforced on the connection itself.
	list, err := allowlist.Parse([]string{"vault.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	store := f.store(httpsSpec(tokenAuth()))
	var d net.Dialer
	c2, err := provider{clock: f.clock}.NewClient(ctxFor(t), store, credsFor(store, sec), providers.Env{DialContext: list.Dialer(allowlist.Namespaced, d.DialContext)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c2.Get(ctxFor(t), providers.Ref{Key: "x"})
	wantError(t, err, providers.Forbidden, "--allowed-provider-endpoints")
}

func TestTLS(t *testing.T) {
	ctx := ctxFor(t)
	key := unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	tok, sec := tokenFor(t, `path "secret/*" { capabilities = ["read"] }`)
	otherCA, err := harness.NewCA(t.TempDir(), "other-ca")
	if err != nil {
		t.Fatal(err)
	}
	caPEM := string(server.CA.CertPEM)
	f := newFixture(t, sec, configMap("vault-ca", map[string]string{"ca.crt": caPEM}), secret("vault-ca", map[string]string{"ca.crt": caPEM}))
	good := []configv1alpha1.VaultProvider{
		{CABundle: server.CA.CertPEM},
		{CAProvider: &configv1alpha1.CAProvider{Type: "ConfigMap", Name: "vault-ca", Key: "ca.crt"}},
		{CAProvider: &configv1alpha1.CAProvider{Type: "Secret", Name: "vault-ca", Key: "ca.crt"}},
		{CABundle: otherCA.CertPEM, CAProvider: &configv1alpha1.CAProvider{Type: "ConfigMap", Name: "vault-ca", Key: "ca.crt"}},
	}
	for i, spec := range good {
		spec.Server, spec.Auth = server.HTTPSURL, tokenAuth()
		if _, err := f.mustClient(spec).Get(ctx, providers.Ref{Key: key}); err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
	for name, spec := range map[string]configv1alpha1.VaultProvider{
		"wrong CA":     {CABundle: otherCA.CertPEM},
		"system roots": {},
	} {
		spec.Server, spec.Auth = server.HTTPSURL, tokenAuth()
		_, err := f.mustClient(spec).Get(ctx, providers.Ref{Key: key})
		wantError(t, err, providers.Unavailable, "cannot verify the TLS certificate of Vault at "+server.HTTPSURL+"; set spec.provider.vault.caBundle or caProvider", tok)
		t.Logf("%s: %v", name, err)
	}
	_, err = f.newClient(configv1alpha1.VaultProvider{Server: server.HTTPSURL, CABundle: []byte("not PEM"), Auth: tokenAuth()})
	wantError(t, err, providers.Invalid, "caBundle holds no PEM certificate")
	_, err = f.newClient(configv1alpha1.VaultProvider{Server: server.HTTPSURL, CAProvider: &configv1alpha1.CAProvider{Type: "ConfigMap", Name: "vault-ca", Key: "ca.crt", Namespace: ptr("elsewhere")}, Auth: tokenAuth()})
	wantError(t, err, providers.Forbidden, "may only use credentials of its own namespace")
}

func TestCertAuthWithMutualTLS(t *testing.T) {
	ctx := ctxFor(t)
	mount, key := unique(t), unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	clientCA, err := harness.NewCA(t.TempDir(), "client-ca")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := clientCA.Issue(t.TempDir(), "veil", "veil", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Policy(ctx, mount, `path "secret/data/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if err := server.EnableAuth(ctx, mount, "cert"); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(ctx, "auth/"+mount+"/certs/veil", map[string]any{"certificate": string(clientCA.CertPEM), "token_policies": mount}); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, secret("client", map[string]string{"tls.crt": string(pair.CertPEM), "tls.key": string(pair.KeyPEM)}))

	// The client certificate of spec.tls, used for every request and the login.
	spec := httpsSpec(configv1alpha1.VaultAuth{Cert: &configv1alpha1.VaultCertAuth{Path: mount, Name: "veil"}})
	spec.TLS = &configv1alpha1.VaultClientTLS{CertSecretRef: *ref("client", "tls.crt"), KeySecretRef: *ref("client", "tls.key")}
	if _, err := f.mustClient(spec).Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatal(err)
	}
	// A certificate of the cert auth method's own, for the login only.
	spec = httpsSpec(configv1alpha1.VaultAuth{Cert: &configv1alpha1.VaultCertAuth{Path: mount, ClientCert: ref("client", "tls.crt"), SecretRef: ref("client", "tls.key")}})
	if _, err := f.mustClient(spec).Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatal(err)
	}
	_, err = f.newClient(httpsSpec(configv1alpha1.VaultAuth{Cert: &configv1alpha1.VaultCertAuth{Path: mount}}))
	wantError(t, err, providers.Invalid, "needs a client certificate")
	_, err = f.newClient(httpsSpec(configv1alpha1.VaultAuth{Cert: &configv1alpha1.VaultCertAuth{Path: mount, ClientCert: ref("client", "tls.key"), SecretRef: ref("client", "tls.key")}}))
	wantError(t, err, providers.Invalid, "do not hold a matching PEM certificate and private key", string(pair.KeyPEM))
}

// appRole creates an AppRole role with the given settings and a Secret
// "approle" holding its secret id.
func appRole(t *testing.T, settings map[string]any) (mount, roleID, secretID string) {
	t.Helper()
	ctx := ctxFor(t)
	mount = unique(t)
	if err := server.Policy(ctx, mount, `
path "secret/data/*" { capabilities = ["read"] }
path "secret/data/denied/*" { capabilities = ["deny"] }`); err != nil {
		t.Fatal(err)
	}
	settings["token_policies"] = mount
	roleID, secretID, err := server.AppRole(ctx, mount, "veil", settings)
	if err != nil {
		t.Fatal(err)
	}
	return mount, roleID, secretID
}

func appRoleSpec(mount, roleID string) configv1alpha1.VaultProvider {
	return httpsSpec(configv1alpha1.VaultAuth{AppRole: &configv1alpha1.VaultAppRole{Path: mount, RoleID: roleID, SecretRef: *ref("approle", "secret-id")}})
}

func count(t *testing.T, path string) int {
	t.Helper()
	n, failed, err := server.Responses(path)
	if err != nil {
		t.Fatal(err)
	}
	return n - failed
}

// TestTokenLifecycle follows one AppRole token: one login for many reads,
// a renewal two thirds into its TTL, a new login when Vault forgets it,
// revocation on Close.
func TestTokenLifecycle(t *testing.T) {
	ctx := ctxFor(t)
	key := unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	mount, roleID, secretID := appRole(t, map[string]any{"token_ttl": "1h", "token_max_ttl": "24h"})
	f := newFixture(t, secret("approle", map[string]string{"secret-id": secretID}))
	clk := steppingClock()
	f.clock = clk
	c := f.mustClient(appRoleSpec(mount, roleID))
	login := "auth/" + mount + "/login"
	renewals := count(t, "auth/token/renew-self")
	revocations := count(t, "auth/token/revoke-self")

	get := func() {
		t.Helper()
		if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		get()
	}
	if n := count(t, login); n != 1 {
		t.Fatalf("%d logins for 20 reads, want 1", n)
	}

	clk.SetTime(clk.Now().Add(39 * time.Minute))
	get()
	if n := count(t, "auth/token/renew-self"); n != renewals {
		t.Fatalf("renewed %d times before two thirds of the TTL", n-renewals)
	}
	clk.SetTime(clk.Now().Add(2 * time.Minute))
	get()
	get()
	if n, r := count(t, login), count(t, "auth/token/renew-self")-renewals; n != 1 || r != 1 {
		t.Fatalf("after two thirds of the TTL: %d logins and %d renewals, want 1 and 1", n, r)
	}

	// A policy's refusal is final: no new login.
	for range 2 {
		_, err := c.Get(ctx, providers.Ref{Key: "denied/x"})
		wantError(t, err, providers.Forbidden, `the store's Vault identity (the AppRole at auth/`+mount+`) lacks access; its policies must grant "read" on "secret/data/denied/x"`, secretID)
	}
	if n := count(t, login); n != 1 {
		t.Fatalf("%d logins after a policy refused a read, want 1", n)
	}

	// Vault no longer knows the token (revoked behind Veil's back): one new
	// login, and the read succeeds.
	if _, err := server.Write(ctx, "sys/leases/revoke-prefix/auth/"+mount+"/login", nil); err != nil {
		t.Fatal(err)
	}
	get()
	if n := count(t, login); n != 2 {
		t.Fatalf("%d logins after the token was revoked, want 2", n)
	}

	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, "auth/token/revoke-self"); n != revocations+1 {
		t.Fatalf("Close revoked %d tokens, want 1", n-revocations)
	}
	_, err := c.Get(ctx, providers.Ref{Key: key})
	wantError(t, err, providers.Unavailable, "was closed")
}

// TestTokenNotRenewable: a batch token cannot be renewed, so Veil logs in
// again before it expires; when that login fails, the old token serves
// until it expires.
func TestTokenNotRenewable(t *testing.T) {
	ctx := ctxFor(t)
	key := unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	mount, roleID, secretID := appRole(t, map[string]any{"token_ttl": "1h", "token_type": "batch"})
	f := newFixture(t, secret("approle", map[string]string{"secret-id": secretID}))
	clk := steppingClock()
	f.clock = clk
	c := f.mustClient(appRoleSpec(mount, roleID))
	login := "auth/" + mount + "/login"
	renewals := count(t, "auth/token/renew-self")

	clk.SetTime(clk.Now().Add(41 * time.Minute))
	if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatal(err)
	}
	if n, r := count(t, login), count(t, "auth/token/renew-self")-renewals; n != 2 || r != 0 {
		t.Fatalf("%d logins and %d renewals, want 2 and none", n, r)
	}

	// The secret id no longer works: the token in hand still does.
	if _, err := server.Write(ctx, "auth/"+mount+"/role/veil/secret-id/destroy", map[string]any{"secret_id": secretID}); err != nil {
		t.Fatal(err)
	}
	clk.SetTime(clk.Now().Add(41 * time.Minute))
	if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatalf("the token still valid was not used: %v", err)
	}
	clk.SetTime(clk.Now().Add(20 * time.Minute))
	_, err := c.Get(ctx, providers.Ref{Key: key})
	wantError(t, err, providers.Forbidden, "Vault refused to log in as the AppRole at auth/"+mount, secretID)
}

func TestLoginRefused(t *testing.T) {
	mount, roleID, secretID := appRole(t, map[string]any{})
	f := newFixture(t, secret("approle", map[string]string{"secret-id": "wrong-" + secretID}))
	_, err := f.newClient(appRoleSpec(mount, roleID))
	wantError(t, err, providers.Forbidden, "Vault refused to log in as the AppRole at auth/"+mount, secretID)

	f = newFixture(t)
	_, err = f.newClient(appRoleSpec(mount, roleID))
	wantError(t, err, providers.Invalid, `Secret team/approle does not exist`)
	_, err = f.newClient(appRoleSpec("../sys", roleID))
	wantError(t, err, providers.Invalid, `spec.provider.vault.auth.appRole.path: it has a "." or ".." segment`)
}

// TestJWTAuth logs in with a JWT from a Secret, signed by a key Vault's
// jwt auth method trusts.
// jwtBackend mounts Vault's jwt auth method, trusting signer, with a role
// "veil" for subject "veil" and audience "vault" that may read key.
func jwtBackend(t *testing.T) (mount, key string, signer *ecdsa.PrivateKey) {
	t.Helper()
	ctx := ctxFor(t)
	mount, key = unique(t), unique(t)
	var err error
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Policy(ctx, mount, `path "secret/data/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if err := server.EnableAuth(ctx, mount, "jwt"); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(ctx, "auth/"+mount+"/config", map[string]any{"jwt_validation_pubkeys": []string{string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))}}); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(ctx, "auth/"+mount+"/role/veil", map[string]any{
		"role_type": "jwt", "user_claim": "sub", "bound_audiences": []string{"vault"}, "bound_subject": "veil", "token_policies": mount,
	}); err != nil {
		t.Fatal(err)
	}
	return mount, key, signer
}

func TestJWTAuth(t *testing.T) {
	ctx := ctxFor(t)
	mount, key, signer := jwtBackend(t)
	jwt := signJWT(t, signer, map[string]any{"sub": "veil", "aud": "vault", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	f := newFixture(t, secret("jwt", map[string]string{"token": jwt}))
	c := f.mustClient(httpsSpec(configv1alpha1.VaultAuth{JWT: &configv1alpha1.VaultJWTAuth{Path: mount, Role: "veil", SecretRef: ref("jwt", "token")}}))
	if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatal(err)
	}

	wrong := signJWT(t, signer, map[string]any{"sub": "someone-else", "aud": "vault", "exp": time.Now().Add(time.Hour).Unix()})
	f = newFixture(t, secret("jwt", map[string]string{"token": wrong}))
	_, err := f.newClient(httpsSpec(configv1alpha1.VaultAuth{JWT: &configv1alpha1.VaultJWTAuth{Path: mount, Role: "veil", SecretRef: ref("jwt", "token")}}))
	wantError(t, err, providers.Forbidden, "Vault refused to log in as role \"veil\" of the jwt auth method", wrong)
}

// TestAuthLikeESO: the auth manifests External Secrets Operator accepts
// and Veil's CRD now takes as they are behave as ESO's: with both token
// sources, jwt uses secretRef and kubernetes serviceAccountRef; a
// requested token's audiences are serviceAccountRef's then the method's
// own ("vault" by default); kubernetes auth with neither source is
// refused with what to set, never answered with veil-apiserver's own
// identity.
func TestAuthLikeESO(t *testing.T) {
	ctx := ctxFor(t)
	mount, key, signer := jwtBackend(t)
	if _, err := server.Write(ctx, "auth/"+mount+"/role/extra", map[string]any{
		"role_type": "jwt", "user_claim": "sub", "bound_audiences": []string{"extra"}, "bound_subject": "veil", "token_policies": mount,
	}); err != nil {
		t.Fatal(err)
	}
	sa := configv1alpha1.ServiceAccountSelector{Name: "reader", Audiences: []string{"sa-own"}}
	for _, tc := range []struct {
		name          string
		auth          configv1alpha1.VaultAuth
		objs          []runtime.Object
		wantAudiences [][]string
		wantErr       string
	}{{
		name: "jwt token's audiences: serviceAccountRef's, then vault",
		auth: configv1alpha1.VaultAuth{JWT: &configv1alpha1.VaultJWTAuth{Path: mount, Role: "veil",
			KubernetesServiceAccountToken: &configv1alpha1.VaultKubernetesServiceAccountTokenAuth{ServiceAccountRef: sa}}},
		wantAudiences: [][]string{{"sa-own", "vault"}},
	}, {
		name: "jwt token's audiences: serviceAccountRef's, then the method's",
		auth: configv1alpha1.VaultAuth{JWT: &configv1alpha1.VaultJWTAuth{Path: mount, Role: "extra",
			KubernetesServiceAccountToken: &configv1alpha1.VaultKubernetesServiceAccountTokenAuth{ServiceAccountRef: sa, Audiences: []string{"extra"}}}},
		wantAudiences: [][]string{{"sa-own", "extra"}},
	}, {
		name: "jwt with both: secretRef's token, no token requested",
		auth: configv1alpha1.VaultAuth{JWT: &configv1alpha1.VaultJWTAuth{Path: mount, Role: "veil", SecretRef: ref("jwt", "token"),
			KubernetesServiceAccountToken: &configv1alpha1.VaultKubernetesServiceAccountTokenAuth{ServiceAccountRef: sa}}},
		objs: []runtime.Object{secret("jwt", map[string]string{"token": signJWT(t, signer, map[string]any{"sub": "veil", "aud": "vault", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})})},
	}, {
		name: "kubernetes with both: serviceAccountRef's token, the Secret not read",
		// The kubernetes method is mounted at a jwt mount: Vault checks the
		// token's signature, which is all this test needs of it.
		auth:          configv1alpha1.VaultAuth{Kubernetes: &configv1alpha1.VaultKubernetesAuth{Path: mount, Role: "veil", ServiceAccountRef: &configv1alpha1.ServiceAccountSelector{Name: "reader"}, SecretRef: ref("absent", "token")}},
		wantAudiences: [][]string{{"vault"}},
	}, {
		name:    "kubernetes with neither: refused, saying what to set",
		auth:    configv1alpha1.VaultAuth{Kubernetes: &configv1alpha1.VaultKubernetesAuth{Path: mount, Role: "veil"}},
		wantErr: `names neither serviceAccountRef nor secretRef: External Secrets Operator would log in with its own ServiceAccount token, but Veil never lends its own identity to a store; set serviceAccountRef`,
	}, {
		name:    "jwt with neither: refused",
		auth:    configv1alpha1.VaultAuth{JWT: &configv1alpha1.VaultJWTAuth{Path: mount, Role: "veil"}},
		wantErr: "needs kubernetesServiceAccountToken or secretRef",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var asked [][]string
			f := newFixture(t, tc.objs...)
			store := f.store(httpsSpec(tc.auth))
			cs := fake.NewClientset(tc.objs...)
			cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
				tr, ok := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest)
				if !ok || a.GetSubresource() != "token" {
					return false, nil, nil
				}
				asked = append(asked, tr.Spec.Audiences)
				out := tr.DeepCopy()
				out.Status.Token = signJWT(t, signer, map[string]any{"sub": "veil", "aud": tr.Spec.Audiences, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
				return true, out, nil
			})
			c, err := provider{clock: f.clock}.NewClient(ctx, store, credentials.NewReader(cs, 0).ForStore(store), providers.Env{DialContext: f.dialer.DialContext})
			if tc.wantErr != "" {
				wantError(t, err, providers.Invalid, tc.wantErr)
				if len(asked) != 0 {
					t.Errorf("asked for tokens %v; want none", asked)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(asked) != fmt.Sprint(tc.wantAudiences) {
				t.Errorf("token requests with audiences %v; want %v", asked, tc.wantAudiences)
			}
		})
	}
}

func signJWT(t *testing.T, key *ecdsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signed := enc(map[string]string{"alg": "ES256", "typ": "JWT"}) + "." + enc(claims)
	sum := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestUnreachable(t *testing.T) {
	tok, sec := tokenFor(t, `path "secret/*" { capabilities = ["read"] }`)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	spec := httpsSpec(tokenAuth())
	spec.Server = "https://" + addr
	c := newFixture(t, sec).mustClient(spec)
	_, err = c.Get(ctxFor(t), providers.Ref{Key: "x"})
	wantError(t, err, providers.Unavailable, fmt.Sprintf("cannot reach Vault at https://%s to read key \"x\"; check that Vault is running", addr), tok)
}

// TestConcurrentReadsShareOneRefresh: reads racing when the token is due
// wait for one renewal and share it.
func TestConcurrentReadsShareOneRefresh(t *testing.T) {
	ctx := ctxFor(t)
	key := unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	mount, roleID, secretID := appRole(t, map[string]any{"token_ttl": "1h"})
	f := newFixture(t, secret("approle", map[string]string{"secret-id": secretID}))
	clk := steppingClock()
	f.clock = clk
	c := f.mustClient(appRoleSpec(mount, roleID))
	renewals := count(t, "auth/token/renew-self")
	clk.SetTime(clk.Now().Add(45 * time.Minute))

	errs := make(chan error, 50)
	for range 50 {
		go func() {
			_, err := c.Get(ctx, providers.Ref{Key: key})
			errs <- err
		}()
	}
	for range 50 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, r := count(t, "auth/"+mount+"/login"), count(t, "auth/token/renew-self")-renewals; n != 1 || r != 1 {
		t.Fatalf("50 concurrent reads: %d logins and %d renewals, want 1 and 1", n, r)
	}
}

// userPass enables a userpass mount with a policy reading secret/, and
// creates user "veil" there with the given password and settings.
func userPass(t *testing.T, password string, settings map[string]any) (mount string) {
	t.Helper()
	ctx := ctxFor(t)
	mount = unique(t)
	if err := server.Policy(ctx, mount, `path "secret/data/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if err := server.EnableAuth(ctx, mount, "userpass"); err != nil {
		t.Fatal(err)
	}
	settings["password"], settings["token_policies"] = password, mount
	if _, err := server.Write(ctx, "auth/"+mount+"/users/veil", settings); err != nil {
		t.Fatal(err)
	}
	return mount
}

func userPassSpec(mount, username string, password *configv1alpha1.SecretKeySelector) configv1alpha1.VaultProvider {
	return httpsSpec(configv1alpha1.VaultAuth{UserPass: &configv1alpha1.VaultUserPassAuth{Path: mount, Username: username, SecretRef: *password}})
}

// TestUserPassAuth logs in at auth/<mount>/login/<username> with the
// password of a Secret, keeps one token for many reads and revokes it on
// Close.
func TestUserPassAuth(t *testing.T) {
	ctx := ctxFor(t)
	key := unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	canary := "pw canary " + key // spaces are part of a password
	mount := userPass(t, canary, map[string]any{"token_ttl": "1h"})
	login := "auth/" + mount + "/login/veil"
	revocations := count(t, "auth/token/revoke-self")
	f := newFixture(t, secret("userpass", map[string]string{"password": canary}))
	c := f.mustClient(userPassSpec(mount, "veil", ref("userpass", "password")))
	for range 5 {
		if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, login); n != 1 {
		t.Fatalf("%d logins at %s for 5 reads, want 1", n, login)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, "auth/token/revoke-self"); n != revocations+1 {
		t.Fatalf("Close revoked %d tokens, want 1", n-revocations)
	}

	// A ClusterSecretStore names the Secret's namespace, and must.
	elsewhere := secret("userpass", map[string]string{"password": canary})
	elsewhere.Namespace = "elsewhere"
	for _, tc := range []struct {
		namespace *string
		err       string
	}{{namespace: ptr("elsewhere")}, {err: "must set namespace, because a ClusterSecretStore has none of its own"}} {
		password := ref("userpass", "password")
		password.Namespace = tc.namespace
		spec := userPassSpec(mount, "veil", password)
		store := &providers.Store{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "vault", Generation: 1,
			Spec: &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &spec}}}
		cc, err := provider{clock: f.clock}.NewClient(ctx, store, credsFor(store, elsewhere), providers.Env{DialContext: f.dialer.DialContext})
		if tc.err != "" {
			wantError(t, err, providers.Invalid, tc.err, canary)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close(context.Background()) })
		if _, err := cc.Get(ctx, providers.Ref{Key: key}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUserPassRefused: a wrong password, a password Secret of another
// namespace, a username that is no userpass name. The last two are
// refused before Vault is dialed; no error carries the password.
func TestUserPassRefused(t *testing.T) {
	canary := "pw-canary-" + unique(t)
	mount := userPass(t, canary, map[string]any{})
	f := newFixture(t, secret("userpass", map[string]string{"password": "wrong-" + canary, "empty": ""}))
	_, err := f.newClient(userPassSpec(mount, "veil", ref("userpass", "password")))
	wantError(t, err, providers.Forbidden, `Vault refused to log in as user "veil" of the userpass auth method at auth/`+mount+`; check that the auth method is enabled at auth/`+mount+`, that the user exists and that the store's secretRef holds its password`, canary)
	_, err = f.newClient(userPassSpec(mount, "veil", ref("userpass", "empty")))
	wantError(t, err, providers.Invalid, `spec.provider.vault.auth.userPass.secretRef: Secret userpass key "empty" is empty`)

	// A namespaced store may not name another namespace's Secret, even one
	// holding the right password.
	elsewhere := secret("userpass", map[string]string{"password": canary})
	elsewhere.Namespace = "elsewhere"
	f = newFixture(t, elsewhere)
	other := ref("userpass", "password")
	other.Namespace = ptr("elsewhere")
	_, err = f.newClient(userPassSpec(mount, "veil", other))
	wantError(t, err, providers.Forbidden, "may only use credentials of its own namespace", canary)
	_, err = f.newClient(userPassSpec(mount, "../sys/veil", ref("userpass", "password")))
	wantError(t, err, providers.Invalid, `spec.provider.vault.auth.userPass.username "../sys/veil" is not a userpass user name`)
	_, err = f.newClient(userPassSpec("../sys", "veil", ref("userpass", "password")))
	wantError(t, err, providers.Invalid, `spec.provider.vault.auth.userPass.path: it has a "." or ".." segment`)
	if f.dialer.count() != 0 {
		t.Errorf("dialed %v before refusing", f.dialer.dialed)
	}
}

// TestUserPassNeverLogged: when the password changes in Vault, the failed
// replacement of a batch token is logged, at the highest verbosity, with
// neither password nor token.
func TestUserPassNeverLogged(t *testing.T) {
	ctx := ctxFor(t)
	key := unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	canary := "pw-canary-" + key
	mount := userPass(t, canary, map[string]any{"token_ttl": "1h", "token_type": "batch"})

	var logs bytes.Buffer
	klog.LogToStderr(false)
	klog.SetOutput(&logs)
	defer func() { klog.Flush(); klog.SetOutput(os.Stderr); klog.LogToStderr(true) }()
	var v klog.Level
	_ = v.Set("10")
	defer func() { _ = v.Set("0") }()

	f := newFixture(t, secret("userpass", map[string]string{"password": canary}))
	clk := steppingClock()
	f.clock = clk
	c := f.mustClient(userPassSpec(mount, "veil", ref("userpass", "password")))
	if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	self, err := c.tok.api.Auth().Token().LookupSelfWithContext(ctx)
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := self.TokenID()
	if tok == "" {
		t.Fatal("no token id in lookup-self")
	}
	if _, err := server.Write(ctx, "auth/"+mount+"/users/veil/password", map[string]any{"password": "new-" + canary}); err != nil {
		t.Fatal(err)
	}
	clk.SetTime(clk.Now().Add(41 * time.Minute))
	if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatalf("the token still valid was not used: %v", err)
	}
	clk.SetTime(clk.Now().Add(20 * time.Minute))
	_, err = c.Get(ctx, providers.Ref{Key: key})
	wantError(t, err, providers.Forbidden, `Vault refused to log in as user "veil"`, canary, tok)
	klog.Flush()
	out := logs.String()
	if !strings.Contains(out, "Replacing a Vault token failed") {
		t.Errorf("the failed replacement was not logged:\n%s", out)
	}
	for _, s := range []string{canary, tok} {
		if strings.Contains(out, s) {
			t.Errorf("the logs carry a secret:\n%s", out)
		}
	}
}
