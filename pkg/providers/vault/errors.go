package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/veil-dev/veil/pkg/allowlist"
	"github.com/veil-dev/veil/pkg/providers"
)

// target describes a request for error messages: what it does to what, and
// the Vault API path and capability a policy must grant for it.
type target struct {
	action     string // "read", "list", "write", ...
	what       string // `key "app/db"`, `version 3 of key "app/db"`
	path       string
	capability string
}

// vaultError is Vault's answer to a failed request, kept apart from the
// library's error, which quotes the request URL and, for an answer that is
// not JSON, the whole body.
type vaultError struct {
	status int
	errors []string
}

func (e *vaultError) Error() string {
	msg := fmt.Sprintf("Vault answered %d %s", e.status, http.StatusText(e.status))
	if len(e.errors) > 0 {
		msg += ": " + strings.Join(e.errors, "; ")
	}
	return msg
}

// sanitize turns the library's ResponseError into a vaultError. Vault's
// own error strings name paths and roles; an answer that is not Vault's
// JSON (a proxy's page, say) is dropped, since it could hold anything.
func sanitize(err error) error {
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) {
		return err
	}
	ve := &vaultError{status: re.StatusCode}
	if !re.RawError {
		for i, s := range re.Errors {
			if i == 3 {
				break
			}
			if len(s) > 200 {
				s = s[:200] + "..."
			}
			ve.errors = append(ve.errors, strings.TrimSpace(s))
		}
	}
	return ve
}

func statusOf(err error) int {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	var ve *vaultError
	if errors.As(err, &ve) {
		return ve.status
	}
	return 0
}

func errClosed(store string) error {
	return providers.Errorf(providers.Unavailable, "%s: its Vault client was closed because the store changed or was deleted; retry", store)
}

// classify turns the failure of one request into a provider error that
// says what to fix. It returns nil for nil.
func (c *client) classify(err error, t target) error {
	if err == nil {
		return nil
	}
	var pe *providers.Error
	if errors.As(err, &pe) {
		return pe
	}
	if status := statusOf(err); status != 0 {
		cause := sanitize(err)
		switch {
		case status == http.StatusNotFound:
			return providers.Wrap(providers.NotFound, cause, "%s does not exist in %s (Vault KV %s mount %q)", t.what, c.store, c.version, c.mount)
		case status == http.StatusForbidden || status == http.StatusUnauthorized:
			return providers.Wrap(providers.Forbidden, cause, "%s: Vault denied the request to %s %s: the store's Vault identity (%s) lacks access; its policies must grant %q on %q",
				c.store, t.action, t.what, c.identity, t.capability, t.path)
		case status == http.StatusBadRequest && strings.Contains(cause.Error(), "check-and-set parameter required"):
			return providers.Wrap(providers.Invalid, cause, "%s: Vault refused the request to %s %s: the KV mount %q requires check-and-set; set spec.provider.vault.checkAndSet.required to true", c.store, t.action, t.what, c.mount)
		case status == http.StatusBadRequest && strings.Contains(cause.Error(), "check-and-set"):
			return providers.Wrap(providers.Conflict, cause, "%s: %s changed in Vault while Veil wrote it (check-and-set); retry", c.store, t.what)
		case status == http.StatusTooManyRequests:
			return providers.Wrap(providers.Unavailable, cause, "%s: Vault at %s is rate limiting Veil; retry later", c.store, c.server)
		case status < 500:
			return providers.Wrap(providers.Invalid, cause, "%s: Vault refused the request to %s %s", c.store, t.action, t.what)
		}
		return providers.Wrap(providers.Unavailable, cause, "%s: Vault at %s failed to %s %s; check Vault's health and retry", c.store, c.server, t.action, t.what)
	}

	var notAllowed *allowlist.NotAllowedError
	if errors.As(err, &notAllowed) {
		return providers.Wrap(providers.Forbidden, err, "%s: Veil may not connect to Vault at %s", c.store, c.server)
	}
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		verification     *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &hostname):
		return providers.Wrap(providers.Unavailable, err, "%s: the TLS certificate of Vault at %s is not valid for that host name; fix spec.provider.vault.server or Vault's certificate", c.store, c.server)
	case errors.As(err, &unknownAuthority), errors.As(err, &invalid), errors.As(err, &verification):
		return providers.Wrap(providers.Unavailable, err, "%s: Veil cannot verify the TLS certificate of Vault at %s; set spec.provider.vault.caBundle or caProvider to the CA that signed it (without them the system roots are used)", c.store, c.server)
	case errors.Is(err, context.DeadlineExceeded):
		return providers.Wrap(providers.Unavailable, err, "%s: Vault at %s did not answer in time to %s %s", c.store, c.server, t.action, t.what)
	case errors.Is(err, context.Canceled):
		return providers.Wrap(providers.Unavailable, err, "%s: the request to %s %s was cancelled", c.store, t.action, t.what)
	}
	return providers.Wrap(providers.Unavailable, err, "%s: cannot reach Vault at %s to %s %s; check that Vault is running and that veil-apiserver can connect to it", c.store, c.server, t.action, t.what)
}
