package template

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
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

// TestRenderIsBounded: the templates a hostile author can write fail with
// a message naming the bound, quickly, and without the memory they ask for.
func TestRenderIsBounded(t *testing.T) {
	values := map[string][]byte{"v": []byte(strings.Repeat("x", 1000)), "list": []byte(`[` + strings.Repeat(`1,`, 999) + `1]`)}
	tests := []struct{ name, tmpl, bound string }{
		{"wide printf in a loop", `{{range 100}}{{printf "%01000000d" 0}}{{end}}`, "output is larger than"},
		{"wide printf not printed", `{{range 100}}{{$x := printf "%01000000d" 0}}{{end}}`, "functions produce more than"},
		{"nested empty ranges", `{{range 100000}}{{range 100000}}{{end}}{{end}}`, "steps (loops"},
		{"nested ranges over values", `{{$l := fromJson .list}}{{range $l}}{{range $l}}{{range $l}}{{end}}{{end}}{{end}}`, "steps (loops"},
		{"exponential recursion", `{{define "a"}}{{template "b" .}}{{template "b" .}}{{end}}{{define "b"}}{{template "c" .}}{{template "c" .}}{{end}}{{define "c"}}{{range 1000}}{{end}}{{end}}{{range 1000}}{{template "a" .}}{{end}}`, "steps"},
		{"growing strings", `{{$s := .v}}{{range 30}}{{$s = printf "%s%s" $s $s}}{{end}}{{$s}}`, "functions produce more than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Without the wall-time bound, the bound that holds on any
			// machine stops it...
			_, err := render(map[string]string{"k": tc.tmpl}, values, newBudget(time.Hour))
			var te *Error
			if !errors.As(err, &te) || !strings.Contains(te.Msg, "over Veil's limits") || !strings.Contains(te.Msg, tc.bound) {
				t.Fatalf("err = %v, want the limit %q named", err, tc.bound)
			}
			// ...and with it, one of them does, within the wall-time bound.
			start := time.Now()
			if _, err := Render(map[string]string{"k": tc.tmpl}, values); err == nil || !strings.Contains(err.Error(), "over Veil's limits") {
				t.Fatalf("Render: %v", err)
			}
			if took := time.Since(start); took > MaxDuration+time.Second {
				t.Errorf("took %s: the limits did not stop it", took)
			}
		})
	}
	// The bound is shared by every key of one ExternalSecret.
	many := map[string]string{}
	for i := range 3 {
		many[fmt.Sprint("k", i)] = `{{range 400}}{{printf "%01000d" 0}}{{end}}`
	}
	if _, err := Render(many, values); err == nil || !strings.Contains(err.Error(), "output is larger than") {
		t.Errorf("three keys of 400 KB each: %v, want the output limit", err)
	}
	// Ordinary templates, including loops over values, stay well inside.
	if out, err := Render(map[string]string{"k": `{{range $i, $x := fromJson .list}}{{if $i}},{{end}}{{$x}}{{end}}`}, values); err != nil || len(out["k"]) != 1999 {
		t.Errorf("a loop over 1000 items: %d bytes, %v", len(out["k"]), err)
	}
}

// TestToString: sprig's toString, which ESO's examples pipe values through.
func TestToString(t *testing.T) {
	out, err := Render(map[string]string{"k": `{{ index . "a-b" | toString | upper }}|{{ toString 12 }}|{{ "x" | toString }}`}, map[string][]byte{"a-b": []byte("pika")})
	if err != nil || string(out["k"]) != "PIKA|12|x" {
		t.Errorf("%q %v", out["k"], err)
	}
}
