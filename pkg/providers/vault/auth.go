package vault

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"k8s.io/klog/v2"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

const (
	// serviceAccountTokenSeconds is the lifetime of the ServiceAccount tokens
	// Veil requests to log in; the TokenRequest API's minimum. A token is
	// used once, at login, so a short life is all it needs.
	serviceAccountTokenSeconds = 600
	// defaultAudience is the audience of those tokens when the store names
	// none: a token meant for Vault is then useless against kube-apiserver.
	defaultAudience = "vault"
	// refreshRetry is how long a token that could not be replaced is used
	// before trying again, at most.
	refreshRetry = 10 * time.Second
)

// token is a Vault token and what Veil knows of its lifetime.
type token struct {
	// api is the client's base, carrying this token on every request.
	api *vaultapi.Client
	// self carries it to the token's own endpoints (renew-self,
	// revoke-self), in the namespace it was granted in.
	self *vaultapi.Client
	// owned: Veil logged in for it, so Veil renews, replaces and revokes
	// it. A token the store gives is used as it is.
	owned     bool
	renewable bool
	// loginTTL is the TTL granted at login; renewals that grant much less
	// mean the token nears its max TTL, and a fresh login is due.
	loginTTL time.Duration
	// refreshAt is when to renew or replace the token, well before it
	// expires; both are zero for a token that does not expire.
	refreshAt, expires time.Time
}

func withToken(base *vaultapi.Client, value string) *vaultapi.Client {
	return base.WithRequestCallbacks(func(r *vaultapi.Request) { r.ClientToken = value })
}

// inAuthNamespace returns api sending its requests to the namespace logins
// go to: auth.namespace when the store sets it (empty: the root
// namespace), else api's own, spec.provider.vault.namespace.
func (c *client) inAuthNamespace(api *vaultapi.Client) *vaultapi.Client {
	if c.auth == nil {
		return api
	}
	return api.WithNamespace(*c.auth)
}

// newToken records a token Vault just granted (or renewed) with a TTL.
func (c *client) newToken(api, self *vaultapi.Client, ttl time.Duration, renewable bool, loginTTL time.Duration) *token {
	t := &token{api: api, self: self, owned: true, renewable: renewable, loginTTL: loginTTL}
	if ttl > 0 {
		// Two thirds in: late enough not to renew often, early enough that
		// a failed renewal and login still leave time to try again.
		now := c.clock.Now()
		t.refreshAt, t.expires = now.Add(ttl*2/3), now.Add(ttl)
	}
	return t
}

// loginFunc logs in and returns the token Vault granted.
type loginFunc func(ctx context.Context) (*vaultapi.SecretAuth, error)

// setUpAuth prepares the auth method the store names. Credentials are read
// through creds at every login, so a ServiceAccount token is always fresh.
// The logins keep a copy of the spec: the informer's object may be
// replaced under them.
func (c *client) setUpAuth(ctx context.Context, store *providers.Store, spec *configv1alpha1.VaultProvider, u *url.URL, creds providers.Credentials, tlsConfig *tls.Config, env providers.Env) error {
	a := spec.Auth.DeepCopy()
	switch {
	case a.TokenSecretRef != nil:
		ref := *a.TokenSecretRef
		b, err := creds.SecretKey(ctx, ref)
		if err != nil {
			return err
		}
		value := strings.TrimSpace(string(b))
		if value == "" {
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.tokenSecretRef: Secret %s key %q is empty", store, ref.Name, ref.Key)
		}
		c.identity = fmt.Sprintf("the token in Secret %s key %q", ref.Name, ref.Key)
		c.tok = &token{api: withToken(c.base, value), self: withToken(c.inAuthNamespace(c.base), value)}
		return nil

	case a.Kubernetes != nil:
		k := a.Kubernetes
		mount, err := authMount(store, "kubernetes.mountPath", k.Path, "kubernetes")
		if err != nil {
			return err
		}
		if k.ServiceAccountRef == nil && k.SecretRef == nil {
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.kubernetes names neither serviceAccountRef nor secretRef: External Secrets Operator would log in with its own ServiceAccount token, but Veil never lends its own identity to a store; set serviceAccountRef to a ServiceAccount in the store's namespace that the Vault role %q binds", store, k.Role)
		}
		// As in External Secrets Operator, serviceAccountRef wins when
		// both are set.
		secret := k.SecretRef
		if k.ServiceAccountRef != nil {
			secret = nil
		}
		c.identity = fmt.Sprintf("role %q of the kubernetes auth method at auth/%s", k.Role, mount)
		c.login = func(ctx context.Context) (*vaultapi.SecretAuth, error) {
			jwt, err := jwtFrom(ctx, creds, k.ServiceAccountRef, secret, serviceAccountTokenSeconds)
			if err != nil {
				return nil, err
			}
			return c.loginWith(ctx, c.base, mount, "login", map[string]any{"role": k.Role, "jwt": jwt})
		}
		return nil

	case a.JWT != nil:
		j := a.JWT
		mount, err := authMount(store, "jwt.path", j.Path, "jwt")
		if err != nil {
			return err
		}
		var sa *configv1alpha1.ServiceAccountSelector
		seconds := int64(serviceAccountTokenSeconds)
		// As in External Secrets Operator, secretRef wins when both are
		// set, and the requested token's audiences are serviceAccountRef's
		// followed by the method's own ("vault" when it names none).
		if t := j.KubernetesServiceAccountToken; t != nil && j.SecretRef == nil {
			sel := t.ServiceAccountRef
			extra := t.Audiences
			if len(extra) == 0 {
				extra = []string{defaultAudience}
			}
			sel.Audiences = append(slices.Clone(sel.Audiences), extra...)
			sa = &sel
			if t.ExpirationSeconds != nil {
				seconds = *t.ExpirationSeconds
			}
		}
		if sa == nil && j.SecretRef == nil {
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.jwt needs kubernetesServiceAccountToken or secretRef: the JWT to log in with comes from one of them", store)
		}
		c.identity = fmt.Sprintf("role %q of the jwt auth method at auth/%s", j.Role, mount)
		c.login = func(ctx context.Context) (*vaultapi.SecretAuth, error) {
			jwt, err := jwtFrom(ctx, creds, sa, j.SecretRef, seconds)
			if err != nil {
				return nil, err
			}
			body := map[string]any{"jwt": jwt}
			if j.Role != "" {
				body["role"] = j.Role
			}
			return c.loginWith(ctx, c.base, mount, "login", body)
		}
		return nil

	case a.AppRole != nil:
		r := a.AppRole
		mount, err := authMount(store, "appRole.path", r.Path, "approle")
		if err != nil {
			return err
		}
		if (r.RoleID == "") == (r.RoleRef == nil) {
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.appRole needs exactly one of roleId and roleRef", store)
		}
		c.identity = fmt.Sprintf("the AppRole at auth/%s", mount)
		c.login = func(ctx context.Context) (*vaultapi.SecretAuth, error) {
			roleID := r.RoleID
			if r.RoleRef != nil {
				b, err := creds.SecretKey(ctx, *r.RoleRef)
				if err != nil {
					return nil, err
				}
				roleID = strings.TrimSpace(string(b))
			}
			secretID, err := creds.SecretKey(ctx, r.SecretRef)
			if err != nil {
				return nil, err
			}
			return c.loginWith(ctx, c.base, mount, "login", map[string]any{"role_id": roleID, "secret_id": strings.TrimSpace(string(secretID))})
		}
		return nil

	case a.Cert != nil:
		ca := a.Cert
		mount, err := authMount(store, "cert.path", ca.Path, "cert")
		if err != nil {
			return err
		}
		loginAPI := c.base
		switch {
		case ca.ClientCert != nil && ca.SecretRef != nil:
			// The login presents this certificate; later requests present
			// spec.tls's, if any, like every other request.
			cert, err := keyPair(ctx, store, creds, *ca.ClientCert, *ca.SecretRef, "spec.provider.vault.auth.cert")
			if err != nil {
				return err
			}
			loginTLS := tlsConfig.Clone()
			loginTLS.Certificates = []tls.Certificate{cert}
			hc := newHTTPClient(loginTLS, env)
			c.http = append(c.http, hc)
			if loginAPI, err = newAPIClient(u, spec, hc); err != nil {
				return providers.Wrap(providers.Invalid, err, "%s: configuring the Vault client for cert auth", store)
			}
		case ca.ClientCert != nil || ca.SecretRef != nil:
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.cert needs both clientCert and secretRef, or neither to use spec.provider.vault.tls", store)
		case spec.TLS == nil:
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.cert needs a client certificate: set auth.cert.clientCert and auth.cert.secretRef, or spec.provider.vault.tls", store)
		}
		c.identity = fmt.Sprintf("the certificate role %q of the cert auth method at auth/%s", ca.Name, mount)
		c.login = func(ctx context.Context) (*vaultapi.SecretAuth, error) {
			body := map[string]any{}
			if ca.Name != "" {
				body["name"] = ca.Name
			}
			return c.loginWith(ctx, loginAPI, mount, "login", body)
		}
		return nil

	case a.UserPass != nil:
		up := a.UserPass
		mount, err := authMount(store, "userPass.path", up.Path, "userpass")
		if err != nil {
			return err
		}
		// The username is a segment of the login path: anything but a
		// name Vault's userpass method accepts could reach another path.
		username := strings.TrimSpace(up.Username)
		if !userPassName.MatchString(username) {
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.userPass.username %q is not a userpass user name: use letters, digits and \"_\", with \".\", \"@\" and \"-\" inside", store, username)
		}
		c.identity = fmt.Sprintf("user %q of the userpass auth method at auth/%s", username, mount)
		c.login = func(ctx context.Context) (*vaultapi.SecretAuth, error) {
			// The password is used as written, as External Secrets
			// Operator does: spaces may be part of it.
			password, err := creds.SecretKey(ctx, up.SecretRef)
			if err != nil {
				return nil, err
			}
			if len(password) == 0 {
				return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.userPass.secretRef: Secret %s key %q is empty", store, up.SecretRef.Name, up.SecretRef.Key)
			}
			return c.loginWith(ctx, c.base, mount, "login/"+username, map[string]any{"password": string(password)})
		}
		return nil

	case a.Ldap != nil:
		l := a.Ldap
		mount, err := authMount(store, "ldap.path", l.Path, "ldap")
		if err != nil {
			return err
		}
		// The username is a segment of the login path: it may not reach
		// another path ("/", "." and ".."), and the Vault library escapes
		// the rest. Surrounding spaces are dropped, as ESO does.
		username := strings.TrimSpace(l.Username)
		if !ldapName(username) {
			return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.ldap.username is not an LDAP user name Veil can log in as: it must be 1 to 256 bytes without \"/\" or control characters, and not \".\" or \"..\"", store)
		}
		c.identity = fmt.Sprintf("user %q of the ldap auth method at auth/%s", username, mount)
		c.login = func(ctx context.Context) (*vaultapi.SecretAuth, error) {
			password, err := creds.SecretKey(ctx, l.SecretRef)
			if err != nil {
				return nil, err
			}
			if len(password) == 0 {
				return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.ldap.secretRef: Secret %s key %q is empty", store, l.SecretRef.Name, l.SecretRef.Key)
			}
			return c.loginWith(ctx, c.base, mount, "login/"+username, map[string]any{"password": string(password)})
		}
		return nil

	case a.Iam != nil:
		return c.setUpIam(store, a.Iam, creds, env)
	}
	return providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth names no auth method; set one of tokenSecretRef, appRole, kubernetes, jwt, cert, userPass, ldap, iam", store)
}

// authMount is the mount path of an auth method, def when unset.
func authMount(store *providers.Store, field, path, def string) (string, error) {
	if strings.Trim(path, "/") == "" {
		return def, nil
	}
	m, err := cleanPath(path)
	if err != nil {
		return "", providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.%s: %s", store, field, err)
	}
	return m, nil
}

// jwtFrom requests a ServiceAccount token, or reads a JWT from a Secret.
func jwtFrom(ctx context.Context, creds providers.Credentials, sa *configv1alpha1.ServiceAccountSelector, secret *configv1alpha1.SecretKeySelector, seconds int64) (string, error) {
	if sa != nil {
		sel := *sa
		if len(sel.Audiences) == 0 {
			sel.Audiences = []string{defaultAudience}
		}
		return creds.ServiceAccountToken(ctx, sel, seconds)
	}
	b, err := creds.SecretKey(ctx, *secret)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// userPassName is what Vault's userpass method accepts as a user name.
var userPassName = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_.@-]{0,254}[A-Za-z0-9_])?$`)

// ldapName is what Veil accepts as an LDAP user name in a login path.
func ldapName(s string) bool {
	if s == "" || len(s) > 256 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r == '/' || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// loginWith posts a login request to auth/<mount>/<login>: login is
// "login", or "login/<username>" for userpass. The body carries
// credentials: it goes nowhere but the request.
func (c *client) loginWith(ctx context.Context, api *vaultapi.Client, mount, login string, body map[string]any) (auth *vaultapi.SecretAuth, err error) {
	path := "auth/" + mount + "/" + login
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	defer func(start time.Time) { metrics.ObserveProviderCall(providerName, "login", start, err) }(time.Now())

	sec, verr := c.inAuthNamespace(api).Logical().WriteWithContext(ctx, path, body)
	if verr != nil {
		switch statusOf(verr) {
		case 400, 401, 403:
			fix := "that its role exists and accepts the credentials the store names"
			if login != "login" {
				fix = "that the user exists and that the store's secretRef holds its password"
			}
			return nil, providers.Wrap(providers.Forbidden, sanitize(verr), "%s: Vault refused to log in as %s; check that the auth method is enabled at auth/%s, %s", c.store, c.identity, mount, fix)
		}
		return nil, c.classify(verr, target{action: "log in at", what: path, path: path, capability: "update"})
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return nil, providers.Errorf(providers.Unavailable, "%s: Vault answered the login at %s without a token; check that an auth method is enabled there", c.store, path)
	}
	return sec.Auth, nil
}

// current returns the token to use now, renewing or replacing it first
// when it is due.
func (c *client) current(ctx context.Context) (*token, error) {
	c.mu.Lock()
	t, closed := c.tok, c.closed
	c.mu.Unlock()
	if closed {
		return nil, errClosed(c.store)
	}
	if t.owned && !t.refreshAt.IsZero() && !c.clock.Now().Before(t.refreshAt) {
		return c.refresh(ctx, t, true)
	}
	return t, nil
}

// refresh replaces the token stale, or logs in when stale is nil. When
// due, stale is only due for replacement and may be renewed; otherwise
// Vault refused it. Concurrent callers wait for one refresh and share its
// token. A replaced token is left to expire rather than revoked, because
// requests in flight may still hold it.
func (c *client) refresh(ctx context.Context, stale *token, due bool) (*token, error) {
	c.refreshing.Lock()
	defer c.refreshing.Unlock()
	c.mu.Lock()
	t, closed := c.tok, c.closed
	c.mu.Unlock()
	if closed {
		return nil, errClosed(c.store)
	}
	if t != stale {
		return t, nil // another request refreshed it meanwhile
	}
	if due && stale.renewable {
		if next := c.renew(ctx, stale); next != nil {
			return c.install(next), nil
		}
	}
	auth, err := c.login(ctx)
	if err != nil {
		if now := c.clock.Now(); due && now.Before(stale.expires) {
			// The token still works for a while: keep using it, and try
			// again later rather than at every request.
			klog.ErrorS(err, "Replacing a Vault token failed; using it until it expires", "store", c.store, "expires", stale.expires)
			kept := *stale
			kept.refreshAt = now.Add(min(refreshRetry, stale.expires.Sub(now)/2))
			return c.install(&kept), nil
		}
		return nil, err
	}
	ttl := time.Duration(auth.LeaseDuration) * time.Second
	return c.install(c.newToken(withToken(c.base, auth.ClientToken), withToken(c.inAuthNamespace(c.base), auth.ClientToken), ttl, auth.Renewable, ttl)), nil
}

func (c *client) install(t *token) *token {
	c.mu.Lock()
	c.tok = t
	c.mu.Unlock()
	return t
}

// renew extends t, returning nil when a fresh login is due instead: the
// renewal failed, or Vault granted much less than at login because the
// token nears its max TTL.
func (c *client) renew(ctx context.Context, t *token) *token {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	start := time.Now()
	sec, err := t.self.Auth().Token().RenewSelfWithContext(ctx, 0)
	err = c.classify(err, target{action: "renew", what: "its token", path: "auth/token/renew-self", capability: "update"})
	metrics.ObserveProviderCall(providerName, "token-renew", start, err)
	if err != nil || sec == nil || sec.Auth == nil {
		return nil
	}
	ttl := time.Duration(sec.Auth.LeaseDuration) * time.Second
	if ttl < t.loginTTL/2 {
		return nil
	}
	return c.newToken(t.api, t.self, ttl, sec.Auth.Renewable, t.loginTTL)
}

// Close revokes the token Veil logged in for; a token the store gave is
// not Veil's to revoke.
func (c *client) Close(ctx context.Context) (err error) {
	c.refreshing.Lock()
	defer c.refreshing.Unlock()
	c.mu.Lock()
	t, closed := c.tok, c.closed
	c.closed = true
	c.mu.Unlock()
	defer func() {
		for _, hc := range c.http {
			hc.CloseIdleConnections()
		}
	}()
	if closed || t == nil || !t.owned {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	start := time.Now()
	err = c.classify(t.self.Auth().Token().RevokeSelfWithContext(ctx, ""), target{action: "revoke", what: "its token", path: "auth/token/revoke-self", capability: "update"})
	metrics.ObserveProviderCall(providerName, "token-revoke", start, err)
	return err
}
