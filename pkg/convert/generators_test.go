package convert

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestConvertPasswordGenerator: ESO's Password and a PushSecret naming it
// (its rotation example) convert with only their apiVersions changed; the
// limits Veil adds, a ClusterPushSecret with a generator, an interval under
// the rotation floor and other generators are named.
func TestConvertPasswordGenerator(t *testing.T) {
	c := newConverter(t)
	pw, diffs := convertOne(t, c, `apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {name: strong-password, namespace: app}
spec: {length: 128, digits: 5, symbols: 5, symbolCharacters: "-_$@", noUpper: false, allowRepeat: true}
`)
	if len(diffs) != 0 || pw == nil || pw.GetAPIVersion() != "config.veil.dev/v1alpha1" || pw.GetKind() != "Password" {
		t.Fatalf("Password: %v, %v", pw, diffs)
	}
	ps, diffs := convertOne(t, c, `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: rotate, namespace: app}
spec:
  refreshInterval: 6h0m0s
  secretStoreRefs: [{name: aws-parameter-store, kind: SecretStore}]
  selector:
    generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: strong-password}
  data:
  - match: {secretKey: password, remoteRef: {remoteKey: prod/mysql/password}}
`)
	if len(diffs) != 0 || ps == nil {
		t.Fatalf("PushSecret: %v", diffs)
	}
	if v, _, _ := unstructured.NestedString(ps.Object, "spec", "selector", "generatorRef", "apiVersion"); v != "config.veil.dev/v1alpha1" {
		t.Errorf("generatorRef.apiVersion = %q", v)
	}

	for _, tc := range []struct {
		name, manifest string
		sev            Severity
		field, text    string
	}{
		{"symbols Veil refuses", `apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {name: p, namespace: app}
spec: {length: 20, symbolCharacters: "abc-", allowRepeat: true}
`, Refused, "spec.symbolCharacters", "should match"},
		{"too long", `apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {name: p, namespace: app}
spec: {length: 5000, allowRepeat: true}
`, Refused, "spec.length", "1024"},
		{"impossible without allowRepeat", `apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {name: p, namespace: app}
spec: {length: 60, digits: 5, symbols: 2}
`, Refused, "spec", "at most 52 letters"},
		{"generator with dataTo", `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: gen-datato, namespace: app}
spec:
  secretStoreRefs: [{name: vault, kind: SecretStore}]
  selector:
    generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: strong-password}
  dataTo:
  - storeRef: {name: vault}
`, Refused, "spec", "dataTo and template apply to a source Secret only"},
		{"rotation floor", `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: fast, namespace: app}
spec:
  refreshInterval: 10s
  secretStoreRefs: [{name: s}]
  selector: {generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: p}}
  data: [{match: {secretKey: password, remoteRef: {remoteKey: k}}}]
`, Behaviour, "spec.refreshInterval", "at most every 1m0s"},
		{"other generator kind", `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: ecr, namespace: app}
spec:
  secretStoreRefs: [{name: s}]
  selector: {generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: ECRAuthorizationToken, name: e}}
  data: [{match: {secretKey: password, remoteRef: {remoteKey: k}}}]
`, Refused, "spec.selector.generatorRef", "Veil generates only Password"},
		{"both secret and generator", `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: both, namespace: app}
spec:
  secretStoreRefs: [{name: s}]
  selector: {secret: {name: x}, generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: p}}
  data: [{match: {secretKey: password, remoteRef: {remoteKey: k}}}]
`, Refused, "spec.selector", "set exactly one of"},
		{"ClusterPushSecret", `apiVersion: external-secrets.io/v1alpha1
kind: ClusterPushSecret
metadata: {name: cps}
spec:
  namespaceSelectors: [{matchLabels: {a: b}}]
  pushSecretSpec:
    secretStoreRefs: [{name: s}]
    selector: {generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: p}}
    data: [{match: {secretKey: password, remoteRef: {remoteKey: k}}}]
`, Refused, "spec.pushSecretSpec", "a ClusterPushSecret cannot push a generator's values"},
	} {
		if _, diffs := convertOne(t, c, tc.manifest); !has(diffs, tc.sev, tc.field, tc.text) {
			t.Errorf("%s: want %s %s %q, got %v", tc.name, tc.sev, tc.field, tc.text, diffs)
		}
	}
}
