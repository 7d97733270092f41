package resolve

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// The functions here handle secret bytes. Their errors name keys and
// properties, never content: encoding/json's own errors quote the input, so
// none of them is passed on.

// property returns one field of a JSON object value; "a.b" descends into
// objects unless the object has the key "a.b" itself. A string field is
// returned as its text, anything else as JSON.
func property(data []byte, prop, key string) ([]byte, error) {
	var cur any
	if err := json.Unmarshal(data, &cur); err != nil {
		return nil, providers.Errorf(providers.Invalid, "remote key %q is not JSON, so it has no property %q; remove remoteRef.property to read it whole", key, prop)
	}
	rest := prop
	for rest != "" {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, providers.Errorf(providers.NotFound, "property %q does not exist in remote key %q", prop, key)
		}
		if v, ok := obj[rest]; ok {
			cur, rest = v, ""
			break
		}
		head, tail, _ := strings.Cut(rest, ".")
		v, ok := obj[head]
		if !ok {
			return nil, providers.Errorf(providers.NotFound, "property %q does not exist in remote key %q", prop, key)
		}
		cur, rest = v, tail
	}
	return fieldBytes(cur), nil
}

// fields returns the fields of a JSON object value.
func fields(data []byte, key string) (map[string][]byte, error) {
	var obj map[string]any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&obj); err != nil || obj == nil {
		return nil, providers.Errorf(providers.Invalid, "remote key %q is not a JSON object, so dataFrom.extract cannot read its fields; use data[] to read it whole", key)
	}
	out := make(map[string][]byte, len(obj))
	for k, v := range obj {
		out[k] = fieldBytes(v)
	}
	return out, nil
}

func fieldBytes(v any) []byte {
	if s, ok := v.(string); ok {
		return []byte(s)
	}
	b, _ := json.Marshal(v) // values decoded from JSON always encode
	return b
}

// decode applies a decodingStrategy.
func decode(data []byte, strategy configv1alpha1.DecodingStrategy, what string) ([]byte, error) {
	switch strategy {
	case "", configv1alpha1.DecodeNone:
		return data, nil
	case configv1alpha1.DecodeBase64, configv1alpha1.DecodeBase64URL:
		enc := base64.StdEncoding
		if strategy == configv1alpha1.DecodeBase64URL {
			enc = base64.URLEncoding
		}
		out, err := enc.DecodeString(string(bytes.TrimSpace(data)))
		if err != nil {
			return nil, providers.Errorf(providers.Invalid, "%s is not valid %s; fix decodingStrategy", what, strategy)
		}
		return out, nil
	case configv1alpha1.DecodeAuto:
		s := string(bytes.TrimSpace(data))
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if out, err := enc.DecodeString(s); err == nil {
				return out, nil
			}
		}
		return data, nil
	}
	return nil, providers.Errorf(providers.Invalid, "decodingStrategy %q is not one of None, Base64, Base64URL, Auto", strategy)
}

var invalidKeyChars = regexp.MustCompile(`[^-._a-zA-Z0-9]`)

// secretKeyFor turns a remote key found by dataFrom.find into a key that a
// Secret accepts: "app/db/password" becomes "app_db_password".
func secretKeyFor(remoteKey string) string {
	return invalidKeyChars.ReplaceAllString(strings.Trim(remoteKey, "/"), "_")
}
