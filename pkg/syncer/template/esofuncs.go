package template

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // for crypto.SHA1.New
	"crypto/sha256"
	_ "crypto/sha512" // for crypto.SHA512.New
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	jose "github.com/go-jose/go-jose/v4"
	gopkcs12 "software.sslmate.com/src/go-pkcs12"
)

// External Secrets Operator's own template functions (its v2 engine's
// "helper functions"), with its argument order and input forms. Every input
// is a provider value a tenant may write, so each is bounded: an archive,
// JWK or PEM input at most maxArchiveBytes, at most maxChainCertificates
// certificates, RSA keys at most maxRSABits, and PKCS#12 key derivations
// bounded as p12decode.go says. Errors are written here and never quote an
// argument.

// maxRSABits bounds an RSA key: rsaDecrypt's and the *ToPkcs12 keys cost
// in proportion to its size cubed, and real keys are at most 4096 bits.
const maxRSABits = 8192

// The functions below charge the budget for their CPU before spending it,
// as bytes of work, so that the work bound, not only the clock, limits how
// many of them one render runs: kdfCost per hash iteration of a PKCS#12 key
// derivation (a real archive costs some 25 KB, the most one call may derive
// 1.6 MB), rsaCost for an RSA key validated or used, encodeCost for an
// archive written.
const (
	kdfCost    = 4
	encodeCost = 3 * 2 * 2048 * kdfCost // MAC, certificates, key: 2048 iterations of two blocks at most
)

// rsaCost grows with the cube of the key size, as its private operations
// do: 32 KB for 2048 bits, 2 MiB for 8192.
func rsaCost(bits int) int64 {
	k := int64(bits+1023) / 1024
	return 4096 * k * k * k
}

// spender charges the render's budget; nil charges nothing (tests).
type spender func(n int64) error

func (s spender) charge(n int64) error {
	if s == nil {
		return nil
	}
	return s(n)
}

func init() {
	for name, mk := range map[string]func(sp spender) any{
		"pkcs12key": func(sp spender) any {
			return func(archive string) (string, error) { return pkcs12Key(sp, "pkcs12key", "", archive) }
		},
		"pkcs12keyPass": func(sp spender) any {
			return func(pass, archive string) (string, error) { return pkcs12Key(sp, "pkcs12keyPass", pass, archive) }
		},
		"pkcs12cert": func(sp spender) any {
			return func(archive string) (string, error) { return pkcs12Cert(sp, "pkcs12cert", "", archive) }
		},
		"pkcs12certPass": func(sp spender) any {
			return func(pass, archive string) (string, error) { return pkcs12Cert(sp, "pkcs12certPass", pass, archive) }
		},
		"pemToPkcs12": func(sp spender) any {
			return func(cert, key string) (string, error) { return pemToPkcs12(sp, "pemToPkcs12", false, cert, key, "") }
		},
		"pemToPkcs12Pass": func(sp spender) any {
			return func(cert, key, pass string) (string, error) {
				return pemToPkcs12(sp, "pemToPkcs12Pass", false, cert, key, pass)
			}
		},
		"fullPemToPkcs12": func(sp spender) any {
			return func(cert, key string) (string, error) { return pemToPkcs12(sp, "fullPemToPkcs12", true, cert, key, "") }
		},
		"fullPemToPkcs12Pass": func(sp spender) any {
			return func(cert, key, pass string) (string, error) {
				return pemToPkcs12(sp, "fullPemToPkcs12Pass", true, cert, key, pass)
			}
		},
		"pemTruststoreToPKCS12": func(sp spender) any {
			return func(certs string) (string, error) { return truststore(sp, "pemTruststoreToPKCS12", certs, "") }
		},
		"pemTruststoreToPKCS12Pass": func(sp spender) any {
			return func(certs, pass string) (string, error) {
				return truststore(sp, "pemTruststoreToPKCS12Pass", certs, pass)
			}
		},
		"jwkPublicKeyPem": func(sp spender) any {
			return func(s string) (string, error) { return jwkPem(sp, "jwkPublicKeyPem", s, false) }
		},
		"jwkPrivateKeyPem": func(sp spender) any {
			return func(s string) (string, error) { return jwkPem(sp, "jwkPrivateKeyPem", s, true) }
		},
		"rsaDecrypt": func(sp spender) any {
			return func(scheme, hashName, ciphertext, key string) (string, error) {
				return rsaDecrypt(sp, scheme, hashName, ciphertext, key)
			}
		},
	} {
		costed[name] = func(b *budget) any { return mk(b.spend) }
	}
	// certSANs and hexdec work in proportion to their input, which every
	// call is charged already.
	funcs["certSANs"] = certSANs
	funcs["hexdec"] = func(s string) (string, error) {
		b, err := hex.DecodeString(s)
		if err != nil {
			return "", &funcError{"hexdec: the input is not valid hexadecimal"}
		}
		return string(b), nil
	}
}

func tooBig(fn string) error {
	return &funcError{fmt.Sprintf("%s: an input is larger than %d KiB", fn, maxArchiveBytes>>10)}
}

// p12Error turns a decoding error into the function's message.
func p12Error(fn string, err error) error {
	var b *errP12Bound
	switch {
	case errors.As(err, &b):
		return &funcError{fn + ": the archive is over Veil's bounds: " + b.msg}
	case errors.Is(err, errP12Password):
		return &funcError{fn + ": the archive is not PKCS#12, or the password is wrong"}
	}
	// The other messages are ours and name a structure, never a value.
	return &funcError{fn + ": the archive is not PKCS#12 Veil can read: " + err.Error()}
}

func pemBlock(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

// pkcs12Key returns the archive's private key as PKCS#8 "PRIVATE KEY" PEM.
func pkcs12Key(sp spender, fn, pass, archive string) (string, error) {
	c, err := decodeP12(sp, []byte(archive), pass)
	if err != nil {
		return "", p12Error(fn, err)
	}
	if len(c.keys) == 0 {
		return "", &funcError{fn + ": the archive has no private key"}
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.keys[0])
	if err != nil {
		return "", &funcError{fn + ": the private key is of a kind PKCS#8 cannot hold"}
	}
	return pemBlock("PRIVATE KEY", der), nil
}

// pkcs12Cert returns the archive's certificates as PEM, ordered leaf,
// intermediates, root when they form one chain (as filterCertChain orders
// them), else as the archive holds them.
func pkcs12Cert(sp spender, fn, pass, archive string) (string, error) {
	c, err := decodeP12(sp, []byte(archive), pass)
	if err != nil {
		return "", p12Error(fn, err)
	}
	if len(c.certs) == 0 {
		return "", &funcError{fn + ": the archive has no certificate"}
	}
	certs := c.certs
	if ordered, err := linkChain(certs); err == nil && len(ordered) == len(certs) {
		certs = ordered
	}
	var out strings.Builder
	for _, crt := range certs {
		out.WriteString(pemBlock("CERTIFICATE", crt.Raw))
	}
	return out.String(), nil
}

// pemCerts parses the CERTIFICATE blocks of s, at most
// maxChainCertificates; other blocks are skipped.
func pemCerts(fn, s string) ([]*x509.Certificate, error) {
	if len(s) > maxArchiveBytes {
		return nil, tooBig(fn)
	}
	var certs []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if len(certs) == maxChainCertificates {
			return nil, &funcError{fmt.Sprintf("%s: the input has more than %d certificates", fn, maxChainCertificates)}
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, &funcError{fn + ": a CERTIFICATE block is not a valid X.509 certificate"}
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, &funcError{fn + ": the input has no CERTIFICATE PEM block"}
	}
	return certs, nil
}

// pemKey parses the first PEM block of s as a PKCS#1, PKCS#8 or SEC 1
// private key, as ESO does, refusing an RSA key over maxRSABits before
// any arithmetic on it.
func pemKey(sp spender, fn, s string) (any, error) {
	if len(s) > maxArchiveBytes {
		return nil, tooBig(fn)
	}
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, &funcError{fn + ": the key is not PEM"}
	}
	bits, err := checkRSASize(b.Bytes)
	if err != nil {
		return nil, &funcError{fn + ": " + err.Error()}
	}
	if bits > 0 {
		if err := sp.charge(rsaCost(bits)); err != nil {
			return nil, err
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		return k, nil
	}
	return nil, &funcError{fn + ": the key is not a PKCS#1, PKCS#8 or EC private key"}
}

// checkRSASize returns the size of a PKCS#1 or PKCS#8 RSA key's modulus
// (0 for another kind of key), and refuses one over maxRSABits, reading
// only the ASN.1: parsing a key validates it, which costs with its size.
func checkRSASize(der []byte) (int, error) {
	var seq asn1.RawValue
	if _, err := asn1.Unmarshal(der, &seq); err != nil || seq.Tag != asn1.TagSequence {
		return 0, nil // not one: the parsers refuse it
	}
	rest := seq.Bytes
	var version, second asn1.RawValue
	if rest, _ = asn1.Unmarshal(rest, &version); rest == nil {
		return 0, nil
	}
	if rest, _ = asn1.Unmarshal(rest, &second); rest == nil {
		return 0, nil
	}
	switch second.Tag {
	case asn1.TagInteger: // PKCS#1: version, modulus, ...
		bits := len(bytes.TrimLeft(second.Bytes, "\x00")) * 8
		if bits > maxRSABits+7 {
			return 0, fmt.Errorf("the RSA key is larger than %d bits", maxRSABits)
		}
		return bits, nil
	case asn1.TagSequence: // PKCS#8: version, algorithm, key
		var alg asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(second.Bytes, &alg); err != nil || !alg.Equal(oidRSAEncrypt) {
			return 0, nil
		}
		var key []byte
		if _, err := asn1.Unmarshal(rest, &key); err != nil {
			return 0, nil
		}
		return checkRSASize(key)
	}
	return 0, nil
}

// parsePKCS8Bounded parses a PKCS#8 key from an archive, RSA bounded.
func parsePKCS8Bounded(sp spender, der []byte) (any, error) {
	bits, err := checkRSASize(der)
	if err != nil {
		return nil, &errP12Bound{err.Error()}
	}
	if bits > 0 {
		if err := sp.charge(rsaCost(bits)); err != nil {
			return nil, err
		}
	}
	return x509.ParsePKCS8PrivateKey(der)
}

// pemToPkcs12 builds a base64 PKCS#12 archive of a certificate (full: and
// the chain after it) and a key, with go-pkcs12's Modern encoder (PBES2,
// AES-256, 2048 iterations), as ESO does.
func pemToPkcs12(sp spender, fn string, full bool, cert, key, pass string) (string, error) {
	certs, err := pemCerts(fn, cert)
	if err != nil {
		return "", err
	}
	k, err := pemKey(sp, fn, key)
	if err != nil {
		return "", err
	}
	if err := sp.charge(encodeCost); err != nil {
		return "", err
	}
	if !full {
		certs = certs[:1]
	}
	der, err := encoder(fn, cert, key, pass).Encode(k, certs[0], certs[1:], pass)
	if err != nil {
		return "", &funcError{fn + ": the key or certificate cannot be written as PKCS#12 (a key kind it cannot hold, or a password with a NUL)"}
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// truststore builds a base64 PKCS#12 trust store (Java's trusted
// certificate attribute on each) of the certificates of certs.
func truststore(sp spender, fn, certs, pass string) (string, error) {
	cs, err := pemCerts(fn, certs)
	if err != nil {
		return "", err
	}
	if err := sp.charge(encodeCost); err != nil {
		return "", err
	}
	der, err := encoder(fn, certs, "", pass).EncodeTrustStore(cs, pass)
	if err != nil {
		return "", &funcError{fn + ": the certificates cannot be written as PKCS#12 (a password with a NUL)"}
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// encodingKey, when set, makes the *ToPkcs12 functions deterministic: the
// salts and IVs of an archive are drawn from an HMAC of its inputs under
// this key rather than from crypto/rand, so the same inputs render the
// same archive, and a refresh with unchanged values does not rewrite the
// Secret (and restart its rollout targets) because salts changed. Unknown
// to tenants, the key makes the salts as unpredictable as random ones; two
// different inputs never share them.
var encodingKey atomic.Pointer[[]byte]

// SetEncodingKey sets the key above; veil-syncer derives it from its HMAC
// key, which every replica shares. Without it, salts are random.
func SetEncodingKey(key []byte) {
	k := bytes.Clone(key)
	encodingKey.Store(&k)
}

func encoder(fn, a, b, pass string) *gopkcs12.Encoder {
	k := encodingKey.Load()
	if k == nil {
		return gopkcs12.Modern.WithRand(rand.Reader)
	}
	m := hmac.New(sha256.New, *k)
	for _, s := range []string{"veil pkcs12 salts v1", fn, a, b, pass} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		m.Write(n[:])
		m.Write([]byte(s))
	}
	return gopkcs12.Modern.WithRand(&hmacStream{seed: m.Sum(nil)})
}

// hmacStream is HMAC-SHA256(seed, counter) for counter 0, 1, ...: a
// deterministic stream, unpredictable without the seed.
type hmacStream struct {
	seed []byte
	n    uint64
	buf  []byte
}

func (s *hmacStream) Read(p []byte) (int, error) {
	for i := range p {
		if len(s.buf) == 0 {
			m := hmac.New(sha256.New, s.seed)
			var c [8]byte
			binary.BigEndian.PutUint64(c[:], s.n)
			s.n++
			m.Write(c[:])
			s.buf = m.Sum(nil)
		}
		p[i], s.buf = s.buf[0], s.buf[1:]
	}
	return len(p), nil
}

var _ io.Reader = (*hmacStream)(nil)

// certSANs lists the subject alternative names of the first certificate
// of s: DNS names, IP addresses, email addresses, URIs, in that order.
func certSANs(s string) ([]string, error) {
	const fn = "certSANs"
	if len(s) > maxArchiveBytes {
		return nil, tooBig(fn)
	}
	// As ESO, text before the first PEM block is ignored.
	if i := strings.Index(s, "-----BEGIN"); i > 0 {
		s = s[i:]
	}
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, &funcError{fn + ": the input is not PEM"}
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, &funcError{fn + ": the first PEM block is not a valid X.509 certificate"}
	}
	out := make([]string, 0, len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses)+len(c.URIs))
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	out = append(out, c.EmailAddresses...)
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out, nil
}

// jwkPem returns a JSON Web Key's public key as PKIX "PUBLIC KEY" PEM, or
// its private key as PKCS#8 "PRIVATE KEY" PEM.
func jwkPem(sp spender, fn, s string, private bool) (string, error) {
	if len(s) > maxArchiveBytes {
		return "", tooBig(fn)
	}
	// An RSA key's numbers are checked before go-jose builds (and
	// validates) a key from them.
	bits, err := jwkRSASize(s)
	if err != nil {
		return "", &funcError{fn + ": " + err.Error()}
	}
	if err := sp.charge(rsaCost(bits)); err != nil {
		return "", err
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON([]byte(s)); err != nil {
		return "", &funcError{fn + ": the input is not a JSON Web Key Veil can read (RSA, EC or OKP)"}
	}
	if private {
		if k.IsPublic() {
			return "", &funcError{fn + ": the JSON Web Key has no private part"}
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.Key)
		if err != nil {
			return "", &funcError{fn + ": the key is of a kind PKCS#8 cannot hold"}
		}
		return pemBlock("PRIVATE KEY", der), nil
	}
	pub := k.Key
	if !k.IsPublic() {
		pub = k.Public().Key
	}
	switch pub.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return "", &funcError{fn + ": the JSON Web Key is not an RSA, EC or OKP key"}
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", &funcError{fn + ": the key is of a kind PKIX cannot hold"}
	}
	return pemBlock("PUBLIC KEY", der), nil
}

// jwkRSASize refuses a JWK with an RSA number (n, e, d, p, q, dp, dq, qi)
// longer than an 8192-bit key's. It reads every member of the object, in
// any case and however often repeated, so no spelling that go-jose's JSON
// decoder would take can slip a larger number past it.
func jwkRSASize(s string) (int, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, errors.New("the input is not a JSON Web Key")
	}
	bits := 0
	// base64url of maxRSABits/8+1 bytes, and the quotes.
	limit := base64.RawURLEncoding.EncodedLen(maxRSABits/8+1) + 2
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return 0, errors.New("the input is not a JSON Web Key")
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, errors.New("the input is not a JSON Web Key")
		}
		switch strings.ToLower(name) {
		case "n", "e", "d", "p", "q", "dp", "dq", "qi":
			if len(v) > limit {
				return 0, fmt.Errorf("the RSA key is larger than %d bits", maxRSABits)
			}
			if strings.ToLower(name) == "n" {
				bits = max(bits, base64.RawURLEncoding.DecodedLen(len(v)-2)*8)
			}
		}
	}
	return bits, nil
}

// rsaDecrypt decrypts ciphertext with an RSA private key in PEM, as ESO:
// `rsaDecrypt "RSA-OAEP" "SHA256" .ciphertext .key`, or with the key piped
// in last. Scheme "None" returns the ciphertext as it is.
func rsaDecrypt(sp spender, scheme, hashName, ciphertext, key string) (string, error) {
	const fn = "rsaDecrypt"
	switch scheme {
	case "None":
		return ciphertext, nil
	case "RSA-OAEP":
	default:
		return "", &funcError{fn + `: the scheme is none of "None" and "RSA-OAEP"`}
	}
	var h crypto.Hash
	switch hashName {
	case "SHA1":
		h = crypto.SHA1
	case "SHA256":
		h = crypto.SHA256
	case "SHA512":
		h = crypto.SHA512
	default:
		return "", &funcError{fn + `: the hash is none of "SHA1", "SHA256" and "SHA512"`}
	}
	if len(ciphertext) > maxArchiveBytes {
		return "", tooBig(fn)
	}
	k, err := pemKey(sp, fn, key)
	if err != nil {
		return "", err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return "", &funcError{fn + ": the key is not an RSA private key"}
	}
	out, err := rsa.DecryptOAEP(h.New(), nil, rk, []byte(ciphertext), nil)
	if err != nil {
		return "", &funcError{fn + ": the ciphertext does not decrypt with this key, scheme and hash"}
	}
	return string(out), nil
}
