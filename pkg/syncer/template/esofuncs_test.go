package template

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	gopkcs12 "software.sslmate.com/src/go-pkcs12"
)

// testPKI is a root, an intermediate and a leaf with every kind of SAN.
type testPKI struct {
	root, inter, leaf          *x509.Certificate
	rootKey, interKey, leafKey *ecdsa.PrivateKey
	rsaKey                     *rsa.PrivateKey
}

var (
	pkiOnce sync.Once
	pki     testPKI
)

func testCerts(t *testing.T) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		mk := func(tmpl, parent *x509.Certificate, pub, signer any) *x509.Certificate {
			der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
			if err != nil {
				panic(err)
			}
			c, _ := x509.ParseCertificate(der)
			return c
		}
		key := func() *ecdsa.PrivateKey {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			return k
		}
		pki.rootKey, pki.interKey, pki.leafKey = key(), key(), key()
		now := time.Now()
		ca := func(cn string, serial int64) *x509.Certificate {
			return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
				IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		}
		pki.root = mk(ca("root", 1), ca("root", 1), &pki.rootKey.PublicKey, pki.rootKey)
		pki.inter = mk(ca("inter", 2), pki.root, &pki.interKey.PublicKey, pki.rootKey)
		u, _ := url.Parse("spiffe://example.com/app")
		pki.leaf = mk(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "app"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			DNSNames: []string{"app.example.com", "www.example.com"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1"), net.ParseIP("2001:db8::1")},
			EmailAddresses: []string{"ops@example.com"}, URIs: []*url.URL{u}}, pki.inter, &pki.leafKey.PublicKey, pki.interKey)
		var err error
		if pki.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return &pki
}

func certPEM(cs ...*x509.Certificate) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(pemBlock("CERTIFICATE", c.Raw))
	}
	return b.String()
}

func pkcs8PEM(t *testing.T, k any) string {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func render1(t *testing.T, tmpl string, values map[string][]byte) (string, error) {
	t.Helper()
	out, err := Render(map[string]string{"k": tmpl}, values)
	return string(out["k"]), err
}

func mustRender(t *testing.T, tmpl string, values map[string][]byte) string {
	t.Helper()
	out, err := render1(t, tmpl, values)
	if err != nil {
		t.Fatalf("%s: %v", tmpl, err)
	}
	return out
}

// pkcs12key/pkcs12cert read what go-pkcs12's encoders write (modern,
// legacy RC2 and 3DES, no password) and what OpenSSL writes (3.x default
// and -legacy), with the password right and wrong, and order the chain.
func TestPKCS12Read(t *testing.T) {
	p := testCerts(t)
	chain := certPEM(p.leaf, p.inter, p.root)
	// The archive holds the chain out of order: root before intermediate.
	for name, enc := range map[string]*gopkcs12.Encoder{
		"modern": gopkcs12.Modern, "legacyRC2": gopkcs12.LegacyRC2, "legacyDES": gopkcs12.LegacyDES, "modern2023": gopkcs12.Modern2023,
	} {
		t.Run(name, func(t *testing.T) {
			der, err := enc.Encode(p.leafKey, p.leaf, []*x509.Certificate{p.root, p.inter}, "pa55")
			if err != nil {
				t.Fatal(err)
			}
			values := map[string][]byte{"p12": der, "b64": []byte(base64.StdEncoding.EncodeToString(der)), "pass": []byte("pa55")}
			if got := mustRender(t, `{{ .p12 | pkcs12keyPass .pass }}`, values); got != pkcs8PEM(t, p.leafKey) {
				t.Errorf("pkcs12keyPass: got %q", got)
			}
			if got := mustRender(t, `{{ .b64 | b64dec | pkcs12certPass "pa55" }}`, values); got != chain {
				t.Errorf("pkcs12certPass: got\n%s\nwant leaf, intermediate, root", got)
			}
			for _, tmpl := range []string{`{{ .p12 | pkcs12keyPass "wrong" }}`, `{{ .p12 | pkcs12cert }}`, `{{ .p12 | pkcs12key }}`} {
				if _, err := render1(t, tmpl, values); err == nil || !strings.Contains(err.Error(), "the archive is not PKCS#12, or the password is wrong") {
					t.Errorf("%s: %v, want the wrong password's error", tmpl, err)
				}
			}
		})
	}
	t.Run("passwordless", func(t *testing.T) {
		der, err := gopkcs12.Passwordless.Encode(p.leafKey, p.leaf, []*x509.Certificate{p.inter}, "")
		if err != nil {
			t.Fatal(err)
		}
		values := map[string][]byte{"p12": der}
		if got := mustRender(t, `{{ .p12 | pkcs12key }}`, values); got != pkcs8PEM(t, p.leafKey) {
			t.Errorf("pkcs12key: got %q", got)
		}
		if got := mustRender(t, `{{ .p12 | pkcs12cert }}`, values); got != certPEM(p.leaf, p.inter) {
			t.Errorf("pkcs12cert: got %q", got)
		}
		if _, err := render1(t, `{{ .p12 | pkcs12keyPass "x" }}`, values); err == nil {
			t.Error("a password given for an archive without one: no error")
		}
	})
	t.Run("empty password", func(t *testing.T) {
		der, err := gopkcs12.Modern.Encode(p.leafKey, p.leaf, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := mustRender(t, `{{ .p12 | pkcs12key }}`, map[string][]byte{"p12": der}); got != pkcs8PEM(t, p.leafKey) {
			t.Errorf("pkcs12key: got %q", got)
		}
	})
	t.Run("not one chain", func(t *testing.T) {
		// Two unrelated certificates: returned as the archive holds them.
		der, err := gopkcs12.Modern.Encode(p.leafKey, p.leaf, []*x509.Certificate{p.root}, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := mustRender(t, `{{ .p12 | pkcs12cert }}`, map[string][]byte{"p12": der}); got != certPEM(p.leaf, p.root) {
			t.Errorf("pkcs12cert: got %q", got)
		}
	})
	t.Run("trust store", func(t *testing.T) {
		der, err := gopkcs12.Modern.EncodeTrustStore([]*x509.Certificate{p.root, p.inter}, "changeit")
		if err != nil {
			t.Fatal(err)
		}
		values := map[string][]byte{"p12": der}
		if got := mustRender(t, `{{ .p12 | pkcs12certPass "changeit" }}`, values); got != certPEM(p.inter, p.root) {
			t.Errorf("pkcs12certPass: got %q", got)
		}
		if _, err := render1(t, `{{ .p12 | pkcs12keyPass "changeit" }}`, values); err == nil || !strings.Contains(err.Error(), "no private key") {
			t.Errorf("pkcs12keyPass of a trust store: %v", err)
		}
	})
	t.Run("java.p12", func(t *testing.T) {
		der, err := os.ReadFile("testdata/pkcs12/java.p12")
		if err != nil {
			t.Fatal(err)
		}
		crt, err := os.ReadFile("testdata/pkcs12/java.crt")
		if err != nil {
			t.Fatal(err)
		}
		values := map[string][]byte{"p12": der}
		if got := mustRender(t, `{{ .p12 | pkcs12certPass "veil-test" }}`, values); got != string(crt) {
			t.Errorf("pkcs12certPass: got\n%s\nwant\n%s", got, crt)
		}
		// The key is the certificate's.
		kb, _ := pem.Decode([]byte(mustRender(t, `{{ .p12 | pkcs12keyPass "veil-test" }}`, values)))
		cb, _ := pem.Decode(crt)
		c, _ := x509.ParseCertificate(cb.Bytes)
		k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil || kb.Type != "PRIVATE KEY" || !c.PublicKey.(*ecdsa.PublicKey).Equal(k.(crypto.Signer).Public()) {
			t.Errorf("pkcs12keyPass: not the certificate's key as PKCS#8 (%v)", err)
		}
	})
	for _, f := range []string{"openssl3.p12", "openssl-legacy.p12"} {
		t.Run(f, func(t *testing.T) {
			read := func(name string) []byte {
				b, err := os.ReadFile("testdata/pkcs12/" + name)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			values := map[string][]byte{"p12": read(f)}
			kb, _ := pem.Decode(read("leaf.key"))
			if got := mustRender(t, `{{ .p12 | pkcs12keyPass "veil-test" }}`, values); got != pemBlock("PRIVATE KEY", kb.Bytes) {
				t.Errorf("pkcs12keyPass: got %q", got)
			}
			want := string(read("leaf.crt")) + string(read("inter.crt")) + string(read("root.crt"))
			if got := mustRender(t, `{{ .p12 | pkcs12certPass "veil-test" }}`, values); got != want {
				t.Errorf("pkcs12certPass: got\n%s\nwant\n%s", got, want)
			}
			if _, err := render1(t, `{{ .p12 | pkcs12certPass "veil-tesT" }}`, values); err == nil || !strings.Contains(err.Error(), "password is wrong") {
				t.Errorf("wrong password: %v", err)
			}
		})
	}
}

// The *ToPkcs12 functions write base64 archives that go-pkcs12 reads back
// as they were given, with go-pkcs12's Modern parameters.
func TestPKCS12Write(t *testing.T) {
	p := testCerts(t)
	values := map[string][]byte{
		"crt": []byte(certPEM(p.leaf)), "chain": []byte(certPEM(p.leaf, p.inter, p.root)), "ca": []byte(certPEM(p.inter, p.root)),
		"key": []byte(pkcs8PEM(t, p.leafKey)), "rsa": []byte(pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(p.rsaKey))),
	}
	decode := func(tmpl, pass string) (any, *x509.Certificate, []*x509.Certificate) {
		t.Helper()
		der, err := base64.StdEncoding.DecodeString(mustRender(t, tmpl, values))
		if err != nil {
			t.Fatalf("%s: not base64: %v", tmpl, err)
		}
		k, c, ca, err := gopkcs12.DecodeChain(der, pass)
		if err != nil {
			t.Fatalf("%s: go-pkcs12 cannot read it: %v", tmpl, err)
		}
		return k, c, ca
	}
	k, c, ca := decode(`{{ pemToPkcs12 .crt .key }}`, "")
	if !p.leafKey.Equal(k) || !c.Equal(p.leaf) || len(ca) != 0 {
		t.Error("pemToPkcs12: the archive does not hold the key and certificate")
	}
	// pemToPkcs12 keeps only the first certificate, as ESO.
	if _, _, ca := decode(`{{ pemToPkcs12Pass .chain .key "pw" }}`, "pw"); len(ca) != 0 {
		t.Error("pemToPkcs12Pass: the chain was kept")
	}
	k, c, ca = decode(`{{ fullPemToPkcs12 .chain .key }}`, "")
	if !p.leafKey.Equal(k) || !c.Equal(p.leaf) || len(ca) != 2 || !ca[0].Equal(p.inter) || !ca[1].Equal(p.root) {
		t.Error("fullPemToPkcs12: the archive does not hold the key and chain")
	}
	k, _, _ = decode(`{{ fullPemToPkcs12Pass .crt .rsa "pw" }}`, "pw")
	if !p.rsaKey.Equal(k) {
		t.Error("fullPemToPkcs12Pass: the PKCS#1 key was not kept")
	}
	for tmpl, pass := range map[string]string{`{{ pemTruststoreToPKCS12 .ca }}`: "", `{{ pemTruststoreToPKCS12Pass .ca "changeit" }}`: "changeit"} {
		der, _ := base64.StdEncoding.DecodeString(mustRender(t, tmpl, values))
		certs, err := gopkcs12.DecodeTrustStore(der, pass)
		if err != nil || len(certs) != 2 || !certs[0].Equal(p.inter) || !certs[1].Equal(p.root) {
			t.Errorf("%s: %v, %d certificates", tmpl, err, len(certs))
		}
	}
	// Veil reads its own archives, with the key as ESO writes it.
	if got := mustRender(t, `{{ fullPemToPkcs12Pass .chain .key "pw" | b64dec | pkcs12keyPass "pw" }}`, values); got != string(values["key"]) {
		t.Errorf("round trip: got %q", got)
	}
	for _, tmpl := range []string{`{{ pemToPkcs12 .key .key }}`, `{{ pemToPkcs12 .crt .crt }}`, `{{ fullPemToPkcs12 "" .key }}`, `{{ pemTruststoreToPKCS12 .key }}`} {
		if _, err := render1(t, tmpl, values); err == nil {
			t.Errorf("%s: no error", tmpl)
		}
	}
}

// With an encoding key (as veil-syncer sets), the same inputs render the
// same archive, so a refresh with unchanged values does not rewrite the
// Secret; different inputs get different salts. Without it, salts are
// random, as ESO's.
func TestPKCS12WriteIsStable(t *testing.T) {
	p := testCerts(t)
	values := map[string][]byte{"crt": []byte(certPEM(p.leaf)), "key": []byte(pkcs8PEM(t, p.leafKey))}
	const tmpl = `{{ pemToPkcs12Pass .crt .key "pw" }}|{{ pemTruststoreToPKCS12 .crt }}`
	t.Cleanup(func() { encodingKey.Store(nil) })
	if mustRender(t, tmpl, values) == mustRender(t, tmpl, values) {
		t.Error("without an encoding key two renders are equal: the salts are not random")
	}
	SetEncodingKey([]byte("a key of veil-syncer's"))
	a, b := mustRender(t, tmpl, values), mustRender(t, tmpl, values)
	if a != b {
		t.Error("with an encoding key two renders of the same inputs differ")
	}
	if other := mustRender(t, `{{ pemToPkcs12Pass .crt .key "pw2" }}|{{ pemTruststoreToPKCS12 .crt }}`, values); strings.Split(other, "|")[0] == strings.Split(a, "|")[0] {
		t.Error("another password renders the same archive")
	}
	der, _ := base64.StdEncoding.DecodeString(strings.Split(a, "|")[0])
	if k, _, _, err := gopkcs12.DecodeChain(der, "pw"); err != nil || !p.leafKey.Equal(k) {
		t.Errorf("the deterministic archive does not decode: %v", err)
	}
	SetEncodingKey([]byte("another syncer's key"))
	if mustRender(t, tmpl, values) == a {
		t.Error("another encoding key renders the same archive")
	}
}

func TestCertSANs(t *testing.T) {
	p := testCerts(t)
	values := map[string][]byte{"crt": []byte("junk before\n" + certPEM(p.leaf, p.inter))}
	if got, want := mustRender(t, `{{ .crt | certSANs | join "," }}`, values), "app.example.com,www.example.com,10.0.0.1,2001:db8::1,ops@example.com,spiffe://example.com/app"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := mustRender(t, `{{ len (certSANs .root) }}`, map[string][]byte{"root": []byte(certPEM(p.root))}); got != "0" {
		t.Errorf("a certificate without SANs: %q", got)
	}
}

func TestJWK(t *testing.T) {
	p := testCerts(t)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, key := range map[string]any{"rsa": p.rsaKey, "ec": p.leafKey, "okp": ed} {
		t.Run(name, func(t *testing.T) {
			priv, err := jose.JSONWebKey{Key: key}.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			pubKey := key.(crypto.Signer).Public()
			pub, err := jose.JSONWebKey{Key: pubKey}.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			values := map[string][]byte{"priv": priv, "pub": pub}
			pkix, _ := x509.MarshalPKIXPublicKey(pubKey)
			for _, tmpl := range []string{`{{ .priv | jwkPublicKeyPem }}`, `{{ .pub | jwkPublicKeyPem }}`} {
				if got := mustRender(t, tmpl, values); got != pemBlock("PUBLIC KEY", pkix) {
					t.Errorf("%s: got %q", tmpl, got)
				}
			}
			if got := mustRender(t, `{{ .priv | jwkPrivateKeyPem }}`, values); got != pkcs8PEM(t, key) {
				t.Errorf("jwkPrivateKeyPem: got %q", got)
			}
			if _, err := render1(t, `{{ .pub | jwkPrivateKeyPem }}`, values); err == nil || !strings.Contains(err.Error(), "no private part") {
				t.Errorf("jwkPrivateKeyPem of a public key: %v", err)
			}
		})
	}
	// ESO's documentation example's key.
	const esoDoc = `{"kty":"RSA","e":"AQAB","use":"sig","kid":"x","alg":"RS256","n":"` +
		`mHmzVb7GbVSxMIfU5yUj3mH9vdB8LrKV0DbrPbbAQ6-kGSANvoUV7t8RmMTOr9rHe1ax2h1jB3Ce1WPm7EQQiAqx58_cv7sy3Pvvn2kkCAHUTRf8yDZUOaGZpDpTd27Gz4AzsDQzTd7d3kJ0Dj8ksGuZOB4sLMX9m8eKnaZwTuCqFIhnPSGKQ7aHqn0LRsj-1J8kFHoJ8Yd2DZTBn6c-D9eiN8xz8mazXC3BB_c7RjJy-PAwSTaoMwOmq8BYt06VEQrrPGIIWV8gnQYGkmnJxW8uZnYb-ORcXcDYHgIf5chvDG2dh8DDSGG5MrMi4djkMuXx98Xuw7WD3N-2j3pQ"}`
	if got := mustRender(t, `{{ .k | jwkPublicKeyPem }}`, map[string][]byte{"k": []byte(esoDoc)}); !strings.HasPrefix(got, "-----BEGIN PUBLIC KEY-----\n") {
		t.Errorf("ESO's example: %q", got)
	}
	huge := strings.Repeat("A", 2000)
	big := `{"kty":"RSA","e":"AQAB","n":"` + huge + `"}`
	// However the member is spelled or repeated, a large number is refused
	// before go-jose reads it.
	for _, jwk := range []string{
		`{"kty":"RSA","e":"AQAB","n":"` + huge + `","n":"AQAB"}`,
		`{"kty":"RSA","e":"AQAB","n":"AQAB","N":"` + huge + `"}`,
		`{"kty":"RSA","e":"AQAB","\u006e":"` + huge + `"}`,
		`{"kty":"RSA","e":"AQAB","n":"AQAB","d":"AQAB","p":"` + huge + `","q":"AQAB"}`,
	} {
		if _, err := render1(t, `{{ jwkPrivateKeyPem .k }}`, map[string][]byte{"k": []byte(jwk)}); err == nil || !strings.Contains(err.Error(), "larger than 8192 bits") {
			t.Errorf("a large RSA number, spelled %.40s...: %v", jwk, err)
		}
	}
	for tmpl, want := range map[string]string{
		`{{ jwkPublicKeyPem "{" }}`:                                  "not a JSON Web Key",
		`{{ jwkPublicKeyPem "{\"kty\":\"oct\",\"k\":\"AAAA\"}" }}`:   "not an RSA, EC or OKP key",
		`{{ jwkPrivateKeyPem .big }}`:                                "larger than 8192 bits",
		`{{ jwkPublicKeyPem "{\"kty\":\"EC\",\"crv\":\"P-999\"}" }}`: "not a JSON Web Key Veil can read",
	} {
		if _, err := render1(t, tmpl, map[string][]byte{"big": []byte(big)}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", tmpl, err, want)
		}
	}
}

// rsaDecrypt in both of ESO's call forms, with both hashes and "None".
func TestRSADecrypt(t *testing.T) {
	p := testCerts(t)
	ct1, _ := rsa.EncryptOAEP(sha1.New(), rand.Reader, &p.rsaKey.PublicKey, []byte("plain-1"), nil)
	ct256, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, &p.rsaKey.PublicKey, []byte("plain-256"), nil)
	values := map[string][]byte{
		"key":    []byte(pkcs8PEM(t, p.rsaKey)),
		"pkcs1":  []byte(pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(p.rsaKey))),
		"ct1":    []byte(base64.StdEncoding.EncodeToString(ct1)),
		"ct256":  ct256,
		"ec":     []byte(pkcs8PEM(t, p.leafKey)),
		"plain":  []byte("as it is"),
		"nokey":  nil,
		"pkcs1x": []byte(pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(p.rsaKey))),
	}
	for tmpl, want := range map[string]string{
		`{{ rsaDecrypt "RSA-OAEP" "SHA1" (.ct1 | b64dec) .key }}`:   "plain-1",
		`{{ .pkcs1 | rsaDecrypt "RSA-OAEP" "SHA1" (b64dec .ct1) }}`: "plain-1",
		`{{ rsaDecrypt "RSA-OAEP" "SHA256" .ct256 .pkcs1 }}`:        "plain-256",
		`{{ .key | rsaDecrypt "RSA-OAEP" "SHA256" .ct256 }}`:        "plain-256",
		`{{ .nokey | rsaDecrypt "None" "SHA256" .plain }}`:          "as it is",
	} {
		if got := mustRender(t, tmpl, values); got != want {
			t.Errorf("%s: got %q, want %q", tmpl, got, want)
		}
	}
	for tmpl, want := range map[string]string{
		`{{ rsaDecrypt "RSA-OAEP" "SHA1" .ct256 .key }}`:   "does not decrypt",
		`{{ rsaDecrypt "RSA-OAEP" "MD5" .ct256 .key }}`:    "the hash is none of",
		`{{ rsaDecrypt "RSA-PKCS1" "SHA1" .ct256 .key }}`:  "the scheme is none of",
		`{{ rsaDecrypt "RSA-OAEP" "SHA256" .ct256 .ec }}`:  "not an RSA private key",
		`{{ rsaDecrypt "RSA-OAEP" "SHA256" .ct256 "x" }}`:  "not PEM",
		`{{ rsaDecrypt "RSA-OAEP" "SHA256" .ct256 .big }}`: "larger than 8192 bits",
	} {
		big, _ := rsa.GenerateKey(rand.Reader, 1024) // stands for a large one: its modulus is replaced below
		der := x509.MarshalPKCS1PrivateKey(big)
		values["big"] = []byte(pemBlock("RSA PRIVATE KEY", hugeModulus(t, der)))
		if _, err := render1(t, tmpl, values); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", tmpl, err, want)
		}
	}
}

// hugeModulus rewrites a PKCS#1 key's modulus to 8200 bits: not a valid
// key, which only matters if it is parsed before its size is checked.
func hugeModulus(t *testing.T, der []byte) []byte {
	var k struct {
		Version       int
		N, E, D, P, Q *big.Int
		Dp, Dq, Qinv  *big.Int
	}
	if _, err := asn1.Unmarshal(der, &k); err != nil {
		t.Fatal(err)
	}
	k.N = new(big.Int).Lsh(big.NewInt(1), 8200)
	out, err := asn1.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHexdec(t *testing.T) {
	if got := mustRender(t, `{{ hexdec "68656c6c6f" }} {{ "x" | sha256sum | hexdec | b64enc }}`, nil); got != "hello "+base64.StdEncoding.EncodeToString(func() []byte { s := sha256.Sum256([]byte("x")); return s[:] }()) {
		t.Errorf("got %q", got)
	}
	if _, err := render1(t, `{{ hexdec "6g" }}`, nil); err == nil || !strings.Contains(err.Error(), "not valid hexadecimal") {
		t.Errorf("hexdec of non-hex: %v", err)
	}
}

// RC2 against RFC 2268's test vectors.
func TestRC2(t *testing.T) {
	for _, v := range []struct {
		key  string
		bits int
		pt   string
		ct   string
	}{
		{"0000000000000000", 63, "0000000000000000", "ebb773f993278eff"},
		{"ffffffffffffffff", 64, "ffffffffffffffff", "278b27e42e2f0d49"},
		{"3000000000000000", 64, "1000000000000001", "30649edf9be7d2c2"},
		{"88", 64, "0000000000000000", "61a8a244adacccf0"},
		{"88bca90e90875a", 64, "0000000000000000", "6ccf4308974c267f"},
		{"88bca90e90875a7f0f79c384627bafb2", 64, "0000000000000000", "1a807d272bbe5db1"},
		{"88bca90e90875a7f0f79c384627bafb2", 128, "0000000000000000", "2269552ab0f85ca6"},
	} {
		key, _ := hex.DecodeString(v.key)
		pt, _ := hex.DecodeString(v.pt)
		c := newRC2(key, v.bits)
		got := make([]byte, 8)
		c.Encrypt(got, pt)
		if hex.EncodeToString(got) != v.ct {
			t.Errorf("key %s/%d: encrypt %x, want %s", v.key, v.bits, got, v.ct)
		}
		back := make([]byte, 8)
		c.Decrypt(back, got)
		if !bytes.Equal(back, pt) {
			t.Errorf("key %s/%d: decrypt %x, want %x", v.key, v.bits, back, pt)
		}
	}
}

// --- adversarial archives -------------------------------------------------

// p12Builder writes archives part by part, with the counts a test chooses,
// computing real MACs and encryptions only where the count is small enough
// to be derived.
type p12Builder struct {
	t    *testing.T
	pass string
}

func (b *p12Builder) bmp() []byte {
	var out []byte
	for _, c := range b.pass {
		out = append(out, byte(c>>8), byte(c))
	}
	return append(out, 0, 0)
}

func (b *p12Builder) marshal(v any) []byte {
	b.t.Helper()
	der, err := asn1.Marshal(v)
	if err != nil {
		b.t.Fatal(err)
	}
	return der
}

func (b *p12Builder) octets(p []byte) asn1.RawValue {
	return asn1.RawValue{FullBytes: b.marshal(p)}
}

// pbes2 encrypts plaintext with PBES2/PBKDF2-SHA256/AES-256-CBC; with
// derive false the ciphertext is random (the count is never to be used).
func (b *p12Builder) pbes2(plain []byte, iterations int, derive bool) (pkix.AlgorithmIdentifier, []byte) {
	salt, iv := make([]byte, 8), make([]byte, 16)
	rand.Read(salt)
	rand.Read(iv)
	kdf := p12PBKDF2Params{Salt: b.octets(salt), Iterations: iterations, PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACSHA256, Parameters: asn1.NullRawValue}}
	params := p12PBES2Params{
		KDF:        pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: b.marshal(kdf)}},
		Encryption: pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: b.octets(iv)},
	}
	alg := pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: b.marshal(params)}}
	pad := 16 - len(plain)%16
	data := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	if !derive {
		rand.Read(data)
		return alg, data
	}
	key, err := pbkdf2.Key(sha256.New, b.pass, salt, iterations, 32)
	if err != nil {
		b.t.Fatal(err)
	}
	blk, _ := aes.NewCipher(key)
	cipher.NewCBCEncrypter(blk, iv).CryptBlocks(data, data)
	return alg, data
}

// legacyPBE names 3DES with the PKCS#12 derivation and count; never
// derived here.
func (b *p12Builder) legacyPBE(iterations int) pkix.AlgorithmIdentifier {
	return pkix.AlgorithmIdentifier{Algorithm: oidPBE3DES, Parameters: asn1.RawValue{FullBytes: b.marshal(p12PBEParams{Salt: []byte("saltsalt"), Iterations: iterations})}}
}

func (b *p12Builder) shroudedKey(alg pkix.AlgorithmIdentifier) p12SafeBag {
	return p12SafeBag{ID: oidShroudedKeyBag, Value: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
		Bytes: b.marshal(p12EncryptedKey{Algorithm: alg, Data: make([]byte, 32)})}}
}

func (b *p12Builder) dataPart(bags ...p12SafeBag) p12ContentInfo {
	if bags == nil {
		bags = []p12SafeBag{}
	}
	return p12ContentInfo{ContentType: oidData, Content: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: b.marshal(b.marshal(bags))}}
}

func (b *p12Builder) encryptedPart(alg pkix.AlgorithmIdentifier, data []byte) p12ContentInfo {
	var ed p12EncryptedData
	ed.Info.ContentType = oidData
	ed.Info.Algorithm = alg
	ed.Info.Content = data
	return p12ContentInfo{ContentType: oidEncryptedData, Content: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: b.marshal(ed)}}
}

// archive assembles parts under a legacy SHA-256 MAC of macIterations,
// computed only when derive is true.
func (b *p12Builder) archive(macIterations int, derive bool, parts ...p12ContentInfo) []byte {
	authSafe := b.marshal(parts)
	var pfx p12PFX
	pfx.Version = 3
	pfx.AuthSafe = p12ContentInfo{ContentType: oidData, Content: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: b.marshal(authSafe)}}
	pfx.MacData.Mac.Algorithm = pkix.AlgorithmIdentifier{Algorithm: oidDigestSHA2, Parameters: asn1.NullRawValue}
	pfx.MacData.MacSalt = []byte("macsalt!")
	pfx.MacData.Iterations = macIterations
	pfx.MacData.Mac.Digest = make([]byte, 32)
	if derive {
		m := hmac.New(sha256.New, p12KDF(sha256.New, 64, pfx.MacData.MacSalt, b.bmp(), macIterations, 3, 32))
		m.Write(authSafe)
		pfx.MacData.Mac.Digest = m.Sum(nil)
	}
	return b.marshal(pfx)
}

// Every iteration count an archive names (its MAC, PBMAC1's, an encrypted
// part's, a key's in plain view, a key's inside an encrypted part) over the
// bound is refused before anything is derived with it, and the work of all
// derivations together is bounded. The error is the primary evidence; the
// time (2^31 iterations would take minutes) is a secondary one.
func TestPKCS12IterationBounds(t *testing.T) {
	b := &p12Builder{t: t, pass: "pw"}
	huge := 1<<31 - 1
	innerData := b.marshal([]p12SafeBag{b.shroudedKey(b.legacyPBE(huge))})
	innerAlg, innerCT := b.pbes2(innerData, 2048, true)
	pbes2Huge, pbes2HugeCT := b.pbes2([]byte("x"), huge, false)
	pbmac1 := func(iterations int) []byte {
		der := b.archive(1, false, b.dataPart())
		var pfx p12PFX
		if _, err := asn1.Unmarshal(der, &pfx); err != nil {
			t.Fatal(err)
		}
		kdf := p12PBKDF2Params{Salt: b.octets([]byte("salt")), Iterations: iterations, KeyLength: 32, PRF: pkix.AlgorithmIdentifier{Algorithm: oidHMACSHA256, Parameters: asn1.NullRawValue}}
		params := p12PBMAC1Params{KDF: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: b.marshal(kdf)}},
			MAC: pkix.AlgorithmIdentifier{Algorithm: oidHMACSHA256, Parameters: asn1.NullRawValue}}
		pfx.MacData.Mac.Algorithm = pkix.AlgorithmIdentifier{Algorithm: oidPBMAC1, Parameters: asn1.RawValue{FullBytes: b.marshal(params)}}
		return b.marshal(pfx)
	}
	// The total: three parts of 100000 iterations of two PBKDF2-SHA1
	// blocks each are 600000 hash iterations, over the 400000 bound; each
	// part is real, so the first two decrypt and the third is refused.
	var total []p12ContentInfo
	for range 3 {
		salt, iv := []byte("saltsalt"), make([]byte, 16)
		kdf := p12PBKDF2Params{Salt: b.octets(salt), Iterations: maxKDFIterations} // PRF SHA-1 by default: 2 blocks for AES-256
		params := p12PBES2Params{KDF: pkix.AlgorithmIdentifier{Algorithm: oidPBKDF2, Parameters: asn1.RawValue{FullBytes: b.marshal(kdf)}},
			Encryption: pkix.AlgorithmIdentifier{Algorithm: oidAES256CBC, Parameters: b.octets(iv)}}
		key, _ := pbkdf2.Key(sha1.New, b.pass, salt, maxKDFIterations, 32)
		blk, _ := aes.NewCipher(key)
		plain := append(b.marshal([]p12SafeBag{}), bytes.Repeat([]byte{14}, 14)...)
		cipher.NewCBCEncrypter(blk, iv).CryptBlocks(plain, plain)
		total = append(total, b.encryptedPart(pkix.AlgorithmIdentifier{Algorithm: oidPBES2, Parameters: asn1.RawValue{FullBytes: b.marshal(params)}}, plain))
	}
	// Within the per-call bound, the render's budget pays for each
	// derivation: a loop over an archive that costs half of what one call
	// may derive stops on the work bound after some twenty calls. The
	// clock is taken out of this render (an hour): which bound comes first
	// must not depend on how fast this machine hashes.
	p := testCerts(t)
	certBag := p12SafeBag{ID: oidCertBag, Value: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
		Bytes: b.marshal(p12CertBag{ID: oidX509Certificate, Data: p.leaf.Raw})}}
	heaviest := b.archive(1, true, total[0], b.dataPart(certBag))
	if got := mustRender(t, `{{ pkcs12certPass "pw" .p12 }}`, map[string][]byte{"p12": heaviest}); got != certPEM(p.leaf) {
		t.Fatalf("a heavy archive within the bounds: got %q", got)
	}
	start := time.Now()
	_, err := render(map[string]string{"k": `{{ range 1000 }}{{ $x := pkcs12certPass "pw" $.p12 }}{{ end }}`}, map[string][]byte{"p12": heaviest}, newBudget(time.Hour))
	if err == nil || !strings.Contains(err.Error(), "its functions produce more than 16 MiB") {
		t.Errorf("a loop over a heavy archive: %v, want the work bound", err)
	}
	t.Logf("a loop over a heavy archive stopped after %s", time.Since(start).Round(time.Millisecond))

	cases := map[string][]byte{
		"MAC":                      b.archive(huge, false, b.dataPart()),
		"MAC just over":            b.archive(maxKDFIterations+1, false, b.dataPart()),
		"PBMAC1":                   pbmac1(huge),
		"encrypted part":           b.archive(1, true, b.encryptedPart(pbes2Huge, pbes2HugeCT)),
		"encrypted part, legacy":   b.archive(1, true, b.encryptedPart(b.legacyPBE(huge), make([]byte, 16))),
		"key in plain view":        b.archive(1, true, b.dataPart(b.shroudedKey(b.legacyPBE(huge)))),
		"key in an encrypted part": b.archive(1, true, b.encryptedPart(innerAlg, innerCT)),
		"key with PBES2":           b.archive(1, true, b.dataPart(b.shroudedKey(pbes2Huge))),
		"all derivations together": b.archive(1, true, total...),
		"negative count":           b.archive(-5, false, b.dataPart()),
	}
	for name, der := range cases {
		t.Run(name, func(t *testing.T) {
			for _, fn := range []string{"pkcs12keyPass", "pkcs12certPass"} {
				start := time.Now()
				_, err := render1(t, `{{ .p12 | `+fn+` "pw" }}`, map[string][]byte{"p12": der})
				took := time.Since(start)
				want := "over Veil's bounds"
				if name == "negative count" {
					want = "iteration count below 1"
				}
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("%s: %v, want an error saying %q", fn, err, want)
				}
				if took > 3*time.Second {
					t.Errorf("%s: took %s: it derived", fn, took)
				}
				t.Logf("%s: %s: %v", fn, took.Round(time.Millisecond), err)
			}
		})
	}
	// The same builder's archives within the bounds are read: the cases
	// above fail on their counts, not on how they were built.
	ok := b.archive(2048, true, b.encryptedPart(innerAlg, innerCT))
	var bound *errP12Bound
	if _, err := decodeP12(nil, ok, "pw"); !errors.As(err, &bound) || !strings.Contains(err.Error(), "iteration count is over") {
		// innerCT holds the huge key: reaching it proves the outer part
		// and the MAC were read.
		t.Errorf("the builder's archive: %v", err)
	}
	fine := b.archive(2048, true, b.dataPart())
	if _, err := decodeP12(nil, fine, "pw"); err != nil {
		t.Errorf("an empty archive within the bounds: %v", err)
	}
	if _, err := decodeP12(nil, fine, "wrong"); !errors.Is(err, errP12Password) {
		t.Errorf("wrong password: %v", err)
	}
}

// A key is charged for its size before it is parsed: an RSA key's
// validation and private operation grow with its size cubed.
func TestRSAKeysAreCharged(t *testing.T) {
	p := testCerts(t)
	values := map[string][]byte{"key": []byte(pkcs8PEM(t, p.rsaKey))}
	for _, tmpl := range []string{`{{ $x := rsaDecrypt "RSA-OAEP" "SHA1" "x" .key }}`, `{{ $x := pemToPkcs12 .crt .key }}`} {
		values["crt"] = []byte(certPEM(p.leaf))
		b := newBudget(MaxDuration)
		_, _ = render(map[string]string{"k": tmpl}, values, b)
		if b.work < rsaCost(2048) {
			t.Errorf("%s: charged %d, less than a 2048-bit key's %d", tmpl, b.work, rsaCost(2048))
		}
	}
}

// Inputs over the size bounds and junk fail with the functions' own
// messages.
func TestESOFuncsJunkAndSizes(t *testing.T) {
	p := testCerts(t)
	big := strings.Repeat("A", maxArchiveBytes+1)
	many := strings.Repeat(certPEM(p.root), maxChainCertificates+1)
	values := map[string][]byte{"big": []byte(big), "many": []byte(many), "junk": []byte("\x30\x82\xff\xff junk"), "key": []byte(pkcs8PEM(t, p.leafKey))}
	for tmpl, want := range map[string]string{
		`{{ pkcs12key .big }}`:                         "larger than 256 KiB",
		`{{ pkcs12cert .junk }}`:                       "is not PKCS#12",
		`{{ pkcs12cert "" }}`:                          "is not PKCS#12",
		`{{ pemToPkcs12 .big .key }}`:                  "larger than 256 KiB",
		`{{ fullPemToPkcs12 .many .key }}`:             "more than 64 certificates",
		`{{ pemTruststoreToPKCS12 .many }}`:            "more than 64 certificates",
		`{{ certSANs .big }}`:                          "larger than 256 KiB",
		`{{ certSANs .junk }}`:                         "not PEM",
		`{{ jwkPublicKeyPem .big }}`:                   "larger than 256 KiB",
		`{{ rsaDecrypt "RSA-OAEP" "SHA1" .big .key }}`: "larger than 256 KiB",
	} {
		if _, err := render1(t, tmpl, values); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", tmpl, err, want)
		}
	}
	// An archive of 65 certificates is refused at the 65th.
	var cs []*x509.Certificate
	for range maxChainCertificates {
		cs = append(cs, p.root)
	}
	der, err := gopkcs12.Modern.Encode(p.leafKey, p.leaf, cs, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := render1(t, `{{ pkcs12cert .p12 }}`, map[string][]byte{"p12": der}); err == nil || !strings.Contains(err.Error(), "more than 64 certificates") {
		t.Errorf("65 certificates: %v", err)
	}
}

// No error of these functions quotes a value: each is called with a
// canary in every argument a value can fill.
func TestESOFuncsErrorsNeverQuoteAValue(t *testing.T) {
	const canary = "esofuncs-canary-8d1f"
	p := testCerts(t)
	b := &p12Builder{t: t, pass: canary}
	archive := b.archive(2048, true, b.dataPart())
	values := map[string][]byte{
		"c":   []byte(canary),
		"pem": []byte("-----BEGIN CERTIFICATE-----\n" + base64.StdEncoding.EncodeToString([]byte(canary)) + "\n-----END CERTIFICATE-----\n"),
		"key": []byte("-----BEGIN PRIVATE KEY-----\n" + base64.StdEncoding.EncodeToString([]byte(canary)) + "\n-----END PRIVATE KEY-----\n"),
		"jwk": []byte(`{"kty":"` + canary + `","n":"` + canary + `"}`),
		"ec":  []byte(`{"kty":"EC","crv":"` + canary + `","x":"` + canary + `"}`),
		"p12": archive, "crt": []byte(certPEM(p.leaf)), "rsa": []byte(pkcs8PEM(t, p.rsaKey)),
	}
	for _, tmpl := range []string{
		`{{ pkcs12key .c }}`, `{{ pkcs12keyPass .c .c }}`, `{{ pkcs12cert .c }}`, `{{ pkcs12certPass .c .p12 }}`, `{{ pkcs12certPass "x" .p12 }}`,
		`{{ pemToPkcs12 .c .c }}`, `{{ pemToPkcs12 .pem .key }}`, `{{ pemToPkcs12Pass .crt .key .c }}`, `{{ fullPemToPkcs12 .pem .c }}`,
		`{{ fullPemToPkcs12Pass .crt .key .c }}`, `{{ pemTruststoreToPKCS12 .pem }}`, `{{ pemTruststoreToPKCS12Pass .c .c }}`,
		`{{ certSANs .c }}`, `{{ certSANs .pem }}`, `{{ jwkPublicKeyPem .c }}`, `{{ jwkPublicKeyPem .jwk }}`, `{{ jwkPrivateKeyPem .ec }}`,
		`{{ rsaDecrypt .c .c .c .c }}`, `{{ rsaDecrypt "RSA-OAEP" .c .c .c }}`, `{{ rsaDecrypt "RSA-OAEP" "SHA1" .c .key }}`, `{{ rsaDecrypt "RSA-OAEP" "SHA1" .c .rsa }}`,
		`{{ hexdec .c }}`,
	} {
		_, err := render1(t, tmpl, values)
		if err == nil {
			t.Errorf("%s: no error", tmpl)
			continue
		}
		if strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), base64.StdEncoding.EncodeToString([]byte(canary))[:12]) {
			t.Errorf("%s: the error quotes a value: %v", tmpl, err)
		}
	}
}

// certSANs returns a list: the budget charges it as it charges every
// list, its strings and their headers, beside the input it read.
func TestCertSANsIsCharged(t *testing.T) {
	p := testCerts(t)
	crt := certPEM(p.leaf)
	b := newBudget(MaxDuration)
	if _, err := render(map[string]string{"k": `{{ $x := certSANs .crt }}`}, map[string][]byte{"crt": []byte(crt)}, b); err != nil {
		t.Fatal(err)
	}
	sans, _ := certSANs(crt)
	list := int64(24)
	for _, s := range sans {
		list += int64(len(s)) + 16
	}
	if want := int64(len(crt)) + list; b.work != want {
		t.Errorf("charged %d, want the input's %d bytes and the list's %d", b.work, len(crt), list)
	}
}
