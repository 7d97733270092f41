package convert

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestConvertAWSRoleChain: additionalRoles and transitiveTagKeys are
// Veil's fields now, kept as they are; what Veil refuses is reported.
func TestConvertAWSRoleChain(t *testing.T) {
	in, err := Read(strings.NewReader(chainManifests))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	diffs := map[string][]Difference{}
	for _, o := range in {
		v, d := c.Convert(context.Background(), o)
		out[describe(o)], diffs[describe(o)] = v, d
	}

	chain := out["SecretStore team-a/chain"]
	if d := diffs["SecretStore team-a/chain"]; len(d) != 0 {
		t.Errorf("a chain with keys converts as it is, got %v", d)
	}
	roles, _, _ := unstructured.NestedStringSlice(chain.Object, "spec", "provider", "aws", "additionalRoles")
	keys, _, _ := unstructured.NestedStringSlice(chain.Object, "spec", "provider", "aws", "transitiveTagKeys")
	if len(roles) != 1 || roles[0] != "arn:aws:iam::123456789012:role/hop" || len(keys) != 1 || keys[0] != "team" {
		t.Errorf("additionalRoles %v and transitiveTagKeys %v must be kept", roles, keys)
	}
	if !has(diffs["SecretStore team-a/chain-jwt"], Behaviour, "spec.provider.aws.additionalRoles", "refuses additionalRoles with auth.jwt") {
		t.Errorf("a chain with auth.jwt: %v", diffs["SecretStore team-a/chain-jwt"])
	}
	if !has(diffs["SecretStore team-a/chain-bad-tag"], Refused, "spec.provider.aws", "every transitiveTagKeys entry must be the key of a sessionTags entry") {
		t.Errorf("a transitive tag key that is no session tag: %v", diffs["SecretStore team-a/chain-bad-tag"])
	}
}

// chainManifests are not in testdata/, which TestCommandOutput counts.
const chainManifests = `apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: chain, namespace: team-a}
spec:
  provider:
    aws:
      service: SecretsManager
      region: eu-west-1
      role: arn:aws:iam::123456789012:role/final
      externalID: team-a
      additionalRoles: [arn:aws:iam::123456789012:role/hop]
      sessionTags: [{key: team, value: a}]
      transitiveTagKeys: [team]
      auth:
        secretRef:
          accessKeyIDSecretRef: {name: aws, key: id}
          secretAccessKeySecretRef: {name: aws, key: secret}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: chain-jwt, namespace: team-a}
spec:
  provider:
    aws:
      service: SecretsManager
      region: eu-west-1
      role: arn:aws:iam::123456789012:role/final
      additionalRoles: [arn:aws:iam::123456789012:role/hop]
      auth:
        jwt:
          serviceAccountRef: {name: app}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: chain-bad-tag, namespace: team-a}
spec:
  provider:
    aws:
      service: SecretsManager
      region: eu-west-1
      role: arn:aws:iam::123456789012:role/final
      sessionTags: [{key: team, value: a}]
      transitiveTagKeys: [cost-center]
      auth:
        secretRef:
          accessKeyIDSecretRef: {name: aws, key: id}
          secretAccessKeySecretRef: {name: aws, key: secret}
`
