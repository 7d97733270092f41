package aws

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"hash"
)

// ACM's ExportCertificate returns the private key as an encrypted PKCS#8
// document (RFC 5958 EncryptedPrivateKeyInfo) under the passphrase of the
// call, PBES2 with PBKDF2 and AES-CBC. Veil decrypts it in memory and
// returns the key as an unencrypted PKCS#8 "PRIVATE KEY" block, which is
// what External Secrets Operator hands to templates.

var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA224 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// maxPBKDF2Iterations bounds the work a response can make Veil do.
const maxPBKDF2Iterations = 1 << 22

type encryptedPrivateKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	Data      []byte
}

type pbes2Params struct {
	KeyDerivation pkix.AlgorithmIdentifier
	Encryption    pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

// errExportedKey is every failure to decrypt an exported key; which step
// failed is not worth telling apart, and no error quotes key material.
var errExportedKey = errors.New("the private key ACM exported is not an encrypted PKCS#8 key Veil can decrypt (PBES2, PBKDF2 with HMAC-SHA1 or SHA-2, AES-CBC)")

// decryptExportedKey returns the key of an "ENCRYPTED PRIVATE KEY" PEM
// block (or of an unencrypted "PRIVATE KEY" one) as a "PRIVATE KEY" block.
func decryptExportedKey(pemData, passphrase []byte) ([]byte, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errExportedKey
	}
	var der []byte
	switch block.Type {
	case "PRIVATE KEY":
		der = block.Bytes
	case "ENCRYPTED PRIVATE KEY":
		var err error
		if der, err = decryptPKCS8(block.Bytes, passphrase); err != nil {
			return nil, err
		}
	default:
		return nil, errExportedKey
	}
	// Parsed, so that a wrong passphrase whose padding happened to check
	// out is not returned as a key; re-encoded in canonical form.
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, errExportedKey
	}
	if der, err = x509.MarshalPKCS8PrivateKey(key); err != nil {
		return nil, errExportedKey
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decryptPKCS8(data, passphrase []byte) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(data, &info); err != nil || len(rest) > 0 || !info.Algorithm.Algorithm.Equal(oidPBES2) {
		return nil, errExportedKey
	}
	var params pbes2Params
	if _, err := asn1.Unmarshal(info.Algorithm.Parameters.FullBytes, &params); err != nil || !params.KeyDerivation.Algorithm.Equal(oidPBKDF2) {
		return nil, errExportedKey
	}
	var kdf pbkdf2Params
	if _, err := asn1.Unmarshal(params.KeyDerivation.Parameters.FullBytes, &kdf); err != nil || kdf.Iterations < 1 || kdf.Iterations > maxPBKDF2Iterations {
		return nil, errExportedKey
	}
	var prf func() hash.Hash
	switch a := kdf.PRF.Algorithm; {
	case len(a) == 0, a.Equal(oidHMACSHA1):
		prf = sha1.New
	case a.Equal(oidHMACSHA224):
		prf = sha256.New224
	case a.Equal(oidHMACSHA256):
		prf = sha256.New
	case a.Equal(oidHMACSHA384):
		prf = sha512.New384
	case a.Equal(oidHMACSHA512):
		prf = sha512.New
	default:
		return nil, errExportedKey
	}
	var keyLen int
	switch a := params.Encryption.Algorithm; {
	case a.Equal(oidAES128CBC):
		keyLen = 16
	case a.Equal(oidAES192CBC):
		keyLen = 24
	case a.Equal(oidAES256CBC):
		keyLen = 32
	default:
		return nil, errExportedKey
	}
	if kdf.KeyLength != 0 && kdf.KeyLength != keyLen {
		return nil, errExportedKey
	}
	var iv []byte
	if _, err := asn1.Unmarshal(params.Encryption.Parameters.FullBytes, &iv); err != nil || len(iv) != aes.BlockSize {
		return nil, errExportedKey
	}
	if len(info.Data) == 0 || len(info.Data)%aes.BlockSize != 0 {
		return nil, errExportedKey
	}
	key, err := pbkdf2.Key(prf, string(passphrase), kdf.Salt, kdf.Iterations, keyLen)
	if err != nil {
		return nil, errExportedKey
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, errExportedKey
	}
	out := make([]byte, len(info.Data))
	cipher.NewCBCDecrypter(blk, iv).CryptBlocks(out, info.Data)
	pad := int(out[len(out)-1])
	if pad < 1 || pad > aes.BlockSize {
		return nil, errExportedKey
	}
	for _, b := range out[len(out)-pad:] {
		if int(b) != pad {
			return nil, errExportedKey
		}
	}
	return out[:len(out)-pad], nil
}
