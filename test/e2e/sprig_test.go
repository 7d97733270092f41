package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gopkcs12 "software.sslmate.com/src/go-pkcs12"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestESOSprigTemplatesVault: an ESO-style template using Sprig functions
// renders values read from Vault into the Secret veil-syncer materialises;
// a function ESO removed, or one asked to build too much, is a
// TemplateError that names the problem and never the value.
func TestESOSprigTemplatesVault(t *testing.T) {
	startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	canary := unique("veil-canary-sprig-")
	if _, err := v.PutKV(ctx, "secret", "sprig/db", map[string]any{
		"user": "app", "password": canary, "hosts": "db-a,db-b", "config": `{"port":5432}`,
	}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "vault", nil)
	data := []configv1alpha1.ExternalSecretData{
		dataRef("user", "sprig/db", "user"), dataRef("password", "sprig/db", "password"),
		dataRef("hosts", "sprig/db", "hosts"), dataRef("config", "sprig/db", "config"),
	}
	withTemplate := func(name string, tmpl map[string]string) {
		t.Helper()
		vaultExternalSecret(t, ns, name, "vault", configv1alpha1.ExternalSecretSpec{Data: data, Target: &configv1alpha1.ExternalSecretTarget{
			Template: &configv1alpha1.ExternalSecretTemplate{EngineVersion: "v2", Data: tmpl},
		}})
	}

	withTemplate("sprig", map[string]string{
		"primary":     `{{ splitList "," .hosts | first | trimPrefix "db-" | upper }}`,
		"hosts":       `{{ join ";" (splitList "," .hosts) }}`,
		"config.yaml": `{{ dict "user" .user "port" ((fromJson .config).port | int) | toYaml }}`,
		"quoted":      `{{ .user | quote }}`,
		"fallback":    `{{ "" | default "none" }}`,
		"digest":      `{{ .password | sha256sum }}`,
		"indented":    `config:{{ .user | nindent 2 }}`,
		"password":    `{{ .password | replace "-" "_" }}`,
		"token":       `{{ len (randAlphaNum 32) }}`,
	})
	waitSecret(t, ns, "sprig", hasData(map[string]string{
		"primary":     "A",
		"hosts":       "db-a;db-b",
		"config.yaml": "port: 5432\nuser: app",
		"quoted":      `"app"`,
		"fallback":    "none",
		"digest":      fmt.Sprintf("%x", sha256.Sum256([]byte(canary))),
		"indented":    "config:\n  app",
		"password":    strings.ReplaceAll(canary, "-", "_"),
		"token":       "32",
	}))
	waitReady(t, ns, "sprig", configv1alpha1.ReasonSynced)

	for name, tc := range map[string]struct{ tmpl, want string }{
		"env":      {`{{ env "HOME" }}`, `function "env" not defined`},
		"bcrypt":   {`{{ .password | bcrypt }}`, `function "bcrypt" not defined`},
		"too-much": {`{{ repeat 100000000 .password }}`, "repeat: the result would be larger than 16 MiB"},
		"budget":   {`{{ range 100000 }}{{ $x := repeat 1000 $.password }}{{ end }}`, "over Veil's limits"},
	} {
		withTemplate(name, map[string]string{"k": tc.tmpl})
		es := waitReady(t, ns, name, configv1alpha1.ReasonTemplateError)
		msg := apimeta.FindStatusCondition(es.Status.Conditions, "Ready").Message
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, canary) {
			t.Errorf("%s: Ready message %q, want it to say %q and not carry the value", name, msg, tc.want)
		}
	}
}

// TestESOHelperFunctionsVault: ESO's own template functions, as its
// documentation uses them, on values read from Vault through the real
// syncer: a PFX (base64 in Vault, read with decodingStrategy Base64 and
// with b64dec), a JWK, a certificate chain, an RSA-OAEP ciphertext, and a
// keystore written back with fullPemToPkcs12Pass, which stays the same
// from one refresh to the next. A value never appears in the status or an
// Event, even when a function fails on it.
func TestESOHelperFunctionsVault(t *testing.T) {
	startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	canary := unique("veil-canary-helpers-")
	pfxPass := unique("pfx-pass-")

	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	interKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	mkCert := func(tmpl, parent *x509.Certificate, pub any, signer any) *x509.Certificate {
		t.Helper()
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	ca := func(cn string, serial int64) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	}
	root := mkCert(ca("root", 1), ca("root", 1), &rootKey.PublicKey, rootKey)
	inter := mkCert(ca("inter", 2), root, &interKey.PublicKey, rootKey)
	leaf := mkCert(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "app"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames: []string{"app.example.com", "www.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}}, inter, &leafKey.PublicKey, interKey)
	pemOf := func(typ string, der []byte) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
	}
	leafPKCS8, _ := x509.MarshalPKCS8PrivateKey(leafKey)
	chainPEM := pemOf("CERTIFICATE", leaf.Raw) + pemOf("CERTIFICATE", inter.Raw) + pemOf("CERTIFICATE", root.Raw)
	// The archive holds the chain out of order; pkcs12cert orders it.
	pfx, err := gopkcs12.Modern.Encode(leafKey, leaf, []*x509.Certificate{root, inter}, pfxPass)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaPKCS8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	ct, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, &rsaKey.PublicKey, []byte(canary), nil)
	jwk, _ := jose.JSONWebKey{Key: rsaKey, KeyID: "k1"}.MarshalJSON()
	rsaPub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)

	if _, err := v.PutKV(ctx, "secret", "helpers/tls", map[string]any{
		"pfx": base64.StdEncoding.EncodeToString(pfx), "pfxpass": pfxPass, "chain": chainPEM, "leafkey": pemOf("PRIVATE KEY", leafPKCS8),
		"jwk": string(jwk), "ct": base64.StdEncoding.EncodeToString(ct), "rsakey": pemOf("PRIVATE KEY", rsaPKCS8), "canary": canary,
	}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "vault", nil)
	pfxRaw := dataRef("pfx", "helpers/tls", "pfx")
	pfxRaw.RemoteRef.DecodingStrategy = configv1alpha1.DecodeBase64
	data := []configv1alpha1.ExternalSecretData{
		pfxRaw, dataRef("pfxb64", "helpers/tls", "pfx"), dataRef("pfxpass", "helpers/tls", "pfxpass"),
		dataRef("chain", "helpers/tls", "chain"), dataRef("leafkey", "helpers/tls", "leafkey"), dataRef("jwk", "helpers/tls", "jwk"),
		dataRef("ct", "helpers/tls", "ct"), dataRef("rsakey", "helpers/tls", "rsakey"), dataRef("canary", "helpers/tls", "canary"),
	}
	withTemplate := func(name string, tmpl map[string]string) {
		t.Helper()
		vaultExternalSecret(t, ns, name, "vault", configv1alpha1.ExternalSecretSpec{Data: data, Target: &configv1alpha1.ExternalSecretTarget{
			Template: &configv1alpha1.ExternalSecretTemplate{EngineVersion: "v2", Data: tmpl},
		}})
	}
	withTemplate("helpers", map[string]string{
		"tls.crt":      `{{ .pfx | pkcs12certPass .pfxpass }}`,
		"tls.key":      `{{ .pfxb64 | b64dec | pkcs12keyPass .pfxpass }}`,
		"jwk_pub":      `{{ .jwk | jwkPublicKeyPem }}`,
		"jwk_priv":     `{{ .jwk | jwkPrivateKeyPem }}`,
		"sans":         `{{ .chain | filterPEM "CERTIFICATE" | filterCertChain "leaf" | certSANs | join "," }}`,
		"password":     `{{ rsaDecrypt "RSA-OAEP" "SHA1" (.ct | b64dec) .rsakey }}`,
		"password2":    `{{ .rsakey | rsaDecrypt "RSA-OAEP" "SHA1" (b64dec .ct) }}`,
		"keystore.p12": `{{ fullPemToPkcs12Pass .chain .leafkey "changeit" }}`,
	})
	s := waitSecret(t, ns, "helpers", func(s *corev1.Secret) error {
		if len(s.Data) != 8 {
			return fmt.Errorf("Secret %s has %d keys, want 8", s.Name, len(s.Data))
		}
		return nil
	})
	for k, want := range map[string]string{
		"tls.crt": chainPEM, "tls.key": pemOf("PRIVATE KEY", leafPKCS8), "jwk_pub": pemOf("PUBLIC KEY", rsaPub), "jwk_priv": pemOf("PRIVATE KEY", rsaPKCS8),
		"sans": "app.example.com,www.example.com,10.0.0.1", "password": canary, "password2": canary,
	} {
		if string(s.Data[k]) != want {
			t.Errorf("Secret key %s is not what the template should render", k) // not quoted: it may be a value
		}
	}
	ks, err := base64.StdEncoding.DecodeString(string(s.Data["keystore.p12"]))
	if err != nil {
		t.Fatal("keystore.p12 is not base64")
	}
	if k, c, cas, err := gopkcs12.DecodeChain(ks, "changeit"); err != nil || !leafKey.Equal(k) || !c.Equal(leaf) || len(cas) != 2 {
		t.Errorf("keystore.p12 does not hold the key and chain: %v", err)
	}
	es := waitReady(t, ns, "helpers", configv1alpha1.ReasonSynced)

	// Refreshes (every second here) render the keystore again: its salts
	// come from the inputs, so the data HMAC, the Secret and its
	// resourceVersion stay as they were, and no Updated Event is recorded.
	first := es.Status.RefreshTime.Time
	eventually(t, func() error {
		cur, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctx, "helpers", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.Status.RefreshTime == nil || cur.Status.RefreshTime.Time.Before(first.Add(2*time.Second)) {
			return fmt.Errorf("not refreshed twice since %s yet", first)
		}
		if cur.Status.DataHMAC != es.Status.DataHMAC {
			t.Fatalf("a refresh with unchanged values changed the data HMAC")
		}
		return nil
	})
	if got := getSecret(t, ns, "helpers"); got.ResourceVersion != s.ResourceVersion {
		t.Errorf("a refresh with unchanged values rewrote the Secret (resourceVersion %s, then %s)", s.ResourceVersion, got.ResourceVersion)
	}
	for _, e := range events(t, ns, "helpers", "Updated") {
		t.Errorf("a refresh with unchanged values recorded %q", e.Message)
	}

	// Failing on values: TemplateError, naming the function, never the
	// value (the wrong password below is a value too).
	for name, tc := range map[string]struct{ tmpl, want string }{
		"wrong-pass": {`{{ .pfx | pkcs12certPass .canary }}`, "pkcs12certPass: the archive is not PKCS#12, or the password is wrong"},
		"not-pfx":    {`{{ .canary | pkcs12key }}`, "pkcs12key: the archive is not PKCS#12"},
		"not-jwk":    {`{{ .canary | jwkPublicKeyPem }}`, "jwkPublicKeyPem: the input is not a JSON Web Key"},
		"not-cert":   {`{{ .canary | certSANs | join "," }}`, "certSANs: the input is not PEM"},
		"not-hex":    {`{{ .canary | hexdec }}`, "hexdec: the input is not valid hexadecimal"},
		"bad-ct":     {`{{ rsaDecrypt "RSA-OAEP" "SHA256" (.ct | b64dec) .rsakey }}`, "rsaDecrypt: the ciphertext does not decrypt"},
	} {
		withTemplate(name, map[string]string{"k": tc.tmpl})
		es := waitReady(t, ns, name, configv1alpha1.ReasonTemplateError)
		msg := apimeta.FindStatusCondition(es.Status.Conditions, "Ready").Message
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%s: Ready message %q, want it to say %q", name, msg, tc.want)
		}
	}
	for _, name := range []string{"helpers", "wrong-pass", "not-pfx", "not-jwk", "not-cert", "not-hex", "bad-ct"} {
		es, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := json.Marshal(es.Status)
		if strings.Contains(string(st), canary) || strings.Contains(string(st), pfxPass) {
			t.Errorf("%s: the status carries a value", name)
		}
	}
	list, err := cluster.KubeClient.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) == 0 {
		t.Error("no Events in the namespace: the check below would be empty")
	}
	for _, e := range list.Items {
		if strings.Contains(e.Message, canary) || strings.Contains(e.Message, pfxPass) {
			t.Errorf("Event %s carries a value", e.Name)
		}
	}
}
