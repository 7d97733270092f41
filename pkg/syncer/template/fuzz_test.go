package template

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzRender: any template an ExternalSecret author writes renders, or
// fails with an *Error, within the bounds, and no error carries a value.
func FuzzRender(f *testing.F) {
	for _, seed := range []string{
		`{{ .password }}`,
		`{{ range $k, $v := . }}{{ $k }}={{ $v | b64enc }}{{ end }}`,
		`{{ (fromJson .json).host | upper }}`,
		`{{ index . "tls.pem" | filterPEM "CERTIFICATE" }}`,
		`{{ range 10 }}{{ printf "%05d" 1 }}{{ end }}`,
		`{{ define "x" }}{{ template "x" . }}{{ end }}{{ template "x" . }}`,
		`{{ printf "%v" . }}`,
		`{{ .password | b64dec }}`,
		`{{ range .password }}{{ end }}`,
		`{{ if eq .password "x" }}y{{ else }}n{{ end }}`,
		`{{ .password | default "x" | quote | nindent 4 }}`,
		`{{ join "," (splitList "" .password) | replace "" "--" }}`,
		`{{ dict "a" .password "b" (list 1 2) | toYaml | fromYaml | toPrettyJson }}`,
		`{{ $l := list .password }}{{ range 40 }}{{ $l = list $l $l }}{{ end }}{{ $l }}`,
		`{{ regexReplaceAll "(.)" .password "$1$1$1" | repeat 100 | sha256sum }}`,
		`{{ regexFindAll "" (repeat 1000 .password) -1 | len }}`,
		`{{ randAlphaNum 16 | len }}{{ indent 100000 (repeat 1000 "\n") }}`,
		`{{ substr 2 100 .password | trunc 5 | abbrev 4 | title | snakecase }}`,
		`{{ env "HOME" }}{{ genPrivateKey "rsa" }}`,
		`{{ .password | b64dec | pkcs12keyPass "x" }}{{ pkcs12cert .password }}`,
		`{{ pemToPkcs12Pass .password .password "p" | b64dec | pkcs12certPass "p" }}`,
		`{{ fullPemToPkcs12 (index . "tls.pem") .password }}{{ pemTruststoreToPKCS12Pass .password "x" }}`,
		`{{ certSANs (index . "tls.pem") | join "," }}`,
		`{{ jwkPublicKeyPem .json }}{{ jwkPrivateKeyPem .json }}`,
		`{{ .password | rsaDecrypt "RSA-OAEP" "SHA256" (.json | b64dec) }}{{ rsaDecrypt "None" "SHA1" .password "" }}`,
		`{{ .password | sha256sum | hexdec | b64enc }}{{ hexdec .password }}`,
	} {
		f.Add(seed)
	}
	const canary = "fuzz-canary-value-0123456789"
	values := map[string][]byte{"password": []byte(canary), "json": []byte(`{"host":"` + canary + `"}`), "tls.pem": []byte(canary)}
	f.Fuzz(func(t *testing.T, tmpl string) {
		start := time.Now()
		out, err := Render(map[string]string{"k": tmpl}, values)
		if took := time.Since(start); took > MaxDuration+time.Second {
			t.Fatalf("took %s", took)
		}
		if err != nil {
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("not an *Error: %T", err)
			}
			// A parse error may quote the template, which is the author's
			// own text; an evaluation error may not quote a value.
			if strings.Contains(err.Error(), canary) && !strings.Contains(tmpl, canary) {
				t.Fatalf("the error carries a value: %v", err)
			}
			return
		}
		if len(out["k"]) > MaxOutputBytes {
			t.Fatalf("%d bytes of output", len(out["k"]))
		}
	})
}
