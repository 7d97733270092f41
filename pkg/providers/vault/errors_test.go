package vault

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// TestAnswersNotFromVault: what a proxy or a failing server in front of
// Vault answers is mapped by status, and its body, which could hold
// anything, never reaches the error.
func TestAnswersNotFromVault(t *testing.T) {
	const leak = "body-that-must-not-leak"
	for _, tc := range []struct {
		status      int
		contentType string
		body        string
		reason      providers.Reason
		says        string
	}{
		{http.StatusBadGateway, "text/html", "<html>" + leak + "</html>", providers.Unavailable, `failed to read key "app/db"; check Vault's health and retry: Vault answered 502 Bad Gateway`},
		{http.StatusServiceUnavailable, "application/json", `{"errors":["Vault is sealed"]}`, providers.Unavailable, "Vault answered 503 Service Unavailable: Vault is sealed"},
		{http.StatusTooManyRequests, "text/plain", leak, providers.Unavailable, "is rate limiting Veil"},
		{http.StatusForbidden, "text/plain", leak, providers.Forbidden, `its policies must grant "read" on "secret/data/app/db"`},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			requests := 0
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests++
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			f := newFixture(t, secret("vault-token", map[string]string{"token": "hvs.not-a-real-token"}))
			spec := configv1alpha1.VaultProvider{Server: srv.URL, Auth: tokenAuth()}
			spec.CABundle = certPEM(srv)
			c := f.mustClient(spec)
			_, err := c.Get(ctxFor(t), providers.Ref{Key: "app/db"})
			wantError(t, err, tc.reason, tc.says, leak, "hvs.not-a-real-token")
			if requests == 0 {
				t.Error("the server was never asked")
			}
		})
	}
}

func certPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}
