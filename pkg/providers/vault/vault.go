// Package vault is the provider for the KV secrets engines (v1 and v2) of
// HashiCorp Vault and OpenBao. A client logs in once, keeps its token for
// every read of its store, renews or replaces it before it expires, and
// revokes it when the store goes away.
package vault

import (
	"context"
	"crypto/tls"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"k8s.io/utils/clock"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

func init() { providers.Register(provider{clock: clock.RealClock{}}) }

const (
	providerName = "vault"

	// requestTimeout bounds one request to Vault, retries included.
	requestTimeout = 30 * time.Second
)

type provider struct {
	// clock times token renewals; tests step it.
	clock clock.PassiveClock
}

func (provider) Name() string { return providerName }

func (provider) Endpoints(store *providers.Store) ([]*url.URL, error) {
	spec, err := specOf(store)
	if err != nil {
		return nil, err
	}
	u, err := serverURL(store, spec.Server)
	if err != nil {
		return nil, err
	}
	urls := []*url.URL{u}
	// auth.iam with role connects to STS too. A store without
	// credentials connects nowhere: NewClient refuses it.
	if a := spec.Auth.Iam; a != nil && a.AWSIAMRole != "" && (a.SecretRef != nil || a.JWTAuth != nil) {
		ia, err := checkIam(store, a)
		if err != nil {
			return nil, err
		}
		urls = append(urls, ia.sts)
	}
	return urls, nil
}

func specOf(store *providers.Store) (*configv1alpha1.VaultProvider, error) {
	if store.Spec.Provider.Vault == nil {
		return nil, providers.Errorf(providers.Invalid, "%s has no spec.provider.vault", store)
	}
	return store.Spec.Provider.Vault, nil
}

// serverURL parses spec.provider.vault.server. Its messages never repeat the
// URL as written, because a URL with user info carries a password.
func serverURL(store *providers.Store, server string) (*url.URL, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.server is not an https:// URL with a host, such as https://vault.example.com:8200", store)
	}
	if u.User != nil {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.server must not carry user info; Veil authenticates with spec.provider.vault.auth", store)
	}
	return u, nil
}

func (p provider) NewClient(ctx context.Context, store *providers.Store, creds providers.Credentials, env providers.Env) (providers.Client, error) {
	spec, err := specOf(store)
	if err != nil {
		return nil, err
	}
	u, err := serverURL(store, spec.Server)
	if err != nil {
		return nil, err
	}
	if err := env.CheckPlaintext(store, u); err != nil {
		return nil, err
	}
	mount := "secret"
	if spec.Path != nil && *spec.Path != "" {
		mount = *spec.Path
	}
	mount, err = cleanPath(mount)
	if err != nil {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.path: %s", store, err)
	}
	version := spec.Version
	switch version {
	case "":
		version = configv1alpha1.VaultKVv2
	case configv1alpha1.VaultKVv1, configv1alpha1.VaultKVv2:
	default:
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.version %q is neither v1 nor v2", store, version)
	}

	if err := checkHeaders(store, spec.Headers); err != nil {
		return nil, err
	}
	for _, ns := range []struct {
		field string
		value *string
	}{{"namespace", spec.Namespace}, {"auth.namespace", spec.Auth.Namespace}} {
		if ns.value != nil && !vaultNamespace(*ns.value) {
			return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.%s is not a Vault namespace path: at most 256 printable characters without spaces", store, ns.field)
		}
	}

	tlsConfig, err := tlsConfigFor(ctx, store, spec, creds)
	if err != nil {
		return nil, err
	}
	hc := newHTTPClient(tlsConfig, env)
	base, err := newAPIClient(u, spec, hc)
	if err != nil {
		return nil, providers.Wrap(providers.Invalid, err, "%s: configuring the Vault client", store)
	}
	c := &client{
		store:   store.String(),
		server:  u.Scheme + "://" + u.Host,
		mount:   mount,
		version: version,
		cas:     spec.CheckAndSet != nil && spec.CheckAndSet.Required,
		base:    base,
		auth:    spec.Auth.Namespace,
		http:    []*http.Client{hc},
		clock:   p.clock,
	}
	if err := c.setUpAuth(ctx, store, spec, u, creds, tlsConfig, env); err != nil {
		return nil, err
	}
	// Logging in here, while Veil builds the client once for the store,
	// means concurrent first reads share one login, and credentials the
	// login reads are part of the store's identity from the start.
	if c.login != nil {
		if _, err := c.refresh(ctx, nil, false); err != nil {
			return nil, err
		}
	}
	if f := feedFor(c.server); f != nil && version == configv1alpha1.VaultKVv2 {
		return &feedClient{client: c, feed: f, namespace: feedNamespace(spec.Namespace)}, nil
	}
	return c, nil
}

// newAPIClient builds a Vault client that holds no token: each request is
// made through a copy carrying the token current at that time.
func newAPIClient(u *url.URL, spec *configv1alpha1.VaultProvider, hc *http.Client) (*vaultapi.Client, error) {
	c, err := vaultapi.NewClient(&vaultapi.Config{
		Address:        u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/"),
		HttpClient:     hc,
		Timeout:        requestTimeout,
		MaxRetries:     2,
		MinRetryWait:   250 * time.Millisecond,
		MaxRetryWait:   time.Second,
		ReadYourWrites: spec.ReadYourWrites || spec.ForwardInconsistent, // as in ESO
		CheckRetry:     checkRetry,
	})
	if err != nil {
		return nil, err
	}
	// The library takes a token, a namespace and headers from veil-apiserver's
	// environment (VAULT_TOKEN, VAULT_NAMESPACE, VAULT_HEADERS); none of them
	// may reach a server a store names.
	c.ClearToken()
	h := http.Header{vaultapi.RequestHeaderName: []string{"true"}}
	for _, k := range slices.Sorted(maps.Keys(spec.Headers)) {
		h.Set(k, spec.Headers[k])
	}
	if spec.ReadYourWrites && spec.ForwardInconsistent { // both, as in ESO
		h.Set("X-Vault-Inconsistent", "forward-active-node")
	}
	c.SetHeaders(h)
	if spec.Namespace != nil && *spec.Namespace != "" {
		c.SetNamespace(*spec.Namespace)
	}
	return c, nil
}

// reservedHeaders are HTTP's own: a store setting them would change where
// a request goes, whom it authenticates as, or how it is framed.
var reservedHeaders = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Host": true, "Cookie": true,
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true, "Expect": true, "Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true,
	"X-Forwarded-Proto": true, "Accept-Encoding": true,
}

// checkHeaders refuses headers that are Vault's own (X-Vault-*: the token,
// the namespace, request forwarding) or HTTP's, and names or values that
// could not be sent as written. The CRD bounds their number and sizes.
func checkHeaders(store *providers.Store, headers map[string]string) error {
	if len(headers) > 16 {
		return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.headers names %d headers, more than 16", store, len(headers))
	}
	for _, k := range slices.Sorted(maps.Keys(headers)) {
		canon := http.CanonicalHeaderKey(k)
		switch {
		case k == "" || len(k) > 64 || strings.IndexFunc(k, func(r rune) bool {
			return !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) >= 0:
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.headers: a header name must be 1 to 64 letters, digits, '.', '_' or '-'", store)
		case strings.HasPrefix(canon, "X-Vault-") || reservedHeaders[canon] || strings.HasPrefix(canon, "Content-"):
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.headers may not set %s: Veil sets Vault's own headers (token, namespace, forwarding) and HTTP's itself", store, canon)
		case len(headers[k]) > 1024 || strings.IndexFunc(headers[k], func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0:
			// The value may be a credential for a proxy: never quoted.
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.headers: the value of %s is over 1024 characters or holds control characters", store, canon)
		}
	}
	return nil
}

// vaultNamespace says whether s may be sent as X-Vault-Namespace: Vault's
// namespace paths have no spaces or control characters, and a header with
// them would be refused by the HTTP client with a less helpful message.
func vaultNamespace(s string) bool {
	if len(s) > 256 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// checkRetry retries what the Vault library does (connection failures,
// 5xx), except a connection the endpoint allowlist refused: that answer
// will not change.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	var notAllowed *allowlist.NotAllowedError
	if errors.As(err, &notAllowed) {
		return false, err
	}
	return vaultapi.DefaultRetryPolicy(ctx, resp, err)
}

// newHTTPClient dials only through env.DialContext, which enforces
// --allowed-provider-endpoints on every connection. There is no proxy: a
// proxy would carry connections around that check.
func newHTTPClient(tlsConfig *tls.Config, env providers.Env) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         env.DialContext,
			TLSClientConfig:     tlsConfig,
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
			MaxIdleConnsPerHost: 16,
		},
		// The Vault library follows one redirect itself, refusing a
		// downgrade to http; the transport must hand redirects back to it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// cleanPath checks a mount path or a remote key: segments "." and ".."
// are refused, because the Vault library cleans request paths and a key
// like "../../sys/x" would otherwise leave the mount.
func cleanPath(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", errors.New("it is empty")
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return "", errors.New(`it has a "." or ".." segment`)
		}
	}
	return p, nil
}
