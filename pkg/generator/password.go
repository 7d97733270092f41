// Package generator generates values for PushSecrets that name a generator
// (spec.selector.generatorRef) instead of a Secret.
package generator

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

const (
	lower  = "abcdefghijklmnopqrstuvwxyz"
	upper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	digits = "0123456789"
	// DefaultKey is the key a Password generates when spec.secretKeys is unset.
	DefaultKey = "password"
)

// Passwords generates one password for each key of spec (secretKeys, or
// "password"), with External Secrets Operator's meaning of each field. Every
// choice is made with crypto/rand, uniformly. The errors name fields and
// counts, never a generated character.
func Passwords(spec configv1alpha1.PasswordSpec) (map[string][]byte, error) {
	keys := spec.SecretKeys
	if len(keys) == 0 {
		keys = []string{DefaultKey}
	}
	if len(keys) > configv1alpha1.MaxPasswordKeys {
		return nil, fmt.Errorf("secretKeys lists %d keys, more than %d", len(keys), configv1alpha1.MaxPasswordKeys)
	}
	out := make(map[string][]byte, len(keys))
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("secretKeys holds an empty key")
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("secretKeys holds %q twice", k)
		}
		p, err := Password(spec)
		if err != nil {
			return nil, err
		}
		out[k], err = encode(p, spec.Encoding)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Password generates one password of spec, not encoded: exactly digits
// digits, exactly symbols symbols, letters for the rest, in a uniformly
// random order; without allowRepeat no character appears twice.
func Password(spec configv1alpha1.PasswordSpec) ([]byte, error) {
	length := int(spec.Length)
	if length == 0 {
		length = 24 // the default, for a spec not defaulted by kube-apiserver
	}
	if length < 0 || length > configv1alpha1.MaxPasswordLength {
		return nil, fmt.Errorf("length %d is not between 1 and %d", length, configv1alpha1.MaxPasswordLength)
	}
	nDigits, nSymbols := length/4, length/4
	if spec.Digits != nil {
		nDigits = int(*spec.Digits)
	}
	if spec.Symbols != nil {
		nSymbols = int(*spec.Symbols)
	}
	if nDigits < 0 || nSymbols < 0 || nDigits+nSymbols > length {
		return nil, fmt.Errorf("digits (%d) and symbols (%d) must be at least 0 and together at most length (%d)", nDigits, nSymbols, length)
	}
	letters := lower
	if !spec.NoUpper {
		letters += upper
	}
	symbols, err := symbolSet(spec.SymbolCharacters)
	if err != nil {
		return nil, err
	}
	nLetters := length - nDigits - nSymbols
	if !spec.AllowRepeat {
		for _, c := range []struct {
			what     string
			n        int
			from     string
			fieldFix string
		}{{"letters", nLetters, letters, "length"}, {"digits", nDigits, digits, "digits"}, {"symbols", nSymbols, symbols, "symbols or add symbolCharacters"}} {
			if c.n > len(c.from) {
				return nil, fmt.Errorf("without allowRepeat a password holds at most %d %s, not %d: lower %s, or set allowRepeat: true", len(c.from), c.what, c.n, c.fieldFix)
			}
		}
	}
	if nSymbols > 0 && len(symbols) == 0 {
		return nil, fmt.Errorf("symbols is %d but there are no symbolCharacters", nSymbols)
	}
	out := make([]byte, 0, length)
	for _, c := range []struct {
		n    int
		from string
	}{{nLetters, letters}, {nDigits, digits}, {nSymbols, symbols}} {
		chosen, err := choose(c.from, c.n, spec.AllowRepeat)
		if err != nil {
			return nil, err
		}
		out = append(out, chosen...)
	}
	// A uniform shuffle puts the classes in a uniformly random order.
	for i := len(out) - 1; i > 0; i-- {
		j, err := uniform(i + 1)
		if err != nil {
			return nil, err
		}
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// symbolSet is symbolCharacters (the default when unset or empty), each
// character once, checked to be ASCII punctuation: the CRD schema's rule,
// checked again for a spec that did not pass through kube-apiserver.
func symbolSet(s *string) (string, error) {
	if s == nil || *s == "" {
		return configv1alpha1.DefaultPasswordSymbols, nil
	}
	if len(*s) > 32 {
		return "", fmt.Errorf("symbolCharacters is %d bytes, more than 32", len(*s))
	}
	var b strings.Builder
	for i := 0; i < len(*s); i++ {
		c := (*s)[i]
		if c < '!' || c > '~' || isAlnum(c) {
			return "", fmt.Errorf("symbolCharacters may hold only ASCII punctuation; character %d is not", i+1)
		}
		if !strings.ContainsRune(b.String(), rune(c)) {
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// choose picks n characters of from uniformly: with repeats, each on its
// own; without, n distinct ones (a partial Fisher-Yates shuffle).
func choose(from string, n int, repeat bool) ([]byte, error) {
	out := make([]byte, n)
	if repeat {
		for i := range out {
			j, err := uniform(len(from))
			if err != nil {
				return nil, err
			}
			out[i] = from[j]
		}
		return out, nil
	}
	pool := []byte(from)
	for i := range out {
		j, err := uniform(len(pool) - i)
		if err != nil {
			return nil, err
		}
		pool[i], pool[i+j] = pool[i+j], pool[i]
		out[i] = pool[i]
	}
	return out, nil
}

// uniform is a uniformly random int in [0, n), from crypto/rand (which
// rejects rather than reduces modulo n, so nothing is biased).
func uniform(n int) (int, error) {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		return 0, fmt.Errorf("reading random bytes: %w", err)
	}
	return int(v.Int64()), nil
}

func encode(p []byte, encoding *string) ([]byte, error) {
	e := "raw"
	if encoding != nil && *encoding != "" {
		e = *encoding
	}
	switch e {
	case "raw":
		return p, nil
	case "base64":
		return []byte(base64.StdEncoding.EncodeToString(p)), nil
	case "base64url":
		return []byte(base64.URLEncoding.EncodeToString(p)), nil
	case "base32":
		return []byte(base32.StdEncoding.EncodeToString(p)), nil
	case "hex":
		return []byte(hex.EncodeToString(p)), nil
	}
	return nil, fmt.Errorf("encoding %q is not one of raw, base64, base64url, base32, hex", e)
}
