package convert

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestVaultTokenSourcesAsESO: kubernetes and jwt auth with both token
// sources, and jwt's audiences where ESO puts them, are taken as they are
// (they behave as in ESO); kubernetes auth with neither source is taken,
// with the behaviour difference named; jwt with neither is refused (ESO
// accepts it, then can never log in).
func TestVaultTokenSourcesAsESO(t *testing.T) {
	c := newConverter(t)
	for _, tc := range []struct {
		name, auth string
		refused    string // the field refused, if any
		behaviour  string // the field with a behaviour difference, if any
	}{
		// ESO's docs/snippets/vault-kubernetes-store.yaml and vault-jwt-store.yaml.
		{name: "kubernetes, both", auth: `{kubernetes: {mountPath: kubernetes, role: demo, serviceAccountRef: {name: my-sa}, secretRef: {name: my-secret, key: vault}}}`},
		{name: "jwt, both, audiences", auth: `{jwt: {path: jwt, role: vault-jwt-role, secretRef: {name: my-secret, key: jwt-token}, kubernetesServiceAccountToken: {serviceAccountRef: {name: my-sa}, audiences: [vault], expirationSeconds: 600}}}`},
		{name: "kubernetes, neither", auth: `{kubernetes: {mountPath: kubernetes, role: demo}}`, behaviour: "spec.provider.vault.auth.kubernetes"},
		{name: "jwt, neither", auth: `{jwt: {path: jwt, role: r}}`, refused: "spec.provider.vault.auth.jwt"},
		{name: "jwt, an audience too long", auth: `{jwt: {kubernetesServiceAccountToken: {serviceAccountRef: {name: sa}, audiences: [` + strings.Repeat("a", 257) + `]}}}`, refused: "spec.provider.vault.auth.jwt.kubernetesServiceAccountToken.audiences[0]"},
		{name: "auth.namespace too long", auth: `{namespace: ` + strings.Repeat("n", 257) + `, tokenSecretRef: {name: t, key: token}}`, refused: "spec.provider.vault.auth.namespace"},
		{name: "a namespace and no method", auth: `{namespace: admin}`, refused: "spec.provider.vault.auth"},
		{name: "two methods", auth: `{namespace: admin, tokenSecretRef: {name: t, key: token}, appRole: {roleId: r, secretRef: {name: s, key: id}}}`, refused: "spec.provider.vault.auth"},
		{name: "jwt, too many audiences", auth: `{jwt: {kubernetesServiceAccountToken: {serviceAccountRef: {name: sa}, audiences: [a1,a2,a3,a4,a5,a6,a7,a8,a9,a10,a11,a12,a13,a14,a15,a16,a17]}}}`, refused: "spec.provider.vault.auth.jwt.kubernetesServiceAccountToken.audiences"},
	} {
		_, diffs := convertOne(t, c, vaultStoreWithAuth(tc.auth))
		for _, d := range diffs {
			switch {
			case d.Severity == Refused && d.Field == tc.refused:
			case d.Severity == Behaviour && d.Field == tc.behaviour:
			default:
				t.Errorf("%s: unexpected %v", tc.name, d)
			}
		}
		if tc.refused != "" && !has(diffs, Refused, tc.refused, "") {
			t.Errorf("%s: want %s refused, got %v", tc.name, tc.refused, diffs)
		}
		if tc.behaviour != "" && !has(diffs, Behaviour, tc.behaviour, "never lends its own identity") {
			t.Errorf("%s: want a behaviour difference on %s, got %v", tc.name, tc.behaviour, diffs)
		}
	}
}

// TestVaultLdapAndIamAsESO: ESO's ldap and iam stores (docs/snippets
// vault-ldap-store.yaml, vault-iam-store*.yaml) are taken as they are; the
// forms that would use ESO's own pod identity, or read a ServiceAccount
// annotation, are taken with the difference named.
func TestVaultLdapAndIamAsESO(t *testing.T) {
	c := newConverter(t)
	keys := `secretRef: {accessKeyIDSecretRef: {name: c, key: access-key}, secretAccessKeySecretRef: {name: c, key: secret-access-key}, sessionTokenSecretRef: {name: c, key: secret-session-token}}`
	for _, tc := range []struct {
		name, auth string
		behaviour  string // the field with a behaviour difference, if any
		says       string
	}{
		{name: "ldap", auth: `{ldap: {path: ldap, username: username, secretRef: {name: my-secret, key: ldap-password}}}`},
		// ESO's auth.namespace: where the login goes (Vault Enterprise).
		{name: "approle, auth.namespace", auth: `{namespace: admin/team-a, appRole: {path: approle, roleId: r, secretRef: {name: s, key: secret-id}}}`},
		{name: "iam, static keys and role", auth: `{iam: {path: aws, region: us-east-1, role: "arn:aws:iam::1234567890:role/role-a", vaultRole: v, vaultAwsIamServerID: example, ` + keys + `}}`},
		{name: "iam, controller pod identity", auth: `{iam: {path: aws, region: us-east-1, vaultRole: v, vaultAwsIamServerID: example}}`, behaviour: "spec.provider.vault.auth.iam", says: "never lends its own identity"},
		{name: "iam, jwt without role", auth: `{iam: {path: aws, vaultRole: v, jwt: {serviceAccountRef: {name: my-serviceaccount}}}}`, behaviour: "spec.provider.vault.auth.iam.jwt", says: "stays not Ready until role is set"},
		{name: "iam, jwt with role", auth: `{iam: {vaultRole: v, role: "arn:aws:iam::1:role/r", jwt: {serviceAccountRef: {name: sa}}}}`, behaviour: "spec.provider.vault.auth.iam.jwt", says: "exchanges the ServiceAccount's token for role directly"},
	} {
		_, diffs := convertOne(t, c, vaultStoreWithAuth(tc.auth))
		for _, d := range diffs {
			if !(d.Severity == Behaviour && d.Field == tc.behaviour) {
				t.Errorf("%s: unexpected %v", tc.name, d)
			}
		}
		if tc.behaviour != "" && !has(diffs, Behaviour, tc.behaviour, tc.says) {
			t.Errorf("%s: want a behaviour difference on %s saying %q, got %v", tc.name, tc.behaviour, tc.says, diffs)
		}
	}
}

// TestWholeSecretPushNamesItsDifference: a PushSecret entry without
// secretKey is taken as it is, with the one way it differs from ESO named.
func TestWholeSecretPushNamesItsDifference(t *testing.T) {
	_, diffs := convertOne(t, newConverter(t), `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: whole, namespace: example}
spec:
  secretStoreRefs: [{name: vault, kind: SecretStore}]
  selector: {secret: {name: source}}
  data:
  - match: {secretKey: one, remoteRef: {remoteKey: one}}
  - match: {remoteRef: {remoteKey: all}}
`)
	if len(diffs) != 1 || !has(diffs, Behaviour, "spec.data[1].match.secretKey", "not UTF-8") {
		t.Errorf("want one behaviour difference on spec.data[1].match.secretKey, got %v", diffs)
	}
}

// TestESOConditionsAndPushConversion: ESO's namespaceRegexes in a
// ClusterSecretStore condition and a PushSecret's conversionStrategy None
// are taken as they are; ReverseUnicode, which Veil does not do, is
// refused rather than dropped.
func TestESOConditionsAndPushConversion(t *testing.T) {
	c := newConverter(t)
	_, diffs := convertOne(t, c, `apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: shared}
spec:
  conditions: [{namespaceRegexes: ["^team-"]}, {namespaces: [app]}]
  provider: {fake: {data: [{key: k, value: v}]}}
`)
	if len(diffs) != 0 {
		t.Errorf("namespaceRegexes: %v", diffs)
	}
	push := func(strategy string) string {
		return `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: p, namespace: app}
spec:
  secretStoreRefs: [{name: vault, kind: SecretStore}]
  selector: {secret: {name: src}}
  data:
  - conversionStrategy: ` + strategy + `
    match: {secretKey: k, remoteRef: {remoteKey: app/k}}
`
	}
	if _, diffs := convertOne(t, c, push("None")); len(diffs) != 0 {
		t.Errorf("conversionStrategy None: %v", diffs)
	}
	if _, diffs := convertOne(t, c, push("ReverseUnicode")); !has(diffs, Refused, "spec.data[0].conversionStrategy", "Unsupported value") {
		t.Errorf("conversionStrategy ReverseUnicode: want refused, got %v", diffs)
	}
}

// TestVaultLdapAndIamFixtures: the fixtures kube-apiserver also judges
// (e2e.TestConvertAgreesWithKubeAPIServer) hold ESO's ldap and iam stores
// taken, and an LDAP username leaving the login path refused.
func TestVaultLdapAndIamFixtures(t *testing.T) {
	f, err := os.Open("testdata/vault-auth/eso.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	c := newConverter(t)
	diffs := map[string][]Difference{}
	for _, o := range in {
		_, d := c.Convert(context.Background(), o)
		diffs[describe(o)] = d
	}
	for name, want := range map[string]struct {
		sev   Severity
		field string
	}{
		"SecretStore team-a/vault-ldap-path":        {Refused, "spec.provider.vault.auth.ldap.username"},
		"SecretStore team-a/vault-iam-pod-identity": {Behaviour, "spec.provider.vault.auth.iam"},
	} {
		if !has(diffs[name], want.sev, want.field, "") {
			t.Errorf("%s: want %s on %s, got %v", name, want.sev, want.field, diffs[name])
		}
	}
	for _, name := range []string{"SecretStore team-a/vault-ldap", "SecretStore team-a/vault-iam-keys"} {
		if d, ok := diffs[name]; !ok || len(d) != 0 {
			t.Errorf("%s: want it taken as it is, got %v (converted: %v)", name, d, ok)
		}
	}
}

// TestPushSecretDataTo: ESO's dataTo examples (pushsecret-datato-*.yaml)
// are taken as they are; a store chosen by labels, which Veil does not
// have, is refused rather than silently pushing nowhere, and so is a
// dataTo store that is not among secretStoreRefs.
func TestPushSecretDataTo(t *testing.T) {
	c := newConverter(t)
	const head = `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: datato, namespace: example}
spec:
  secretStoreRefs: [{name: secret-store, kind: SecretStore}]
  selector: {secret: {name: source-secret}}
`
	for _, tc := range []struct {
		name, spec string
		refused    string
	}{
		{name: "basic", spec: `  dataTo: [{storeRef: {name: secret-store}}]`},
		{name: "chained", spec: `  dataTo: [{storeRef: {name: secret-store}, match: {regexp: "^db-.*"}, rewrite: [{regexp: {source: "^db-", target: ""}}, {regexp: {source: "^", target: "prod/"}}]}]`},
		{name: "template", spec: `  dataTo: [{storeRef: {name: secret-store}, rewrite: [{transform: {template: "secrets/{{ .value | upper }}"}}]}]`},
		{name: "override", spec: "  dataTo: [{storeRef: {name: secret-store}}]\n  data: [{match: {secretKey: db-host, remoteRef: {remoteKey: custom/database/hostname}}}]"},
		{name: "bundle", spec: `  dataTo: [{storeRef: {name: secret-store}, remoteKey: app/config, match: {regexp: "^DB_"}}]`},
		{name: "label selector", spec: `  dataTo: [{storeRef: {labelSelector: {matchLabels: {team: a}}}}]`, refused: "spec.dataTo[0].storeRef.name"},
		{name: "another store", spec: `  dataTo: [{storeRef: {name: elsewhere}}]`, refused: "spec"},
		{name: "bundle and rewrite", spec: `  dataTo: [{storeRef: {name: secret-store}, remoteKey: one, rewrite: [{regexp: {source: a, target: b}}]}]`, refused: "spec.dataTo[0]"},
	} {
		_, diffs := convertOne(t, c, head+tc.spec+"\n")
		for _, d := range diffs {
			if tc.refused != "" && d.Severity == Refused && (d.Field == tc.refused || d.Field == "spec") {
				continue
			}
			if tc.refused != "" && d.Severity == Dropped && strings.Contains(d.Field, "labelSelector") {
				continue
			}
			t.Errorf("%s: unexpected %v", tc.name, d)
		}
		if tc.refused != "" && !has(diffs, Refused, tc.refused, "") {
			t.Errorf("%s: want %s refused, got %v", tc.name, tc.refused, diffs)
		}
	}
}

// TestPushSecretMetadata: ESO's metadata examples are taken as they are;
// metadata without ESO's PushSecretMetadata wrapper (which ESO's providers
// also fail on) is named with how to fix it.
func TestPushSecretMetadata(t *testing.T) {
	c := newConverter(t)
	const head = `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: meta, namespace: example}
spec:
  secretStoreRefs: [{name: aws, kind: SecretStore}]
  selector: {secret: {name: src}}
  data:
  - match: {secretKey: key1, remoteRef: {remoteKey: one}}
`
	_, diffs := convertOne(t, c, head+`    metadata: {apiVersion: kubernetes.external-secrets.io/v1alpha1, kind: PushSecretMetadata, spec: {kmsKeyID: k, secretPushFormat: string, tags: {a: b}}}
`)
	if len(diffs) != 0 {
		t.Errorf("ESO's wrapped metadata: %v", diffs)
	}
	_, diffs = convertOne(t, c, head+`    metadata: {kmsKeyID: k, secretPushFormat: string}
`)
	if !has(diffs, Behaviour, "spec.data[0].metadata", "PushSecretMetadata") {
		t.Errorf("unwrapped metadata: %v", diffs)
	}
}

// TestVaultHeadersAsESO: ESO's forwardInconsistent and headers are taken
// as they are; a header that is Vault's own is refused by the CRD.
func TestVaultHeadersAsESO(t *testing.T) {
	c := newConverter(t)
	store := func(extra string) string {
		return strings.Replace(vaultStoreWithAuth(`{tokenSecretRef: {name: t, key: token}}`), `      auth:`, extra+"\n      auth:", 1)
	}
	_, diffs := convertOne(t, c, store("      readYourWrites: true\n      forwardInconsistent: true\n      headers: {CF-Access-Client-Id: web, X-Team: a}"))
	if len(diffs) != 0 {
		t.Errorf("ESO's forwardInconsistent and headers: %v, want taken as they are", diffs)
	}
	_, diffs = convertOne(t, c, store("      headers: {X-Vault-Token: hvs.x}"))
	if !has(diffs, Refused, "spec.provider.vault.headers", "none starting X-Vault-") {
		t.Errorf("a Vault header in headers: %v, want refused", diffs)
	}
}
