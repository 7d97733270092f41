package convert

import (
	"strings"
	"testing"
)

// TestTemplateFunctions: a template that only uses functions Veil offers
// (Sprig's allowlist included) is taken as it is; one calling a function
// Veil leaves out is named, field by field, as a behaviour difference, in
// ExternalSecrets, their rewrite transforms and PushSecrets.
func TestTemplateFunctions(t *testing.T) {
	c := newConverter(t)
	_, diffs := convertOne(t, c, `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: ok, namespace: example}
spec:
  secretStoreRef: {name: s}
  target:
    template:
      engineVersion: v2
      data:
        config: '{{ dict "user" .user | toYaml | nindent 2 }}{{ .pass | default "x" | quote }}{{ splitList "," .hosts | join ";" }}'
        # ESO's own functions
        tls.crt: '{{ .p12 | pkcs12cert }}{{ .p12 | pkcs12keyPass "p" }}{{ fullPemToPkcs12 .crt .key }}{{ pemTruststoreToPKCS12Pass .crt "p" }}'
        jwk: '{{ .jwk | jwkPublicKeyPem }}{{ .jwk | jwkPrivateKeyPem }}{{ .crt | certSANs | join "," }}'
        dec: '{{ rsaDecrypt "RSA-OAEP" "SHA1" .ct .key }}{{ .key | rsaDecrypt "RSA-OAEP" "SHA256" .ct }}{{ .hex | hexdec }}'
  data:
  - secretKey: user
    remoteRef: {key: k}
`)
	if len(diffs) != 0 {
		t.Errorf("want it taken as it is, got %v", diffs)
	}

	_, diffs = convertOne(t, c, `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: missing, namespace: example}
spec:
  secretStoreRef: {name: s}
  target:
    template:
      data:
        ip: '{{ getHostByName .host }}'
        home: '{{ env "HOME" }}'
      templateFrom:
      - literal: '{{ .x | bcrypt }}'
  dataFrom:
  - extract: {key: k}
    rewrite: [{transform: {template: '{{ .value | uuidv4 }}'}}]
`)
	for _, want := range []struct{ field, fn string }{
		{"spec.target.template.data.ip", "getHostByName"},
		{"spec.target.template.data.home", "env"},
		{"spec.target.template.templateFrom[0].literal", "bcrypt"},
		{"spec.dataFrom[0].rewrite[0].transform.template", "uuidv4"},
	} {
		if !has(diffs, Behaviour, want.field, "the template calls "+want.fn+",") {
			t.Errorf("no behaviour difference at %s naming %s in %v", want.field, want.fn, diffs)
		}
	}

	_, diffs = convertOne(t, c, `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: push, namespace: example}
spec:
  secretStoreRefs: [{name: s}]
  selector: {secret: {name: src}}
  template:
    data: {k: '{{ .a | genPrivateKey }}'}
  data:
  - match: {secretKey: k, remoteRef: {remoteKey: r}}
`)
	if !has(diffs, Behaviour, "spec.template.data.k", "genPrivateKey") {
		t.Errorf("PushSecret: %v", diffs)
	}
	for _, d := range diffs {
		if strings.Contains(d.Message, "{{") {
			t.Errorf("a message quotes the template: %s", d.Message)
		}
	}
}
