package resolve

import (
	"bytes"
	"strings"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

// FuzzProperty: any remote value and property path give a value or a typed
// error, never a panic, and an error never carries the remote value.
func FuzzProperty(f *testing.F) {
	for _, seed := range []struct{ data, prop string }{
		{`{"a":{"b":"c"}}`, "a.b"},
		{`{"a.b":1,"a":{"b":2}}`, "a.b"},
		{`{"n":123456789012345678}`, "n"},
		{`{"x":"\u00e9\ud83d\ude00"}`, "x"},
		{`[1,2]`, "0"},
		{`{"a":null}`, "a.b"},
		{`{"a":{"b":{"c":{"d":[{"e":1}]}}}}`, "a.b.c.d"},
		{`not json`, "p"},
		{`{"a":1} {"b":2}`, "a"},
		{`{"":{"":""}}`, "."},
	} {
		f.Add([]byte(seed.data), seed.prop)
	}
	f.Fuzz(func(t *testing.T, data []byte, prop string) {
		if prop == "" {
			return
		}
		got, err := property(data, prop, "k")
		if err != nil {
			if r := providers.ReasonOf(err); r != providers.Invalid && r != providers.NotFound {
				t.Fatalf("reason %q for %v", r, err)
			}
			// The error names the property the spec asked for, which is no
			// secret; when the value is part of it by chance, its presence
			// proves nothing.
			if len(data) > 8 && !strings.Contains(prop, string(data)) && strings.Contains(err.Error(), string(data)) {
				t.Fatalf("the error carries the value: %v", err)
			}
			return
		}
		if again, _ := property(data, prop, "k"); !bytes.Equal(got, again) {
			t.Fatalf("property %q is not deterministic", prop)
		}
	})
}

// FuzzFieldsAndDecode: extract and every decoding strategy on any input.
func FuzzFieldsAndDecode(f *testing.F) {
	for _, seed := range []string{`{"a":"YWJj","b":1.0,"c":{"d":true}}`, `{"a":"!!"}`, `{}`, `[]`, `"x"`, `{"a":"YWJj"`} {
		f.Add([]byte(seed))
	}
	strategies := []configv1alpha1.DecodingStrategy{"", configv1alpha1.DecodeNone, configv1alpha1.DecodeBase64, configv1alpha1.DecodeBase64URL, configv1alpha1.DecodeAuto, "Unknown"}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := fields(data, "k")
		if err != nil {
			if providers.ReasonOf(err) != providers.Invalid {
				t.Fatalf("fields: %v", err)
			}
			return
		}
		for k, v := range fs {
			for _, s := range strategies {
				if _, err := decode(v, s, "field "+k); err != nil && providers.ReasonOf(err) != providers.Invalid {
					t.Fatalf("decode %s: %v", s, err)
				}
			}
		}
	})
}

// FuzzFoundKeys: whatever keys a find returns, every Secret key is valid,
// held by one remote key, and the choice does not depend on map order.
func FuzzFoundKeys(f *testing.F) {
	f.Add("a/b", "a_b", "/a/b/")
	f.Add("x", "x/", "y")
	f.Add("é/ü", "__", "_")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		found := map[string]providers.Value{a: {}, b: {}, c: {}}
		first, _ := foundKeys(found)
		again, _ := foundKeys(found)
		seen := map[string]string{}
		for remote, sk := range first {
			if again[remote] != sk {
				t.Fatalf("%q maps to %q, then %q", remote, sk, again[remote])
			}
			if other, dup := seen[sk]; dup {
				t.Fatalf("%q and %q both hold Secret key %q", remote, other, sk)
			}
			seen[sk] = remote
			if invalidKeyChars.MatchString(sk) {
				t.Fatalf("Secret key %q from %q has invalid characters", sk, remote)
			}
		}
	})
}

// FuzzRewriteKeys: whatever a tenant writes as a rewrite and whatever
// names a provider returns, the result is an Invalid error or Secret keys
// that are valid, each held by one name, the same on every run.
func FuzzRewriteKeys(f *testing.F) {
	f.Add(`^path/(.*)$`, "$1", `{{ .value | upper }}`, "path/a", "path/b", "a")
	f.Add(`[^a-z]`, "_", `{{ printf "%s-x" .value }}`, "A/B", "a_b", "é")
	f.Add(`(`, "", `{{`, "x", "y", "z")
	f.Fuzz(func(t *testing.T, source, target, transform, a, b, c string) {
		entry := configv1alpha1.ExternalSecretDataFromRemoteRef{
			Find: &configv1alpha1.ExternalSecretFind{},
			Rewrite: []configv1alpha1.ExternalSecretRewrite{
				{Regexp: &configv1alpha1.RewriteRegexp{Source: source, Target: target}},
				{Transform: &configv1alpha1.RewriteTransform{Template: transform}},
			},
		}
		n, err := newKeyNamer(template.NewBudget(), 0, entry)
		var keys map[string]string
		if err == nil {
			keys, _, err = n.secretKeys([]string{a, b, c})
		}
		if err != nil {
			if providers.ReasonOf(err) != providers.Invalid {
				t.Fatalf("error %v is not Invalid", err)
			}
			return
		}
		again, _, err := n.secretKeys([]string{c, b, a})
		if err != nil || len(again) != len(keys) {
			t.Fatalf("second run: %v, %v then %v", err, keys, again)
		}
		seen := map[string]string{}
		for name, sk := range keys {
			if again[name] != sk {
				t.Fatalf("%q maps to %q, then %q", name, sk, again[name])
			}
			if other, dup := seen[sk]; dup {
				t.Fatalf("%q and %q both hold Secret key %q", name, other, sk)
			}
			seen[sk] = name
			if !validSecretKey.MatchString(sk) || len(sk) > maxSecretKeyLength {
				t.Fatalf("Secret key %q from %q is invalid", sk, name)
			}
		}
	})
}
