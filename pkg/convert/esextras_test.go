package convert

import (
	"testing"
)

// TestESOFullExampleFields: per-entry stores, sync windows and template
// finalizers, as ESO's full ExternalSecret example writes them, are taken
// as they are; a generator, an @every window and finalizers Veil refuses
// are refused with reasons; finalizers on a Secret merged into are named
// as a behaviour difference.
func TestESOFullExampleFields(t *testing.T) {
	c := newConverter(t)
	_, diffs := convertOne(t, c, `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: full, namespace: example}
spec:
  syncWindows:
    kind: allow
    windows: [{schedule: "0 9 * * 1-5", duration: 8h}, {schedule: "@daily", duration: 30m}]
  target:
    creationPolicy: Owner
    template: {metadata: {finalizers: [example.com/cleanup]}}
  data:
  - secretKey: username
    remoteRef: {key: database-credentials, property: username}
    sourceRef: {storeRef: {name: aws-secretstore, kind: ClusterSecretStore}}
  dataFrom:
  - extract: {key: database-credentials}
    sourceRef: {storeRef: {name: other}}
`)
	if len(diffs) != 0 {
		t.Errorf("want it taken as it is, got %v", diffs)
	}

	_, diffs = convertOne(t, c, `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: refused, namespace: example}
spec:
  secretStoreRef: {name: s}
  syncWindows: {kind: deny, windows: [{schedule: "@every 1h", duration: 1h}]}
  target:
    creationPolicy: Merge
    template: {metadata: {finalizers: [kubernetes.io/pv-protection]}}
  data:
  - secretKey: u
    remoteRef: {key: k}
  dataFrom:
  - sourceRef: {generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: p}}
`)
	for _, want := range []struct {
		sev         Severity
		field, text string
	}{
		{Refused, "spec.dataFrom[0].sourceRef", "an ExternalSecret cannot read a generator (sourceRef.generatorRef)"},
		{Refused, "spec.syncWindows.windows[0].schedule", "should match"},
		{Refused, "spec.target.template.metadata.finalizers", "a domain of Kubernetes"},
		{Behaviour, "spec.target.template.metadata.finalizers", "creationPolicy Merge"},
	} {
		if !has(diffs, want.sev, want.field, want.text) {
			t.Errorf("want %s %s saying %q, got %v", want.sev, want.field, want.text, diffs)
		}
	}

	_, diffs = convertOne(t, c, `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: no-store, namespace: example}
spec:
  data:
  - {secretKey: a, remoteRef: {key: a}, sourceRef: {storeRef: {name: s}}}
  - {secretKey: b, remoteRef: {key: b}}
`)
	if !has(diffs, Refused, "spec", "every data and dataFrom entry must name its store") {
		t.Errorf("an entry without a store: %v", diffs)
	}
}
