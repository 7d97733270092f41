package kubeprovider

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// secretName is the Secret a remote key names in st's source namespace.
// Its errors say how to write the key.
func (st *served) secretName(key string) (string, error) {
	name := key
	if st.cfg.PathSeparator != "" {
		if strings.Contains(key, st.cfg.PathSeparator) {
			return "", errorf(Invalid, "remote key %q has a %q: %s writes paths with \"/\" (the Secret %q is the key %q)", key, st.cfg.PathSeparator, st.key, key, strings.ReplaceAll(key, st.cfg.PathSeparator, "/"))
		}
		name = strings.ReplaceAll(key, "/", st.cfg.PathSeparator)
	} else if strings.Contains(key, "/") {
		return "", errorf(Invalid, "remote key %q has a \"/\", which no Secret name has: a remote key of %s is the name of a Secret in namespace %q", key, st.key, st.cfg.Source.Namespace)
	}
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return "", errorf(Invalid, "remote key %q is not the name of a Secret (%s): a remote key of %s is a Secret name in namespace %q", key, strings.Join(msgs, "; "), st.key, st.cfg.Source.Namespace)
	}
	return name, nil
}

// remoteKey is the remote key of the Secret name.
func (st *served) remoteKey(name string) string {
	if st.cfg.PathSeparator != "" {
		return strings.ReplaceAll(name, st.cfg.PathSeparator, "/")
	}
	return name
}

// versionOf is a Secret's version: its UID and resourceVersion, so that a
// Secret deleted and made again, or one of another cluster, never has the
// version of the one before.
func versionOf(m metav1.Object) string {
	return string(m.GetUID()) + "/" + m.GetResourceVersion()
}

// changedOf is when a Secret was last written, as far as its managed
// fields say (to the second); zero when they say nothing.
func changedOf(m metav1.Object) int64 {
	var latest int64
	for _, f := range m.GetManagedFields() {
		if f.Time != nil && f.Time.UnixNano() > latest {
			latest = f.Time.UnixNano()
		}
	}
	if c := m.GetCreationTimestamp(); latest == 0 && !c.IsZero() {
		latest = c.UnixNano()
	}
	return latest
}

// encode is a Secret's data as the protocol carries a value: one JSON
// object whose fields are the Secret's keys, so that remoteRef.property
// picks one and dataFrom.extract reads them all. Each field is the key's
// bytes exactly, as:
//   - the JSON object itself, when the bytes are one with no space around
//     it (so "config.host" reads into a key holding JSON, as External
//     Secrets Operator's kubernetes provider does);
//   - a string of the text, when the bytes are UTF-8;
//   - a string of their base64, when they are not (read them with
//     decodingStrategy: Base64).
//
// A property read of any key therefore gives back its bytes as written.
func encode(s *corev1.Secret) []byte {
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(k)
		b.Write(name)
		b.WriteByte(':')
		v := s.Data[k]
		switch {
		case isObject(v):
			b.Write(v)
		case utf8.Valid(v):
			text, _ := json.Marshal(string(v))
			b.Write(text)
		default:
			text, _ := json.Marshal(base64.StdEncoding.EncodeToString(v))
			b.Write(text)
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

// isObject says whether v is exactly one JSON object, with no space
// before or after it.
func isObject(v []byte) bool {
	if len(v) < 2 || v[0] != '{' || v[len(v)-1] != '}' || !json.Valid(v) {
		return false
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(v, &m) == nil
}
