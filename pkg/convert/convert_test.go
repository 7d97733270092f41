package convert

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func converted(t *testing.T) (map[string]*unstructured.Unstructured, map[string][]Difference) {
	t.Helper()
	f, err := os.Open("testdata/eso.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in, err := Read(f)
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
		name := describe(o)
		out[name], diffs[name] = v, d
	}
	return out, diffs
}

// has says whether diffs hold one of severity sev about field.
func has(diffs []Difference, sev Severity, field, text string) bool {
	for _, d := range diffs {
		if d.Severity == sev && d.Field == field && strings.Contains(d.Message, text) {
			return true
		}
	}
	return false
}

func TestConvertReportsEveryDifference(t *testing.T) {
	out, diffs := converted(t)

	plain := out["SecretStore team-a/vault-plain"]
	if plain == nil || plain.GetAPIVersion() != "config.veil.dev/v1alpha1" {
		t.Fatalf("vault-plain: %v", plain)
	}
	if plain.GetResourceVersion() != "" || plain.GetUID() != "" {
		t.Error("a live object's resourceVersion and uid must not reach the manifest")
	}
	if _, ok := plain.Object["status"]; ok {
		t.Error("status must not reach the manifest")
	}
	if !has(diffs["SecretStore team-a/vault-plain"], Behaviour, "spec.provider.vault.server", "--allow-plaintext-providers") {
		t.Errorf("http:// Vault: %v", diffs["SecretStore team-a/vault-plain"])
	}
	if !has(diffs["SecretStore team-a/aws-no-auth"], Behaviour, "spec.provider.aws.auth", "ClusterSecretStore") {
		t.Errorf("AWS SecretStore without auth: %v", diffs["SecretStore team-a/aws-no-auth"])
	}
	if !has(diffs["SecretStore team-a/cross-namespace"], Behaviour, "spec.provider.vault.auth.tokenSecretRef.namespace", "team-b") {
		t.Errorf("credentials in another namespace: %v", diffs["SecretStore team-a/cross-namespace"])
	}
	open := diffs["ClusterSecretStore open"]
	if !has(open, Behaviour, "spec.conditions", "no namespace") || !has(open, Behaviour, "spec.controller", "changes nothing") {
		t.Errorf("ClusterSecretStore without conditions, with spec.controller: %v", open)
	}
	if o := out["ClusterSecretStore open"]; o == nil || o.Object["spec"].(map[string]any)["controller"] == nil {
		t.Error("spec.controller is admitted, so it must stay in the printed object")
	}
	if !has(diffs["ExternalSecret team-a/db"], Dropped, "spec.someFutureField", "") {
		t.Errorf("unknown field: %v", diffs["ExternalSecret team-a/db"])
	}
	if o := out["ExternalSecret team-a/db"]; o == nil || o.Object["spec"].(map[string]any)["someFutureField"] != nil {
		t.Error("a dropped field must be gone from the printed object")
	}
	if !has(diffs["ExternalSecret team-a/two-providers"], Refused, "spec.data[0].remoteRef.decodingStrategy", "Unsupported value") {
		t.Errorf("enum: %v", diffs["ExternalSecret team-a/two-providers"])
	}
	if out["ECRAuthorizationToken team-a/ecr"] != nil || !has(diffs["ECRAuthorizationToken team-a/ecr"], NotConverted, "", "its only generator is Password") {
		t.Errorf("a generator: %v", diffs["ECRAuthorizationToken team-a/ecr"])
	}
	if s := out["Secret team-a/vault-token"]; s == nil || s.GetAPIVersion() != "v1" || len(diffs["Secret team-a/vault-token"]) != 0 {
		t.Errorf("a Secret in the same file is printed as it is: %v %v", s, diffs["Secret team-a/vault-token"])
	}
}

func TestConvertValidObjectHasNoRefusals(t *testing.T) {
	_, diffs := converted(t)
	for _, d := range diffs["SecretStore team-a/vault-plain"] {
		if d.Severity == Refused || d.Severity == Dropped {
			t.Errorf("an object Veil takes as it is: %v", d)
		}
	}
}

func TestCommandOutput(t *testing.T) {
	cmd := NewCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"-f", "testdata", "--strict"})
	err := cmd.Execute()
	if !errors.Is(err, ErrStrict) {
		t.Fatalf("--strict with refusals: %v", err)
	}
	printed := stdout.String()
	back, err := Read(strings.NewReader(printed))
	if err != nil {
		t.Fatalf("the output must read back as manifests: %v", err)
	}
	// Eleven of the twelve objects (eso.yaml's eight, vault-auth's four)
	// are printed; the generator is not.
	if len(back) != 11 {
		t.Errorf("%d objects printed, want 11", len(back))
	}
	for _, want := range []string{"# veil convert: ECRAuthorizationToken team-a/ecr: not converted", "# veil convert: ClusterSecretStore open spec.conditions: behaviour"} {
		if !strings.Contains(printed, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !strings.Contains(stderr.String(), "10 ESO objects converted: 7 taken as they are, 2 refused, 1 with dropped fields, 5 with behaviour differences; 1 ESO objects not converted; 1 other objects passed through") {
		t.Errorf("summary: %s", stderr.String())
	}
}

func TestReadRefusesWhatIsNotAManifest(t *testing.T) {
	for _, in := range []string{"kind: Secret\n", "apiVersion: v1\n", "a: [\n"} {
		if _, err := Read(strings.NewReader(in)); err == nil {
			t.Errorf("%q read without error", in)
		}
	}
	objs, err := Read(strings.NewReader("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n"))
	if err != nil || len(objs) != 1 || objs[0].GetName() != "a" {
		t.Errorf("a List is read as its items: %v, %v", objs, err)
	}
}
