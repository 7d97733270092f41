package server

import (
	"net/http"
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
