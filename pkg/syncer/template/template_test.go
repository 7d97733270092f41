package template

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not really a certificate")}))

	values := map[string][]byte{
		"user":     []byte("app"),
		"password": []byte("s3cret"),
		"json":     []byte(`{"host":"db.internal","port":5432}`),
		"b64":      []byte(base64.StdEncoding.EncodeToString([]byte("decoded"))),
		"padded":   []byte("  spaced \n"),
		"tls.pem":  []byte(certPEM + keyPEM),
	}
	tests := []struct {
		name, tmpl, want string
	}{
		{"plain", "{{ .user }}:{{ .password }}", "app:s3cret"},
		{"upper lower", "{{ .user | upper }}{{ lower \"ABC\" }}", "APPabc"},
		{"trim", "[{{ .padded | trim }}]", "[spaced]"},
		{"b64enc", "{{ .password | b64enc }}", base64.StdEncoding.EncodeToString([]byte("s3cret"))},
		{"b64dec", "{{ .b64 | b64dec }}", "decoded"},
		{"fromJson", "{{ (fromJson .json).host }}", "db.internal"},
		{"toJson", `{{ toJson (fromJson .json) }}`, `{"host":"db.internal","port":5432}`},
		{"index for keys with dots", `{{ index . "tls.pem" | filterPEM "CERTIFICATE" }}`, certPEM},
		{"filterPEM key", `{{ index . "tls.pem" | filterPEM "EC PRIVATE KEY" }}`, keyPEM},
		{"url from parts", `postgres://{{ .user }}:{{ .password }}@{{ (fromJson .json).host }}/app`, "postgres://app:s3cret@db.internal/app"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Render(map[string]string{"k": tc.tmpl}, values)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(out["k"]); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRenderHasNoAccessOutsideItsValues(t *testing.T) {
	for _, name := range []string{"env", "expandenv", "readFile", "getHostByName", "exec", "include", "required"} {
		_, err := Render(map[string]string{"k": "{{ " + name + ` "x" }}`}, nil)
		var te *Error
		if !errors.As(err, &te) || !strings.Contains(te.Msg, "not defined") {
			t.Errorf("%s: got %v, want a parse error saying the function is not defined", name, err)
		}
	}
}

// TestRenderErrorsNeverQuoteAValue makes templates fail in every way we know
// text/template or our functions could quote what they failed on.
func TestRenderErrorsNeverQuoteAValue(t *testing.T) {
	const canary = "canary-Value-4711"
	values := map[string][]byte{"v": []byte(canary), "j": []byte(`{"a":"` + canary + `"}`)}
	tests := []struct {
		name, tmpl, wantIn string
	}{
		{"range over a string", "{{ range .v }}x{{ end }}", "line:column 1:9"},
		{"range over a string result", "{{ range (upper .v) }}x{{ end }}", "wrong kind"},
		{"compare with a map", "{{ eq (fromJson .j) .v }}", "evaluation failed"},
		{"invalid JSON", "{{ fromJson .v }}", "fromJson: the input is not valid JSON"},
		{"invalid base64", "{{ b64dec .v }}", "b64dec: the input is not valid base64"},
		{"no PEM", `{{ filterPEM "CERTIFICATE" .v }}`, `no "CERTIFICATE" PEM block`},
		{"missing key", "{{ .nope }}", `map has no entry for key "nope"`},
		{"field of a string", "{{ .v.x }}", "evaluation failed"},
		{"index a string with a string", `{{ index .v "a" }}`, "evaluation failed"},
		{"call a value", "{{ call .v }}", "evaluation failed"},
		{"too few args", "{{ filterPEM .v }}", "wrong number of args for filterPEM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(map[string]string{"key": tc.tmpl}, values)
			var te *Error
			if !errors.As(err, &te) || te.Key != "key" {
				t.Fatalf("got %v, want a template error for key", err)
			}
			msg := err.Error()
			for _, form := range []string{canary, strings.ToUpper(canary), base64.StdEncoding.EncodeToString([]byte(canary))} {
				if strings.Contains(msg, form) {
					t.Fatalf("error quotes the value: %s", msg)
				}
			}
			if !strings.Contains(msg, tc.wantIn) {
				t.Errorf("error %q does not say %q", msg, tc.wantIn)
			}
		})
	}
}

func TestRenderParseError(t *testing.T) {
	_, err := Render(map[string]string{"a": "ok", "b": "{{ .x "}, nil)
	var te *Error
	if !errors.As(err, &te) || te.Key != "b" {
		t.Fatalf("got %v, want a parse error for key b", err)
	}
}
