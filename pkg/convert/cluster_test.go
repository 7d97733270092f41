package convert

import (
	"strings"
	"testing"
)

// TestClusterKindsConverted: ESO's ClusterExternalSecret and
// ClusterPushSecret are taken as they are, cluster-scoped, with the one
// difference named: who may create them. A push of a whole Secret in the
// embedded spec names its own difference under pushSecretSpec.
func TestClusterKindsConverted(t *testing.T) {
	c := newConverter(t)
	out, diffs := convertOne(t, c, `apiVersion: external-secrets.io/v1
kind: ClusterExternalSecret
metadata: {name: shared, namespace: ignored}
spec:
  externalSecretName: app
  externalSecretMetadata: {labels: {team: a}}
  namespaceSelectors: [{matchLabels: {env: prod}}]
  namespaces: [extra]
  refreshTime: 1m
  externalSecretSpec:
    secretStoreRef: {name: vault, kind: ClusterSecretStore}
    refreshInterval: 1h
    target: {name: app}
    data: [{secretKey: password, remoteRef: {key: app/db, property: password}}]
`)
	if out == nil || out.GetAPIVersion() != "config.veil.dev/v1alpha1" || out.GetNamespace() != "" {
		t.Fatalf("converted %v, want config.veil.dev/v1alpha1 with no namespace", out)
	}
	if len(diffs) != 1 || !has(diffs, Behaviour, "spec.externalSecretSpec", "in all namespaces") {
		t.Errorf("ClusterExternalSecret: want one behaviour difference on spec.externalSecretSpec, got %v", diffs)
	}

	_, diffs = convertOne(t, c, `apiVersion: external-secrets.io/v1alpha1
kind: ClusterPushSecret
metadata: {name: shared}
spec:
  pushSecretName: app
  namespaceSelectors: [{matchLabels: {env: prod}}]
  pushSecretSpec:
    secretStoreRefs: [{name: vault, kind: SecretStore}]
    selector: {secret: {name: src}}
    data:
      - match: {remoteRef: {remoteKey: all}}
`)
	if len(diffs) != 2 || !has(diffs, Behaviour, "spec.pushSecretSpec", "create pushsecrets") ||
		!has(diffs, Behaviour, "spec.pushSecretSpec.data[0].match.secretKey", "not UTF-8") {
		t.Errorf("ClusterPushSecret: want the rights and the whole-Secret differences, got %v", diffs)
	}

	_, diffs = convertOne(t, c, `apiVersion: external-secrets.io/v1
kind: ClusterExternalSecret
metadata: {name: wide}
spec:
  namespaceSelectors: [`+strings.Repeat("{}, ", 16)+`{}]
  externalSecretSpec:
    secretStoreRef: {name: vault}
    data: [{secretKey: k, remoteRef: {key: k}}]
`)
	if !has(diffs, Refused, "spec.namespaceSelectors", "") {
		t.Errorf("17 namespace selectors: want refused, got %v", diffs)
	}
}
