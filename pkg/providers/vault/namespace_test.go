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

// namespaceRecorder sits in front of the test Vault and records the
// X-Vault-Namespace each request carried ("-" for none). Vault without
// Enterprise ignores the header, so what reached the wire is the evidence.
type namespaceRecorder struct {
	mu   sync.Mutex
	seen map[string][]string // path -> namespaces, in order
}

func recordNamespaces(t *testing.T) (*namespaceRecorder, string) {
	t.Helper()
	target, err := url.Parse(server.HTTPURL)
	if err != nil {
		t.Fatal(err)
	}
	rec := &namespaceRecorder{seen: map[string][]string{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ns := "-"
		if v, ok := r.Header["X-Vault-Namespace"]; ok {
			ns = strings.Join(v, ",")
		}
		rec.mu.Lock()
		rec.seen[r.URL.Path] = append(rec.seen[r.URL.Path], ns)
		rec.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return rec, ts.URL
}

// only returns the one namespace every request to path carried, failing
// when there was none or they differ.
func (r *namespaceRecorder) only(t *testing.T, path string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := r.seen[path]
	if len(seen) == 0 {
		t.Fatalf("no request to %s; requests: %v", path, r.seen)
	}
	for _, ns := range seen[1:] {
		if ns != seen[0] {
			t.Fatalf("requests to %s carried namespaces %v, want one", path, seen)
		}
	}
	return seen[0]
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
			rec, proxyURL := recordNamespaces(t)
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
			if got := rec.only(t, login); got != tc.wantLogin {
				t.Errorf("login sent to namespace %q, want %q", got, tc.wantLogin)
			}
			if got := rec.only(t, read); got != tc.wantRead {
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
				if got := rec.only(t, p); got != tc.wantLogin {
					t.Errorf("%s sent to namespace %q, want the login's %q", p, got, tc.wantLogin)
				}
			}
			if got := rec.only(t, read); got != tc.wantRead {
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
