package resolve

import (
	"strings"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

const canary = "v4lue-canary"

func TestProperty(t *testing.T) {
	doc := []byte(`{"user":"app","password":"` + canary + `","port":5432,"nested":{"a":{"b":"deep"}},"a.b":"dotted","obj":{"x":1},"n":null,"big":123456789012345678,"nums":{"f":1.50,"e":1e400}}`)
	cases := []struct{ prop, want string }{
		{"user", "app"},
		{"password", canary},
		{"port", "5432"},
		{"nested.a.b", "deep"},
		{"a.b", "dotted"}, // a key with a dot wins over descending
		{"obj", `{"x":1}`},
		{"n", "null"},
		{"big", "123456789012345678"},    // not 123456789012345680, as float64 would give
		{"nums", `{"f":1.50,"e":1e400}`}, // numbers inside objects keep their text too
	}
	for _, c := range cases {
		got, err := property(doc, c.prop, "db")
		if err != nil || string(got) != c.want {
			t.Errorf("property %q = %q, %v; want %q", c.prop, got, err, c.want)
		}
	}
	for _, prop := range []string{"missing", "nested.a.c", "user.x"} {
		_, err := property(doc, prop, "db")
		if providers.ReasonOf(err) != providers.NotFound || !strings.Contains(err.Error(), `property "`+prop+`" does not exist in remote key "db"`) {
			t.Errorf("property %q: %v, want NotFound naming it", prop, err)
		}
	}
	// encoding/json quotes the input in its errors: none may reach the user.
	_, err := property([]byte("x"+canary), "p", "db")
	if providers.ReasonOf(err) != providers.Invalid || strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), "invalid character") {
		t.Errorf("not JSON: %v", err)
	}
}

func TestFields(t *testing.T) {
	got, err := fields([]byte(`{"a":"x","b":12345678901234567890,"c":true,"d":{"e":"f"}}`), "k")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "x", "b": "12345678901234567890", "c": "true", "d": `{"e":"f"}`}
	if len(got) != len(want) {
		t.Errorf("got %d fields, want %d", len(got), len(want))
	}
	for k, w := range want {
		if string(got[k]) != w {
			t.Errorf("field %s = %q, want %q", k, got[k], w)
		}
	}
	for _, bad := range []string{`["a"]`, `"` + canary + `"`, canary, `null`} {
		_, err := fields([]byte(bad), "k")
		if providers.ReasonOf(err) != providers.Invalid || strings.Contains(err.Error(), canary) {
			t.Errorf("fields(%s): %v, want Invalid without the value", bad, err)
		}
	}
}

func TestDecode(t *testing.T) {
	cases := []struct {
		in       string
		strategy configv1alpha1.DecodingStrategy
		want     string
		fails    bool
	}{
		{"aGVsbG8=", "", "aGVsbG8=", false},
		{"aGVsbG8=", configv1alpha1.DecodeNone, "aGVsbG8=", false},
		{"aGVsbG8=\n", configv1alpha1.DecodeBase64, "hello", false},
		{"_-8=", configv1alpha1.DecodeBase64URL, "\xff\xef", false},
		{"_-8=", configv1alpha1.DecodeBase64, "", true},
		{canary + "!", configv1alpha1.DecodeBase64, "", true},
		{"aGVsbG8=", configv1alpha1.DecodeAuto, "hello", false},
		{"aGk_Pz8-", configv1alpha1.DecodeAuto, "hi???>", false},
		// Unpadded base64 is left as it is, as ESO does: "abcdef" is far
		// more likely a plain value than an encoded one.
		{"aGVsbG8", configv1alpha1.DecodeAuto, "aGVsbG8", false},
		{"abcdef", configv1alpha1.DecodeAuto, "abcdef", false},
		{"not base64!", configv1alpha1.DecodeAuto, "not base64!", false},
		{"x", "Rot13", "", true},
	}
	for _, c := range cases {
		got, err := decode([]byte(c.in), c.strategy, `remote key "k"`)
		if c.fails {
			if providers.ReasonOf(err) != providers.Invalid || strings.Contains(err.Error(), canary) {
				t.Errorf("decode(%q, %s): %v, want Invalid without the value", c.in, c.strategy, err)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("decode(%q, %s) = %q, %v; want %q", c.in, c.strategy, got, err, c.want)
		}
	}
}

func TestFoundKeysCollideDeterministically(t *testing.T) {
	found := map[string]providers.Value{"a/b": {}, "a_b": {}, "/a/b/": {}, "c": {}}
	// Map order differs from run to run: the answer must not.
	for range 50 {
		keys, dropped := foundKeys(found)
		if len(keys) != 2 || keys["/a/b/"] != "a_b" || keys["c"] != "c" {
			t.Fatalf("keys = %v: want /a/b/ (first in byte order) as a_b, and c", keys)
		}
		if len(dropped) != 2 || !strings.Contains(dropped[0], `"a/b"`) || !strings.Contains(dropped[1], `"a_b"`) {
			t.Fatalf("dropped = %v: want a/b then a_b, each naming the winner", dropped)
		}
	}
}

func TestSecretKeyFor(t *testing.T) {
	for in, want := range map[string]string{
		"app/db/password":  "app_db_password",
		"/leading/":        "leading",
		"ok-key_1.x":       "ok-key_1.x",
		"with space:colon": "with_space_colon",
	} {
		if got := secretKeyFor(in); got != want {
			t.Errorf("secretKeyFor(%q) = %q, want %q", in, got, want)
		}
	}
}
