package e2e

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestESOSprigTemplatesVault: an ESO-style template using Sprig functions
// renders values read from Vault into the Secret veil-syncer materialises;
// a function ESO removed, or one asked to build too much, is a
// TemplateError that names the problem and never the value.
func TestESOSprigTemplatesVault(t *testing.T) {
	startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	canary := unique("veil-canary-sprig-")
	if _, err := v.PutKV(ctx, "secret", "sprig/db", map[string]any{
		"user": "app", "password": canary, "hosts": "db-a,db-b", "config": `{"port":5432}`,
	}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "vault", nil)
	data := []configv1alpha1.ExternalSecretData{
		dataRef("user", "sprig/db", "user"), dataRef("password", "sprig/db", "password"),
		dataRef("hosts", "sprig/db", "hosts"), dataRef("config", "sprig/db", "config"),
	}
	withTemplate := func(name string, tmpl map[string]string) {
		t.Helper()
		vaultExternalSecret(t, ns, name, "vault", configv1alpha1.ExternalSecretSpec{Data: data, Target: &configv1alpha1.ExternalSecretTarget{
			Template: &configv1alpha1.ExternalSecretTemplate{EngineVersion: "v2", Data: tmpl},
		}})
	}

	withTemplate("sprig", map[string]string{
		"primary":     `{{ splitList "," .hosts | first | trimPrefix "db-" | upper }}`,
		"hosts":       `{{ join ";" (splitList "," .hosts) }}`,
		"config.yaml": `{{ dict "user" .user "port" ((fromJson .config).port | int) | toYaml }}`,
		"quoted":      `{{ .user | quote }}`,
		"fallback":    `{{ "" | default "none" }}`,
		"digest":      `{{ .password | sha256sum }}`,
		"indented":    `config:{{ .user | nindent 2 }}`,
		"password":    `{{ .password | replace "-" "_" }}`,
		"token":       `{{ len (randAlphaNum 32) }}`,
	})
	waitSecret(t, ns, "sprig", hasData(map[string]string{
		"primary":     "A",
		"hosts":       "db-a;db-b",
		"config.yaml": "port: 5432\nuser: app",
		"quoted":      `"app"`,
		"fallback":    "none",
		"digest":      fmt.Sprintf("%x", sha256.Sum256([]byte(canary))),
		"indented":    "config:\n  app",
		"password":    strings.ReplaceAll(canary, "-", "_"),
		"token":       "32",
	}))
	waitReady(t, ns, "sprig", configv1alpha1.ReasonSynced)

	for name, tc := range map[string]struct{ tmpl, want string }{
		"env":      {`{{ env "HOME" }}`, `function "env" not defined`},
		"bcrypt":   {`{{ .password | bcrypt }}`, `function "bcrypt" not defined`},
		"too-much": {`{{ repeat 100000000 .password }}`, "repeat: the result would be larger than 16 MiB"},
		"budget":   {`{{ range 100000 }}{{ $x := repeat 1000 $.password }}{{ end }}`, "over Veil's limits"},
	} {
		withTemplate(name, map[string]string{"k": tc.tmpl})
		es := waitReady(t, ns, name, configv1alpha1.ReasonTemplateError)
		msg := apimeta.FindStatusCondition(es.Status.Conditions, "Ready").Message
		if !strings.Contains(msg, tc.want) || strings.Contains(msg, canary) {
			t.Errorf("%s: Ready message %q, want it to say %q and not carry the value", name, msg, tc.want)
		}
	}
}
