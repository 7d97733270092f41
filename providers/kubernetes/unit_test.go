package kubeprovider

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestExampleConfigParses(t *testing.T) {
	raw, err := os.ReadFile("deploy/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(raw)
	if err != nil {
		t.Fatalf("deploy/config.yaml: %v", err)
	}
	if len(c.Stores) != 2 || c.Stores[1].PathSeparator != "." || c.Stores[0].Limits.Watches != 4 {
		t.Errorf("deploy/config.yaml read as %+v", c.Stores)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{"stores:\n- {kind: SecretStore, name: a, source: {namespace: s}}", "a SecretStore needs its namespace"},
		{"stores:\n- {kind: ClusterSecretStore, namespace: x, name: a, source: {namespace: s}}", "a ClusterSecretStore has no namespace"},
		{"stores:\n- {kind: Store, namespace: x, name: a, source: {namespace: s}}", "kind must be"},
		{"stores:\n- {kind: SecretStore, namespace: x, name: a, source: {namespace: Not_A_Namespace}}", "source.namespace"},
		{"stores:\n- {kind: SecretStore, namespace: x, name: a, source: {namespace: s}, pathSeparator: /}", "pathSeparator"},
		{"stores:\n- {kind: SecretStore, namespace: x, name: a, source: {namespace: s}, limits: {qps: -1}}", "negative"},
		{"stores:\n- {kind: SecretStore, namespace: x, name: a, source: {namespace: s}, limit: {qps: 1}}", "unknown field"},
		{"stores:\n- {kind: SecretStore, namespace: x, name: a, source: {namespace: s}}\n- {kind: SecretStore, namespace: x, name: a, source: {namespace: t}}", "configured twice"},
	} {
		if _, err := ParseConfig([]byte(tc.config)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.config, err, tc.want)
		}
	}
}

func TestSecretNames(t *testing.T) {
	plain := &served{key: storeKey{"SecretStore", "a", "s"}, cfg: StoreConfig{Source: Source{Namespace: "src"}}}
	paths := &served{key: storeKey{"SecretStore", "a", "p"}, cfg: StoreConfig{Source: Source{Namespace: "src"}, PathSeparator: "."}}
	for _, tc := range []struct {
		st        *served
		key, name string
		refused   string
	}{
		{plain, "db", "db", ""},
		{plain, "tls.example.com", "tls.example.com", ""},
		{plain, "team/db", "", `has a "/"`},
		{plain, "DB", "", "is not the name of a Secret"},
		{paths, "team/db", "team.db", ""},
		{paths, "team.db", "", `writes paths with "/"`},
		{paths, "team//db", "", "is not the name of a Secret"},
	} {
		name, err := tc.st.secretName(tc.key)
		switch {
		case tc.refused == "" && (err != nil || name != tc.name):
			t.Errorf("%s: key %q names %q, %v; want %q", tc.st.key, tc.key, name, err, tc.name)
		case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused) || err.(*Error).Reason != Invalid):
			t.Errorf("%s: key %q: %v, want Invalid saying %q", tc.st.key, tc.key, err, tc.refused)
		}
		if err == nil && tc.st.remoteKey(name) != tc.key {
			t.Errorf("%s: Secret %q is reported as key %q, not %q", tc.st.key, name, tc.st.remoteKey(name), tc.key)
		}
	}
}

// TestEncode: every key of a Secret reads back, as a property, as the
// bytes written.
func TestEncode(t *testing.T) {
	binary := []byte{0xff, 0x00, 0xfe}
	s := &corev1.Secret{Data: map[string][]byte{
		"text":    []byte("p@ss <&> \"quoted\"\n"),
		"json":    []byte(`{"host": "db", "port": 5432}`),
		"spaced":  []byte("{\"a\":1}\n"),
		"number":  []byte("5432"),
		"binary":  binary,
		"empty":   {},
		"array":   []byte(`["a"]`),
		"invalid": []byte(`{"a":`),
	}}
	out := encode(s)
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(out, &fields); err != nil {
		t.Fatalf("the value is not one JSON object: %v", err)
	}
	text := func(k string) string {
		var v string
		if err := json.Unmarshal(fields[k], &v); err != nil {
			t.Fatalf("%s is not a JSON string: %s", k, fields[k])
		}
		return v
	}
	if string(fields["json"]) != `{"host": "db", "port": 5432}` {
		t.Errorf("a key holding a JSON object is %s, not the object as written", fields["json"])
	}
	for _, k := range []string{"text", "spaced", "number", "empty", "array", "invalid"} {
		if text(k) != string(s.Data[k]) {
			t.Errorf("%s reads back as %q, not %q", k, text(k), s.Data[k])
		}
	}
	if got, err := base64.StdEncoding.DecodeString(text("binary")); err != nil || string(got) != string(binary) {
		t.Errorf("a key that is not UTF-8 is %s, not its base64", fields["binary"])
	}
}
