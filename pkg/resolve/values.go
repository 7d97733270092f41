package resolve

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// The functions here handle secret bytes. Their errors name keys and
// properties, never content: encoding/json's own errors quote the input, so
// none of them is passed on.

// property returns one field of a JSON object value; "a.b" descends into
// objects unless the object has the key "a.b" itself. A string field is
// returned as its text, anything else as the JSON it was written as, so
// numbers keep every digit (as float64, 123456789012345678 would come back
// as 123456789012345680).
func property(data []byte, prop, key string) ([]byte, error) {
	cur := json.RawMessage(data)
	obj, err := object(cur)
	if err != nil && !errors.Is(err, errNotObject) {
		return nil, providers.Errorf(providers.Invalid, "remote key %q is not JSON, so it has no property %q; remove remoteRef.property to read it whole", key, prop)
	}
	rest := prop
	for rest != "" {
		if obj == nil {
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
		if obj, err = object(cur); err != nil && !errors.Is(err, errNotObject) {
			return nil, providers.Errorf(providers.Invalid, "remote key %q is not JSON, so it has no property %q; remove remoteRef.property to read it whole", key, prop)
		}
	}
	return fieldBytes(cur), nil
}

var errNotObject = errors.New("not a JSON object")

// object decodes a JSON object one level deep, each field kept as written.
// A valid JSON value that is not an object gives errNotObject.
func object(data json.RawMessage) (map[string]json.RawMessage, error) {
	if !json.Valid(data) {
		return nil, errors.New("not JSON")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return nil, errNotObject
	}
	return obj, nil
}

// fields returns the fields of a JSON object value.
func fields(data []byte, key string) (map[string][]byte, error) {
	obj, err := object(data)
	if err != nil {
		return nil, providers.Errorf(providers.Invalid, "remote key %q is not a JSON object, so dataFrom.extract cannot read its fields; use data[] to read it whole", key)
	}
	out := make(map[string][]byte, len(obj))
	for k, v := range obj {
		out[k] = fieldBytes(v)
	}
	return out, nil
}

// fieldBytes is a JSON string's text, or any other JSON value as written.
func fieldBytes(v json.RawMessage) []byte {
	v = bytes.TrimSpace(v)
	var s string
	if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil {
		return []byte(s)
	}
	return v
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
		// Padded encodings only, as External Secrets Operator: unpadded
		// base64 would take many plain values for encoded ones (any six
		// letters decode), and serve them mangled.
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			if out, err := enc.DecodeString(s); err == nil {
				return out, nil
			}
		}
		return data, nil
	}
	return nil, providers.Errorf(providers.Invalid, "decodingStrategy %q is not one of None, Base64, Base64URL, Auto", strategy)
}
