package vault

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// headerRecorder sits in front of the test Vault and records the headers
// of each request. Vault without Enterprise ignores X-Vault-Namespace and
// X-Vault-Inconsistent, so what reached the wire is the evidence.
type headerRecorder struct {
	mu   sync.Mutex
	seen map[string][]http.Header // path -> headers, in order
}

func recordHeaders(t *testing.T) (*headerRecorder, string) {
	t.Helper()
	target, err := url.Parse(server.HTTPURL)
	if err != nil {
		t.Fatal(err)
	}
	rec := &headerRecorder{seen: map[string][]http.Header{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.seen[r.URL.Path] = append(rec.seen[r.URL.Path], r.Header.Clone())
		rec.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return rec, ts.URL
}

// only returns the one value of header every request to path carried ("-"
// for none), failing when there was no request or they differ.
func (r *headerRecorder) only(t *testing.T, path, header string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var values []string
	for _, h := range r.seen[path] {
		v := "-"
		if vs, ok := h[http.CanonicalHeaderKey(header)]; ok {
			v = strings.Join(vs, ",")
		}
		values = append(values, v)
	}
	if len(values) == 0 {
		t.Fatalf("no request to %s", path)
	}
	for _, v := range values[1:] {
		if v != values[0] {
			t.Fatalf("requests to %s carried %s %v, want one", path, header, values)
		}
	}
	return values[0]
}

// TestAuthNamespace: as in External Secrets Operator, auth.namespace is
// where Veil logs in (and renews and revokes its token), and
// spec.provider.vault.namespace where it reads; unset, the login goes to
// the read namespace; empty, to the root namespace.
func TestAuthNamespace(t *testing.T) {
	ctx := ctxFor(t)
	key := unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	mount, roleID, secretID := appRole(t, map[string]any{"token_ttl": "1h", "token_max_ttl": "24h"})
	login, read := "/v1/auth/"+mount+"/login", "/v1/secret/data/"+key

	for _, tc := range []struct {
		name        string
		kv, auth    *string
		wantLogin   string
		wantRead    string
		renewRevoke bool
	}{
		{name: "both", kv: ptr("team-kv"), auth: ptr("team-auth/sub"), wantLogin: "team-auth/sub", wantRead: "team-kv", renewRevoke: true},
		{name: "auth unset", kv: ptr("team-kv"), wantLogin: "team-kv", wantRead: "team-kv"},
		{name: "auth root", kv: ptr("team-kv"), auth: ptr(""), wantLogin: "-", wantRead: "team-kv"},
		{name: "auth only", auth: ptr("team-auth"), wantLogin: "team-auth", wantRead: "-"},
		{name: "neither", wantLogin: "-", wantRead: "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, proxyURL := recordHeaders(t)
			f := newFixture(t, secret("approle", map[string]string{"secret-id": secretID}))
			f.plain = true
			clk := steppingClock()
			f.clock = clk
			spec := configv1alpha1.VaultProvider{Server: proxyURL, Namespace: tc.kv, Auth: configv1alpha1.VaultAuth{
				Namespace: tc.auth,
				AppRole:   &configv1alpha1.VaultAppRole{Path: mount, RoleID: roleID, SecretRef: *ref("approle", "secret-id")},
			}}
			c := f.mustClient(spec)
			if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
				t.Fatal(err)
			}
			if got := rec.only(t, login, "X-Vault-Namespace"); got != tc.wantLogin {
				t.Errorf("login sent to namespace %q, want %q", got, tc.wantLogin)
			}
			if got := rec.only(t, read, "X-Vault-Namespace"); got != tc.wantRead {
				t.Errorf("read sent to namespace %q, want %q", got, tc.wantRead)
			}
			if !tc.renewRevoke {
				return
			}
			clk.SetTime(clk.Now().Add(41 * time.Minute))
			if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(ctx); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{"/v1/auth/token/renew-self", "/v1/auth/token/revoke-self"} {
				if got := rec.only(t, p, "X-Vault-Namespace"); got != tc.wantLogin {
					t.Errorf("%s sent to namespace %q, want the login's %q", p, got, tc.wantLogin)
				}
			}
			if got := rec.only(t, read, "X-Vault-Namespace"); got != tc.wantRead {
				t.Errorf("reads after the renewal sent to namespace %q, want %q", got, tc.wantRead)
			}
		})
	}

	// A namespace that cannot be a header is refused before any request.
	for _, bad := range []configv1alpha1.VaultProvider{
		{Server: server.HTTPURL, Namespace: ptr("team kv"), Auth: configv1alpha1.VaultAuth{TokenSecretRef: ref("vault-token", "token")}},
		{Server: server.HTTPURL, Auth: configv1alpha1.VaultAuth{Namespace: ptr("team\nX-Injected: 1"), TokenSecretRef: ref("vault-token", "token")}},
	} {
		f := newFixture(t, secret("vault-token", map[string]string{"token": "unused"}))
		f.plain = true
		_, err := f.newClient(bad)
		wantError(t, err, providers.Invalid, "is not a Vault namespace path")
		if n := f.dialer.count(); n != 0 {
			t.Errorf("%d connections for a store refused at once", n)
		}
	}
}

// TestHeaders: ESO's headers reach Vault on every request, logins
// included; forwardInconsistent with readYourWrites asks for forwarding,
// as in ESO. Vault's own headers and HTTP's cannot be set, and a value is
// never quoted in the refusal (it may be a proxy's credential).
func TestHeaders(t *testing.T) {
	ctx := ctxFor(t)
	key := unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	mount, roleID, secretID := appRole(t, map[string]any{})
	login, read := "/v1/auth/"+mount+"/login", "/v1/secret/data/"+key
	appRole := func(spec configv1alpha1.VaultProvider) configv1alpha1.VaultProvider {
		spec.Auth = configv1alpha1.VaultAuth{AppRole: &configv1alpha1.VaultAppRole{Path: mount, RoleID: roleID, SecretRef: *ref("approle", "secret-id")}}
		return spec
	}
	for _, tc := range []struct {
		name                   string
		ryw, forward           bool
		wantForward, wantIndex bool // wantIndex: readYourWrites in effect
	}{
		{name: "headers only"},
		{name: "forwardInconsistent with readYourWrites", ryw: true, forward: true, wantForward: true, wantIndex: true},
		{name: "forwardInconsistent alone", forward: true, wantIndex: true},
		{name: "readYourWrites alone", ryw: true, wantIndex: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, proxyURL := recordHeaders(t)
			f := newFixture(t, secret("approle", map[string]string{"secret-id": secretID}))
			f.plain = true
			c, err := f.newClient(appRole(configv1alpha1.VaultProvider{Server: proxyURL, ReadYourWrites: tc.ryw, ForwardInconsistent: tc.forward,
				Headers: map[string]string{"CF-Access-Client-Id": "team-web", "x_team.name": "web"}}))
			if tc.wantForward {
				// The test Vault, like any Vault not configured with
				// allow_forwarding_via_header, refuses the header: it was
				// sent, and Vault's answer is passed on.
				wantError(t, err, providers.Forbidden, "forwarding via header X-Vault-Inconsistent=forward-active-node disabled", secretID)
				if got := rec.only(t, login, "X-Vault-Inconsistent"); got != "forward-active-node" {
					t.Errorf("the login carried X-Vault-Inconsistent %q, want forward-active-node", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.base.ReadYourWrites(); got != tc.wantIndex {
				t.Errorf("the Vault client's readYourWrites is %v, want %v", got, tc.wantIndex)
			}
			for range 2 {
				if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range []string{login, read} {
				if got := rec.only(t, p, "CF-Access-Client-Id"); got != "team-web" {
					t.Errorf("%s: CF-Access-Client-Id %q, want team-web", p, got)
				}
				if got := rec.only(t, p, "X_team.name"); got != "web" {
					t.Errorf("%s: x_team.name %q, want web", p, got)
				}
			}
			if got := rec.only(t, read, "X-Vault-Inconsistent"); got != "-" {
				t.Errorf("reads carried X-Vault-Inconsistent %q, want none", got)
			}
		})
	}

	for header, says := range map[string]string{
		"X-Vault-Token":     "may not set X-Vault-Token",
		"x-vault-namespace": "may not set X-Vault-Namespace",
		"Authorization":     "may not set Authorization",
		"host":              "may not set Host",
		"Content-Type":      "may not set Content-Type",
		"bad header":        "a header name must be",
	} {
		f := newFixture(t, secret("approle", map[string]string{"secret-id": secretID}))
		f.plain = true
		_, err := f.newClient(appRole(configv1alpha1.VaultProvider{Server: server.HTTPURL, Headers: map[string]string{header: "proxy-credential-canary"}}))
		wantError(t, err, providers.Invalid, says, "proxy-credential-canary")
		if n := f.dialer.count(); n != 0 {
			t.Errorf("%s: %d connections for a store refused at once", header, n)
		}
	}
	f := newFixture(t, secret("approle", map[string]string{"secret-id": secretID}))
	f.plain = true
	_, err := f.newClient(appRole(configv1alpha1.VaultProvider{Server: server.HTTPURL, Headers: map[string]string{"X-Proxy": "canary\r\nX-Vault-Token: x"}}))
	wantError(t, err, providers.Invalid, "holds control characters", "canary")
}
