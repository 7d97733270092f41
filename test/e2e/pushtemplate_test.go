package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestPushSecretTemplate: ESO's full-pushsecret.yaml on real Vault: the
// source Secret is rendered (template.data and a templateFrom ConfigMap)
// before the push, and the rendered value, not the source's, reaches
// Vault; status and Events carry neither. Naming a ConfigMap needs get on
// it (admission policy): a template is no way to read one.
func TestPushSecretTemplate(t *testing.T) {
	startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	canary := unique("pikachu-")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "application-config-tmpl", Namespace: ns},
		Data: map[string]string{"config.yml": `best: {{ index . "best-pokemon-src" }}`}}
	if _, err := cluster.KubeClient.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src := putSource(t, ns, "pokedex-credentials", map[string]string{"best-pokemon-src": canary})
	tmpl := &configv1alpha1.ExternalSecretTemplate{
		EngineVersion: "v2",
		Data:          map[string]string{"best-pokemon": `{{ index . "best-pokemon-src" | toString | upper }} is the really best!`},
		TemplateFrom: []configv1alpha1.TemplateFrom{{ConfigMap: &configv1alpha1.TemplateRef{Name: "application-config-tmpl",
			Items: []configv1alpha1.TemplateRefItem{{Key: "config.yml"}}}}},
	}
	newPushSecret(t, ns, "pushsecret-example", "pokedex-credentials", func(s *configv1alpha1.PushSecretSpec) {
		s.DeletionPolicy = configv1alpha1.PushSecretDeletionPolicyDelete
		s.Template = tmpl
	}, []configv1alpha1.SecretStoreRef{storeRef("vault")},
		match("best-pokemon", "destination-secret", "best-pokemon-dst"), match("config.yml", "destination-secret", "config"))
	waitPush(t, 30*time.Second, pushReady(ns, "pushsecret-example", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitVault(t, v, "destination-secret", "best-pokemon-dst", strings.ToUpper(canary)+" is the really best!")
	waitVault(t, v, "destination-secret", "config", "best: "+canary)
	out := kubectl(t, "", "get", "pushsecrets,events", "-n", ns, "-o", "yaml")
	if strings.Contains(out, canary) || strings.Contains(out, strings.ToUpper(canary)) {
		t.Error("the PushSecret or the Events carry a value")
	}
	sightings, err := cluster.FindCanary(ctx, canary)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(slices.Values(sightings.EtcdKeys)), []string{"/registry/secrets/" + ns + "/pokedex-credentials"}; !slices.Equal(got, want) {
		t.Errorf("canary in etcd keys %v, want exactly %v", got, want)
	}
	if sightings.InFiles() != 0 {
		t.Errorf("canary found in logs: %s", sightings)
	}
	deletePushSecret(t, ns, "pushsecret-example")

	// A user who may create PushSecrets, use the store and read the source
	// Secret, but not get the ConfigMap, may not name it.
	user := unique("push-author-")
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "push-author", Namespace: ns},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"config.veil.dev"}, Resources: []string{"pushsecrets"}, Verbs: []string{"create", "get"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"pokedex-credentials"}, Verbs: []string{"get"}},
		}}
	if _, err := cluster.KubeClient.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.KubeClient.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "push-author", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "push-author"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grantUse(t, ns, user, "secretstores", "vault")
	waitAllowed(t, user, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Group: "config.veil.dev", Resource: "pushsecrets"}, true)
	ps := &configv1alpha1.PushSecret{ObjectMeta: metav1.ObjectMeta{Name: "by-user", Namespace: ns}, Spec: configv1alpha1.PushSecretSpec{
		SecretStoreRefs: []configv1alpha1.SecretStoreRef{storeRef("vault")},
		Selector:        configv1alpha1.PushSecretSelector{Secret: configv1alpha1.PushSecretSecret{Name: "pokedex-credentials"}},
		Template:        tmpl,
		Data:            []configv1alpha1.PushSecretData{{Match: match("config.yml", "by-user", "config")}},
	}}
	_, err = userClient(t, user).ConfigV1alpha1().PushSecrets(ns).Create(ctx, ps, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "spec.template.templateFrom names configmaps/application-config-tmpl") {
		t.Errorf("a user who may not get the ConfigMap named it: %v", err)
	}
	ps.Spec.Template = &configv1alpha1.ExternalSecretTemplate{Data: map[string]string{"config.yml": "inline"}}
	if _, err := userClient(t, user).ConfigV1alpha1().PushSecrets(ns).Create(ctx, ps, metav1.CreateOptions{}); err != nil {
		t.Errorf("template.data needs no ConfigMap: %v", err)
	}
}
