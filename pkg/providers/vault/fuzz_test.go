package vault

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// FuzzKVResponse feeds Vault KV v1 and v2 read and metadata responses, as
// Vault's client parses them, to what Veil makes of them: no panic, a value
// that is a JSON object of exactly the fields Vault returned, NotFound for
// a v2 version without data, and metadata whose numbers are sane.
func FuzzKVResponse(f *testing.F) {
	f.Add([]byte(`{"data":{"password":"p","n":123456789012345678}}`), false)
	f.Add([]byte(`{"data":{"data":{"password":"p"},"metadata":{"version":3}}}`), true)
	f.Add([]byte(`{"data":{"data":null,"metadata":{"version":2,"deletion_time":"2030-01-01T00:00:00Z"}}}`), true)
	f.Add([]byte(`{"data":{"current_version":2,"custom_metadata":{"managed-by":"veil","x":1},"versions":{"2":{"destroyed":true}}}}`), true)
	f.Add([]byte(`{"data":{"current_version":"-7","versions":[]}}`), true)
	f.Add([]byte(`{"warnings":["w"],"data":{"data":{"a":{"nested":[1,2.5,"x",null,true]}}}}`), true)
	// A number no float64 holds: JSON allows it, and Veil passes numbers on
	// as written (pkg/resolve reads values as raw JSON).
	f.Add([]byte(`{"data":{"n":1E7000}}`), false)
	f.Fuzz(func(t *testing.T, body []byte, v2 bool) {
		sec, err := vaultapi.ParseSecret(bytes.NewReader(body))
		if err != nil || sec == nil {
			return
		}
		c := &client{version: configv1alpha1.VaultKVv1, store: "SecretStore fuzz/vault", mount: "secret"}
		if v2 {
			c.version = configv1alpha1.VaultKVv2
		}
		fields, _, err := c.fieldsOf(sec, target{what: `key "k"`})
		switch {
		case err != nil:
			if !v2 || providers.ReasonOf(err) != providers.NotFound {
				t.Fatalf("fieldsOf: %v", err)
			}
		default:
			b, err := json.Marshal(fields)
			if err != nil {
				return // Get answers this as Unavailable; nothing to check
			}
			// Numbers as written, as pkg/resolve reads them: a float64
			// would refuse a valid 1E7000.
			var back map[string]any
			d := json.NewDecoder(bytes.NewReader(b))
			d.UseNumber()
			if err := d.Decode(&back); err != nil || len(back) != len(fields) {
				t.Fatalf("the value %s is not a JSON object of the %d fields (%v)", b, len(fields), err)
			}
		}
		m := parseMetadata(sec.Data)
		if m.version < 0 || m.current < 0 || (m.current != 0 && m.current != m.version) {
			t.Fatalf("metadata version %d, current %d", m.version, m.current)
		}
	})
}

// FuzzCleanPath: a remote key or mount that passes never has a "." or ".."
// segment (which the Vault library would resolve out of the mount), nor
// slashes at its ends, and cleaning it again changes nothing.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"app/db", "/a/b/", "a/../../sys", "./x", "a//b", "..", "a/.../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := cleanPath(p)
		if err != nil {
			return
		}
		if got == "" || strings.HasPrefix(got, "/") || strings.HasSuffix(got, "/") {
			t.Fatalf("cleanPath(%q) = %q", p, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("cleanPath(%q) = %q keeps a %q segment", p, got, seg)
			}
		}
		if again, err := cleanPath(got); err != nil || again != got {
			t.Fatalf("cleanPath is not idempotent on %q: %q, %v", got, again, err)
		}
	})
}
