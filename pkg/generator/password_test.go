package generator

import (
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

func ptr[T any](v T) *T { return &v }

func count(p []byte, set string) int {
	n := 0
	for _, c := range p {
		if strings.IndexByte(set, c) >= 0 {
			n++
		}
	}
	return n
}

// ESO's rotation example (docs/snippets/pushsecret-generator-rotation-example.yaml).
func TestPasswordClasses(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		spec                      configv1alpha1.PasswordSpec
		letters, digits, symbols  int
		symbolSet                 string
		wantNoUpper, wantDistinct bool
	}{
		{"eso rotation example", configv1alpha1.PasswordSpec{Length: 128, Digits: ptr[int32](5), Symbols: ptr[int32](5), SymbolCharacters: ptr("-_$@"), AllowRepeat: true},
			118, 5, 5, "-_$@", false, false},
		{"defaults", configv1alpha1.PasswordSpec{Length: 24}, 12, 6, 6, configv1alpha1.DefaultPasswordSymbols, false, true},
		{"unset length is 24", configv1alpha1.PasswordSpec{}, 12, 6, 6, configv1alpha1.DefaultPasswordSymbols, false, true},
		{"noUpper", configv1alpha1.PasswordSpec{Length: 30, Digits: ptr[int32](2), Symbols: ptr[int32](2), NoUpper: true}, 26, 2, 2, configv1alpha1.DefaultPasswordSymbols, true, true},
		{"empty symbolCharacters is the default", configv1alpha1.PasswordSpec{Length: 10, SymbolCharacters: ptr("")}, 6, 2, 2, configv1alpha1.DefaultPasswordSymbols, false, true},
		{"only digits", configv1alpha1.PasswordSpec{Length: 10, Digits: ptr[int32](10), Symbols: ptr[int32](0)}, 0, 10, 0, "", false, true},
		{"maximum length", configv1alpha1.PasswordSpec{Length: configv1alpha1.MaxPasswordLength, AllowRepeat: true}, 512, 256, 256, configv1alpha1.DefaultPasswordSymbols, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 50 {
				p, err := Password(tc.spec)
				if err != nil {
					t.Fatal(err)
				}
				letters := count(p, lower+upper)
				if len(p) != tc.letters+tc.digits+tc.symbols || letters != tc.letters || count(p, digits) != tc.digits || count(p, tc.symbolSet) != tc.symbols {
					t.Fatalf("got %d characters: %d letters, %d digits, %d symbols of the set; want %d, %d, %d", len(p), letters, count(p, digits), count(p, tc.symbolSet), tc.letters, tc.digits, tc.symbols)
				}
				if tc.wantNoUpper && count(p, upper) != 0 {
					t.Fatalf("upper case letters despite noUpper")
				}
				if tc.wantDistinct {
					seen := map[byte]bool{}
					for _, c := range p {
						if seen[c] {
							t.Fatalf("a character repeats without allowRepeat")
						}
						seen[c] = true
					}
				}
			}
		})
	}
}

func TestPasswordRefusesImpossibleSpecs(t *testing.T) {
	for name, spec := range map[string]configv1alpha1.PasswordSpec{
		"digits+symbols over length": {Length: 4, Digits: ptr[int32](3), Symbols: ptr[int32](2)},
		"too long":                   {Length: configv1alpha1.MaxPasswordLength + 1, AllowRepeat: true},
		"negative":                   {Length: -1},
		"11 distinct digits":         {Length: 11, Digits: ptr[int32](11), Symbols: ptr[int32](0)},
		"53 distinct letters":        {Length: 53, Digits: ptr[int32](0), Symbols: ptr[int32](0)},
		"27 letters noUpper":         {Length: 27, Digits: ptr[int32](0), Symbols: ptr[int32](0), NoUpper: true},
		"more symbols than set":      {Length: 5, Digits: ptr[int32](0), Symbols: ptr[int32](3), SymbolCharacters: ptr("-__")},
		"letters in symbols":         {Length: 5, SymbolCharacters: ptr("-a")},
		"space in symbols":           {Length: 5, SymbolCharacters: ptr("- ")},
		"non-ASCII in symbols":       {Length: 5, SymbolCharacters: ptr("-\xc3\xa9")},
		"long symbols":               {Length: 5, SymbolCharacters: ptr(strings.Repeat("-", 33))},
		"bad encoding":               {Length: 5, Encoding: ptr("rot13")},
	} {
		if _, err := Passwords(spec); err == nil {
			t.Errorf("%s: generated a password", name)
		}
	}
	if _, err := Passwords(configv1alpha1.PasswordSpec{Length: 5, SecretKeys: []string{"a", "a"}}); err == nil {
		t.Errorf("duplicate secretKeys: generated")
	}
}

func TestPasswordsKeysAndEncodings(t *testing.T) {
	out, err := Passwords(configv1alpha1.PasswordSpec{Length: 36, SecretKeys: []string{"key1", "key2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || len(out["key1"]) != 36 || len(out["key2"]) != 36 || string(out["key1"]) == string(out["key2"]) {
		t.Fatalf("want two distinct 36-character passwords under key1 and key2, got keys %d", len(out))
	}
	out, err = Passwords(configv1alpha1.PasswordSpec{Length: 8})
	if err != nil || len(out) != 1 || len(out[DefaultKey]) != 8 {
		t.Fatalf("default key: %v, %d keys", err, len(out))
	}
	for enc, decode := range map[string]func(string) ([]byte, error){
		"hex":       hex.DecodeString,
		"base64":    base64.StdEncoding.DecodeString,
		"base64url": base64.URLEncoding.DecodeString,
		"base32":    base32.StdEncoding.DecodeString,
		"raw":       func(s string) ([]byte, error) { return []byte(s), nil },
	} {
		out, err := Passwords(configv1alpha1.PasswordSpec{Length: 16, Encoding: ptr(enc)})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := decode(string(out[DefaultKey]))
		if err != nil || len(raw) != 16 || count(raw, lower+upper) != 8 || count(raw, digits) != 4 {
			t.Fatalf("%s: does not decode to a 16-character password: %v", enc, err)
		}
	}
}

// TestPasswordUniform checks, over many passwords, that each character of
// a class and each position are chosen about equally often. The bounds are
// 6 standard deviations wide: a correct generator fails one in ~10^8 runs,
// while a modulo bias or a fixed order fails every time.
func TestPasswordUniform(t *testing.T) {
	const runs = 4000
	spec := configv1alpha1.PasswordSpec{Length: 20, Digits: ptr[int32](4), Symbols: ptr[int32](4), SymbolCharacters: ptr("-_$@"), AllowRepeat: true}
	chars := map[byte]int{}
	digitAt := make([]int, 20)
	for range runs {
		p, err := Password(spec)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range p {
			chars[c]++
			if c >= '0' && c <= '9' {
				digitAt[i]++
			}
		}
	}
	check := func(what string, got int, n int, prob float64) {
		t.Helper()
		mean := float64(n) * prob
		sd := math.Sqrt(float64(n) * prob * (1 - prob))
		if math.Abs(float64(got)-mean) > 6*sd {
			t.Errorf("%s: %d, expected %.0f ± %.0f", what, got, mean, 6*sd)
		}
	}
	for _, c := range []byte(lower + upper) {
		check("letter "+string(c), chars[c], runs*12, 1.0/52)
	}
	for _, c := range []byte(digits) {
		check("digit "+string(c), chars[c], runs*4, 1.0/10)
	}
	for _, c := range []byte("-_$@") {
		check("symbol "+string(c), chars[c], runs*4, 1.0/4)
	}
	for i, n := range digitAt {
		check(fmt.Sprintf("digits at position %d", i), n, runs, 4.0/20)
	}
}
