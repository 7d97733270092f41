package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

func TestAnonymousOnlyOnHealthPaths(t *testing.T) {
	as := func(name string) authenticator.Request {
		return authenticator.RequestFunc(func(*http.Request) (*authenticator.Response, bool, error) {
			return &authenticator.Response{User: &user.DefaultInfo{Name: name}}, true, nil
		})
	}
	for _, c := range []struct {
		user, path string
		want       bool
	}{
		{user.Anonymous, "/healthz", true},
		{user.Anonymous, "/livez", true},
		{user.Anonymous, "/readyz", true},
		{user.Anonymous, "/readyz/informer-sync", false},
		{user.Anonymous, "/metrics", false},
		{user.Anonymous, "/apis/externalsecrets.veil.dev/v1alpha1/namespaces/a/externalsecretvalues/b", false},
		{"alice", "/apis/externalsecrets.veil.dev/v1alpha1/namespaces/a/externalsecretvalues/b", true},
		{"alice", "/metrics", true},
	} {
		req, _ := http.NewRequest(http.MethodGet, "https://veil"+c.path, nil)
		_, ok, err := anonymousOnly(as(c.user), healthPaths).AuthenticateRequest(req)
		if ok != c.want || err != nil {
			t.Errorf("%s on %s: authenticated=%v (%v), want %v", c.user, c.path, ok, err, c.want)
		}
	}
}

// A bearer token never reaches the delegated authenticator, in either of
// the places a client can put one; front-proxy and certificate
// authentication see the request unchanged.
func TestWithoutBearerTokens(t *testing.T) {
	var seen http.Header
	inner := authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		seen = req.Header
		if req.Header.Get("Authorization") != "" || strings.Contains(strings.Join(req.Header.Values("Sec-WebSocket-Protocol"), ","), "bearer") {
			return &authenticator.Response{User: &user.DefaultInfo{Name: "system:serviceaccount:a:b"}}, true, nil
		}
		return nil, false, nil
	})
	for name, headers := range map[string]map[string]string{
		"Authorization": {"Authorization": "Bearer token"},
		"WebSocket":     {"Sec-WebSocket-Protocol": "base64url.bearer.authorization.k8s.io.dG9rZW4, v4.channel.k8s.io"},
	} {
		req, _ := http.NewRequest(http.MethodGet, "https://veil/apis", nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		if _, ok, err := withoutBearerTokens(inner).AuthenticateRequest(req); ok || err != nil {
			t.Errorf("%s: authenticated=%v (%v), want the token ignored", name, ok, err)
		}
		if got := seen.Values("Sec-WebSocket-Protocol"); name == "WebSocket" && strings.Join(got, ",") != "v4.channel.k8s.io" {
			t.Errorf("other subprotocols should be kept: %v", got)
		}
		for k, v := range headers {
			if req.Header.Get(k) != v {
				t.Errorf("%s: the caller's request was changed", name)
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "https://veil/apis", nil)
	req.Header.Set("X-Remote-User", "alice")
	_, _, _ = withoutBearerTokens(inner).AuthenticateRequest(req)
	if seen.Get("X-Remote-User") != "alice" {
		t.Error("a request without a token should reach the authenticator unchanged")
	}
}

func TestValidate(t *testing.T) {
	o := NewOptions()
	o.AllowedProviderEndpoints = []string{"10.0.0.0/99", "*.ok.example"}
	o.CredentialCacheTTL = -1
	err := o.Validate()
	if err == nil || !strings.Contains(err.Error(), "10.0.0.0/99") || !strings.Contains(err.Error(), "--credential-cache-ttl") {
		t.Errorf("Validate = %v, want both problems reported", err)
	}
	if err := NewOptions().Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

// The provider client certificate flags go together, and name a pair that
// loads; the error names the files, never what they hold.
func TestValidateProviderClientCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cert, key, want string
	}{
		{cert, "", "set both or neither"},
		{"", key, "set both or neither"},
		{cert, key, "--provider-client-cert-file and --provider-client-key-file"},
	} {
		o := NewOptions()
		o.ProviderClientCertFile, o.ProviderClientKeyFile = c.cert, c.key
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cert %q key %q: Validate = %v, want it to say %q", c.cert, c.key, err, c.want)
		}
	}
}

func TestFixedVerbosity(t *testing.T) {
	reached := false
	h := fixedVerbosity(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{http.MethodPut, "/debug/flags/v", false},
		{http.MethodPut, "//debug/./flags/v", false},
		{http.MethodGet, "/debug/flags/v", true},
		{http.MethodPut, "/apis/externalsecrets.veil.dev/v1alpha1", true},
	} {
		reached = false
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, "https://veil"+c.path, strings.NewReader("10")))
		if reached != c.want || (!c.want && rec.Code != http.StatusForbidden) {
			t.Errorf("%s %s: reached the server %v (%d), want %v", c.method, c.path, reached, rec.Code, c.want)
		}
	}
}

// TestLeaderEndpointSliceFlags: the leader's EndpointSlice needs this
// replica's address, and an address that is one.
func TestLeaderEndpointSliceFlags(t *testing.T) {
	for _, c := range []struct {
		slice, address, want string
	}{
		{"veil-apiserver-leader", "", "go together"},
		{"", "10.0.0.7", "go together"},
		{"veil-apiserver-leader", "pod-ip", "is not an IP address"},
	} {
		o := NewOptions()
		o.LeaderEndpointSlice, o.LeaderAddress = c.slice, c.address
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--leader-endpointslice=%q --leader-address=%q: %v, want an error saying %q", c.slice, c.address, err, c.want)
		}
	}
}
