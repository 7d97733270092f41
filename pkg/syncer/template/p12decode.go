package template

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"hash"
	"unicode/utf16"
)

// A PKCS#12 archive names, in itself, how many times each of its keys is
// derived from the password: for its MAC, for each encrypted part, and for
// each encrypted private key, some of which are only visible once the part
// holding them is decrypted. A library that derives as it reads would run
// whatever count an archive's author wrote (2^31 holds a core for many
// minutes, and the template budget's clock is only read between calls), so
// Veil reads archives itself: every count is checked before its derivation,
// against a bound per derivation and a bound for the whole archive. The
// ciphers are those of RFC 7292 and RFC 8018 that real tools write:
// 3DES and RC2 with the PKCS#12 key derivation, AES-CBC with PBKDF2.
const (
	// maxKDFIterations bounds one derivation's iteration count. OpenSSL 3,
	// go-pkcs12 and .NET write 2048, Windows 2000, Java (since 12) 10000;
	// ten times Java's leaves room for a stronger choice.
	maxKDFIterations = 100_000
	// maxKDFWork bounds the hash iterations of all the derivations of one
	// call (an iteration count times the blocks derived with it): tens of
	// milliseconds of CPU, and several times what any real archive costs.
	maxKDFWork = 400_000
	// maxArchiveBytes bounds an archive, a JWK and a PEM input.
	maxArchiveBytes = 256 << 10
	// maxBags bounds the bags of an archive; certificates are bounded
	// further by maxChainCertificates.
	maxBags = 128
)

var (
	oidData            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEncryptedData   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidKeyBag          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 1}
	oidShroudedKeyBag  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidCertBag         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 3}
	oidX509Certificate = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 22, 1}

	oidPBE3DES     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}
	oidPBERC2128   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 5}
	oidPBERC240    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 6}
	oidPBES2       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidPBMAC1      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 14}
	oidHMACSHA1    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA256  = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA512  = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC   = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC   = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC   = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDigestSHA1  = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidDigestSHA2  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidDigestSHA5  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidRSAEncrypt  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	errP12Password = errors.New("wrong password")
)

// The structures of RFC 7292, as far as Veil reads them.
type p12PFX struct {
	Version  int
	AuthSafe p12ContentInfo
	MacData  p12MacData `asn1:"optional"`
}

type p12ContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
}

type p12MacData struct {
	Mac struct {
		Algorithm pkix.AlgorithmIdentifier
		Digest    []byte
	}
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

type p12EncryptedData struct {
	Version int
	Info    struct {
		ContentType asn1.ObjectIdentifier
		Algorithm   pkix.AlgorithmIdentifier
		Content     []byte `asn1:"tag:0,optional"`
	}
}

type p12SafeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue `asn1:"tag:0,explicit"`
	Attributes asn1.RawValue `asn1:"optional"`
}

type p12CertBag struct {
	ID   asn1.ObjectIdentifier
	Data []byte `asn1:"tag:0,explicit"`
}

type p12EncryptedKey struct {
	Algorithm pkix.AlgorithmIdentifier
	Data      []byte
}

type p12PBEParams struct {
	Salt       []byte
	Iterations int
}

type p12PBES2Params struct {
	KDF        pkix.AlgorithmIdentifier
	Encryption pkix.AlgorithmIdentifier
}

type p12PBKDF2Params struct {
	Salt       asn1.RawValue
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

type p12PBMAC1Params struct {
	KDF pkix.AlgorithmIdentifier
	MAC pkix.AlgorithmIdentifier
}

// p12Contents is what an archive holds.
type p12Contents struct {
	keys  []any
	certs []*x509.Certificate
}

// p12Reader reads one archive with one password, counting the work of its
// derivations.
type p12Reader struct {
	spend spender
	bmp   []byte // the password as RFC 7292's BMPString, zero-terminated
	utf8  []byte // the password as PBES2 and PBMAC1 take it
	work  int64
}

// errP12Bound is an archive over Veil's bounds; its message is ours.
type errP12Bound struct{ msg string }

func (e *errP12Bound) Error() string { return e.msg }

// charge refuses a derivation of iterations over blocks before it runs.
func (r *p12Reader) charge(iterations, blocks int) error {
	if iterations < 1 {
		return errors.New("an iteration count below 1")
	}
	if iterations > maxKDFIterations {
		return &errP12Bound{"a key derivation's iteration count is over Veil's bound of 100000"}
	}
	n := int64(iterations) * int64(blocks)
	r.work += n
	if r.work > maxKDFWork {
		return &errP12Bound{"its key derivations together are over Veil's bound of 400000 hash iterations"}
	}
	// The render's budget pays for it too, before it runs.
	return r.spend.charge(n * kdfCost)
}

func unmarshalAll(der []byte, v any) error {
	rest, err := asn1.Unmarshal(der, v)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return errors.New("trailing data")
	}
	return nil
}

// decodeP12 reads the keys and certificates of an archive, charging sp for
// its derivations and keys before running them. Every error is
// errP12Password, *errP12Bound, the budget's, or a description of the
// structure, none of which quotes the archive.
func decodeP12(sp spender, der []byte, password string) (*p12Contents, error) {
	if len(der) > maxArchiveBytes {
		return nil, &errP12Bound{"the archive is larger than 256 KiB"}
	}
	r := &p12Reader{spend: sp, utf8: []byte(password)}
	u := utf16.Encode([]rune(password))
	r.bmp = make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		r.bmp = append(r.bmp, byte(c>>8), byte(c))
	}
	r.bmp = append(r.bmp, 0, 0)

	var pfx p12PFX
	if err := unmarshalAll(der, &pfx); err != nil {
		return nil, errors.New("not PKCS#12")
	}
	if pfx.Version != 3 || !pfx.AuthSafe.ContentType.Equal(oidData) {
		return nil, errors.New("not a password-protected PKCS#12 archive of version 3")
	}
	var authSafe []byte
	if err := unmarshalAll(pfx.AuthSafe.Content.Bytes, &authSafe); err != nil {
		return nil, errors.New("not PKCS#12")
	}
	if len(pfx.MacData.Mac.Algorithm.Algorithm) == 0 {
		// No MAC: only an archive with no password, as go-pkcs12 reads.
		if password != "" {
			return nil, errP12Password
		}
	} else {
		ok, err := r.verifyMAC(&pfx.MacData, authSafe)
		if err == nil && !ok && password == "" {
			// Some tools write the empty password as no bytes at all
			// rather than an empty BMPString.
			r.bmp = nil
			ok, err = r.verifyMAC(&pfx.MacData, authSafe)
		}
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errP12Password
		}
	}
	var parts []p12ContentInfo
	if err := unmarshalAll(authSafe, &parts); err != nil {
		return nil, errors.New("not PKCS#12")
	}
	if len(parts) > maxBags {
		return nil, &errP12Bound{"the archive has more than 128 parts"}
	}
	out := &p12Contents{}
	bags := 0
	for _, ci := range parts {
		var data []byte
		switch {
		case ci.ContentType.Equal(oidData):
			if err := unmarshalAll(ci.Content.Bytes, &data); err != nil {
				return nil, errors.New("not PKCS#12")
			}
		case ci.ContentType.Equal(oidEncryptedData):
			var ed p12EncryptedData
			if err := unmarshalAll(ci.Content.Bytes, &ed); err != nil {
				return nil, errors.New("not PKCS#12")
			}
			var err error
			if data, err = r.decrypt(ed.Info.Algorithm, ed.Info.Content); err != nil {
				return nil, err
			}
		default:
			return nil, errors.New("a part of the archive is neither data nor password-encrypted data")
		}
		var safe []p12SafeBag
		if err := unmarshalAll(data, &safe); err != nil {
			// An encrypted part that decrypts to something else: the
			// password is wrong (an archive without a MAC) or it is damaged.
			return nil, errP12Password
		}
		for _, bag := range safe {
			if bags++; bags > maxBags {
				return nil, &errP12Bound{"the archive has more than 128 bags"}
			}
			if err := r.readBag(bag, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (r *p12Reader) readBag(bag p12SafeBag, out *p12Contents) error {
	switch {
	case bag.ID.Equal(oidCertBag):
		var cb p12CertBag
		if err := unmarshalAll(bag.Value.Bytes, &cb); err != nil {
			return errors.New("a certificate bag is malformed")
		}
		if !cb.ID.Equal(oidX509Certificate) {
			return nil // SDSI certificates: not X.509, skipped
		}
		if len(out.certs) == maxChainCertificates {
			return &errP12Bound{"the archive has more than 64 certificates"}
		}
		c, err := x509.ParseCertificate(cb.Data)
		if err != nil {
			return errors.New("a certificate is not valid X.509")
		}
		out.certs = append(out.certs, c)
	case bag.ID.Equal(oidKeyBag), bag.ID.Equal(oidShroudedKeyBag):
		if len(out.keys) == 1 {
			// As go-pkcs12 (and so ESO): one key per archive.
			return errors.New("the archive has more than one private key")
		}
		der := bag.Value.Bytes
		if bag.ID.Equal(oidShroudedKeyBag) {
			var ek p12EncryptedKey
			if err := unmarshalAll(der, &ek); err != nil {
				return errors.New("an encrypted private key is malformed")
			}
			var err error
			if der, err = r.decrypt(ek.Algorithm, ek.Data); err != nil {
				return err
			}
		}
		k, err := parsePKCS8Bounded(r.spend, der)
		if err != nil {
			var b *errP12Bound
			if errors.As(err, &b) {
				return err
			}
			return errors.New("a private key is not valid PKCS#8")
		}
		out.keys = append(out.keys, k)
	}
	// Other bags (CRLs, secrets, nested contents) are skipped, as go-pkcs12
	// skips them.
	return nil
}

// verifyMAC checks the archive's MAC: the PKCS#12 derivation with the
// digest it names, or PBMAC1 (RFC 9579).
func (r *p12Reader) verifyMAC(md *p12MacData, msg []byte) (bool, error) {
	alg := md.Mac.Algorithm
	var mac []byte
	if alg.Algorithm.Equal(oidPBMAC1) {
		var p p12PBMAC1Params
		if err := unmarshalAll(alg.Parameters.FullBytes, &p); err != nil || !p.KDF.Algorithm.Equal(oidPBKDF2) {
			return false, errors.New("its PBMAC1 parameters are malformed or not PBKDF2")
		}
		var kp p12PBKDF2Params
		if err := unmarshalAll(p.KDF.Parameters.FullBytes, &kp); err != nil || kp.Salt.Tag != asn1.TagOctetString {
			return false, errors.New("its PBMAC1 parameters are malformed")
		}
		prf, err := hmacHash(kp.PRF.Algorithm)
		if err != nil {
			return false, err
		}
		h, err := hmacHash(p.MAC.Algorithm)
		if err != nil {
			return false, err
		}
		// RFC 9579: a key of at least 20 bytes, and no longer than a hash.
		if kp.KeyLength < 20 || kp.KeyLength > 64 {
			return false, errors.New("its PBMAC1 key length is outside 20 to 64 bytes")
		}
		if err := r.charge(kp.Iterations, (kp.KeyLength+prf().Size()-1)/prf().Size()); err != nil {
			return false, err
		}
		key, err := pbkdf2.Key(prf, string(r.utf8), kp.Salt.Bytes, kp.Iterations, kp.KeyLength)
		if err != nil {
			return false, errors.New("its PBMAC1 key cannot be derived")
		}
		m := hmac.New(h, key)
		m.Write(msg)
		mac = m.Sum(nil)
	} else {
		var h func() hash.Hash
		var v int
		switch {
		case alg.Algorithm.Equal(oidDigestSHA1):
			h, v = sha1.New, 64
		case alg.Algorithm.Equal(oidDigestSHA2):
			h, v = sha256.New, 64
		case alg.Algorithm.Equal(oidDigestSHA5):
			h, v = sha512.New, 128
		default:
			return false, errors.New("its MAC digest is none of SHA-1, SHA-256 and SHA-512")
		}
		if err := r.charge(md.Iterations, 1); err != nil {
			return false, err
		}
		key := p12KDF(h, v, md.MacSalt, r.bmp, md.Iterations, 3, h().Size())
		m := hmac.New(h, key)
		m.Write(msg)
		mac = m.Sum(nil)
	}
	return hmac.Equal(mac, md.Mac.Digest), nil
}

func hmacHash(oid asn1.ObjectIdentifier) (func() hash.Hash, error) {
	switch {
	case len(oid) == 0, oid.Equal(oidHMACSHA1):
		return sha1.New, nil
	case oid.Equal(oidHMACSHA256):
		return sha256.New, nil
	case oid.Equal(oidHMACSHA512):
		return sha512.New, nil
	}
	return nil, errors.New("it uses an HMAC other than SHA-1, SHA-256 and SHA-512")
}

// decrypt decrypts one encrypted part or key, after checking the count.
func (r *p12Reader) decrypt(alg pkix.AlgorithmIdentifier, data []byte) ([]byte, error) {
	var block cipher.Block
	var iv []byte
	switch {
	case alg.Algorithm.Equal(oidPBE3DES), alg.Algorithm.Equal(oidPBERC2128), alg.Algorithm.Equal(oidPBERC240):
		var p p12PBEParams
		if err := unmarshalAll(alg.Parameters.FullBytes, &p); err != nil {
			return nil, errors.New("its encryption parameters are malformed")
		}
		keyLen := 24
		if alg.Algorithm.Equal(oidPBERC2128) {
			keyLen = 16
		} else if alg.Algorithm.Equal(oidPBERC240) {
			keyLen = 5
		}
		// The key (one or two SHA-1 blocks) and the IV (one).
		if err := r.charge(p.Iterations, (keyLen+19)/20+1); err != nil {
			return nil, err
		}
		key := p12KDF(sha1.New, 64, p.Salt, r.bmp, p.Iterations, 1, keyLen)
		iv = p12KDF(sha1.New, 64, p.Salt, r.bmp, p.Iterations, 2, 8)
		if keyLen == 24 {
			block, _ = des.NewTripleDESCipher(key) // 24 bytes: cannot fail
		} else {
			block = newRC2(key, keyLen*8)
		}
	case alg.Algorithm.Equal(oidPBES2):
		var p p12PBES2Params
		if err := unmarshalAll(alg.Parameters.FullBytes, &p); err != nil || !p.KDF.Algorithm.Equal(oidPBKDF2) {
			return nil, errors.New("its PBES2 parameters are malformed or not PBKDF2")
		}
		var kp p12PBKDF2Params
		if err := unmarshalAll(p.KDF.Parameters.FullBytes, &kp); err != nil || kp.Salt.Tag != asn1.TagOctetString {
			return nil, errors.New("its PBKDF2 parameters are malformed")
		}
		prf, err := hmacHash(kp.PRF.Algorithm)
		if err != nil {
			return nil, err
		}
		var keyLen int
		switch {
		case p.Encryption.Algorithm.Equal(oidAES128CBC):
			keyLen = 16
		case p.Encryption.Algorithm.Equal(oidAES192CBC):
			keyLen = 24
		case p.Encryption.Algorithm.Equal(oidAES256CBC):
			keyLen = 32
		default:
			return nil, errors.New("its PBES2 cipher is not AES-CBC")
		}
		if err := unmarshalAll(p.Encryption.Parameters.FullBytes, &iv); err != nil || len(iv) != aes.BlockSize {
			return nil, errors.New("its AES-CBC IV is malformed")
		}
		if err := r.charge(kp.Iterations, (keyLen+prf().Size()-1)/prf().Size()); err != nil {
			return nil, err
		}
		key, err := pbkdf2.Key(prf, string(r.utf8), kp.Salt.Bytes, kp.Iterations, keyLen)
		if err != nil {
			return nil, errors.New("its key cannot be derived")
		}
		block, _ = aes.NewCipher(key) // 16, 24 or 32 bytes: cannot fail
	default:
		return nil, errors.New("it is encrypted with a cipher other than 3DES, RC2 and AES")
	}
	bs := block.BlockSize()
	if len(data) == 0 || len(data)%bs != 0 {
		return nil, errors.New("its encrypted data is not whole cipher blocks")
	}
	out := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, data)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > bs || !bytes.Equal(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, errP12Password
	}
	return out[:len(out)-pad], nil
}

// p12KDF is the key derivation of RFC 7292 appendix B.2: n bytes for the
// purpose id (1 key, 2 IV, 3 MAC key) from salt and the BMPString
// password, with hash h of block size v. The caller has checked the count.
func p12KDF(h func() hash.Hash, v int, salt, password []byte, iterations int, id byte, n int) []byte {
	u := h().Size()
	fill := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		out := make([]byte, v*((len(b)+v-1)/v))
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	d := bytes.Repeat([]byte{id}, v)
	ii := append(fill(salt), fill(password)...)
	var out []byte
	for len(out) < n {
		hh := h()
		hh.Write(d)
		hh.Write(ii)
		a := hh.Sum(nil)
		for j := 1; j < iterations; j++ {
			hh.Reset()
			hh.Write(a)
			a = hh.Sum(a[:0])
		}
		out = append(out, a...)
		if len(out) >= n {
			break
		}
		// B is A repeated to v bytes; each v-byte block of I becomes
		// (I_j + B + 1) mod 2^(8v).
		b := make([]byte, v)
		for i := range b {
			b[i] = a[i%u]
		}
		for j := 0; j < len(ii); j += v {
			carry := 1
			for k := v - 1; k >= 0; k-- {
				s := int(ii[j+k]) + int(b[k]) + carry
				ii[j+k] = byte(s)
				carry = s >> 8
			}
		}
	}
	return out[:n]
}
