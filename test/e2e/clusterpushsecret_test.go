package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestClusterPushSecret: a ClusterPushSecret creates its PushSecret in the
// namespaces it selects, and each pushes that namespace's Secret through
// that namespace's store, here each its own Vault (two PushSecrets may not
// own one remote key), where the namespace granted veil-syncer:push-source; a namespace that
// stops matching loses its PushSecret. Its author needs, in all
// namespaces, what creating the PushSecret needs: rights in one namespace
// are refused with a message saying what is missing.
func TestClusterPushSecret(t *testing.T) {
	ctx := ctxFor(t)
	startSyncer(t)
	v1, v2 := startVault(t), startVault(t)
	tag := unique("t")
	ns1, ns2 := newNamespace(t, map[string]string{cesLabel: tag}), newNamespace(t, map[string]string{cesLabel: tag})
	grantPushSource(t, ns1)
	grantPushSource(t, ns2)
	vaultWriterStore(t, v1, ns1, "vault", false)
	vaultWriterStore(t, v2, ns2, "vault", false)
	value := unique("veil-canary-cps-")
	putSource(t, ns1, "src", map[string]string{"password": value})
	putSource(t, ns2, "src", map[string]string{"password": value})

	cps := &configv1alpha1.ClusterPushSecret{
		ObjectMeta: metav1.ObjectMeta{Name: unique("cps-")},
		Spec: configv1alpha1.ClusterPushSecretSpec{
			NamespaceSelection: configv1alpha1.NamespaceSelection{
				NamespaceSelectors: []*metav1.LabelSelector{{MatchLabels: map[string]string{cesLabel: tag}}},
			},
			PushSecretSpec: configv1alpha1.PushSecretSpec{
				RefreshInterval: &metav1.Duration{Duration: time.Hour},
				SecretStoreRefs: []configv1alpha1.SecretStoreRef{storeRef("vault")},
				Selector:        configv1alpha1.PushSecretSelector{Secret: configv1alpha1.PushSecretSecret{Name: "src"}},
				Data:            []configv1alpha1.PushSecretData{{Match: match("password", "cps/"+tag, "password")}},
			},
		},
	}

	// Rights in the selected namespaces only: refused.
	writeCPS := clusterRole(t, rbacv1.PolicyRule{APIGroups: []string{"config.veil.dev"}, Resources: []string{"clusterpushsecrets"}, Verbs: []string{"create"}})
	nsAdmin := unique("ns-admin-")
	clusterBind(t, nsAdmin, writeCPS)
	for _, ns := range []string{ns1, ns2} {
		bind(t, ns, nsAdmin, "admin")
	}
	_, err := userClient(t, nsAdmin).ConfigV1alpha1().ClusterPushSecrets().Create(ctx, cps, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may not create pushsecrets (group config.veil.dev) in all namespaces") {
		t.Errorf("a namespace admin's ClusterPushSecret: %v, want forbidden: may not create pushsecrets in all namespaces", err)
	}
	createPS := clusterRole(t, rbacv1.PolicyRule{APIGroups: []string{"config.veil.dev"}, Resources: []string{"pushsecrets"}, Verbs: []string{"create"}})
	clusterBind(t, nsAdmin, createPS)
	_, err = userClient(t, nsAdmin).ConfigV1alpha1().ClusterPushSecrets().Create(ctx, cps, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may not use secretstores/vault (verb use, group config.veil.dev, each) in all namespaces") {
		t.Errorf("a ClusterPushSecret whose author may use the store in some namespaces only: %v, want forbidden", err)
	}
	for _, ns := range []string{ns1, ns2} {
		if l, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
			t.Errorf("PushSecrets in %s after refused ClusterPushSecrets: %v, %v", ns, l, err)
		}
	}

	// Granted use cluster-wide, the same author's is admitted — but not with
	// a template read from a ConfigMap they may not get in all namespaces.
	clusterBind(t, nsAdmin, "veil:store-user")
	withTemplate := cps.DeepCopy()
	withTemplate.Name = unique("cps-")
	withTemplate.Spec.PushSecretSpec.Template = &configv1alpha1.ExternalSecretTemplate{TemplateFrom: []configv1alpha1.TemplateFrom{{
		ConfigMap: &configv1alpha1.TemplateRef{Name: "push-templates", Items: []configv1alpha1.TemplateRefItem{{Key: "password"}}},
	}}}
	_, err = userClient(t, nsAdmin).ConfigV1alpha1().ClusterPushSecrets().Create(ctx, withTemplate, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may not get them (each) in all namespaces") || !strings.Contains(err.Error(), "configmaps/push-templates") {
		t.Errorf("a ClusterPushSecret whose template names a ConfigMap its author may get in some namespaces only: %v, want forbidden", err)
	}
	// Nor pushing a Secret they may read in the selected namespaces only:
	// veil-syncer would read it everywhere on their behalf.
	_, err = userClient(t, nsAdmin).ConfigV1alpha1().ClusterPushSecrets().Create(ctx, cps, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "names secrets/src, which veil-syncer would read and push") ||
		!strings.Contains(err.Error(), "may not get it in all namespaces") {
		t.Errorf("a ClusterPushSecret whose author may get its source Secret in some namespaces only: %v, want forbidden", err)
	}
	clusterBind(t, nsAdmin, clusterRole(t, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"src"}, Verbs: []string{"get"}}))
	waitAllowed(t, nsAdmin, authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Name: "src"}, true)
	if _, err := userClient(t, nsAdmin).ConfigV1alpha1().ClusterPushSecrets().Create(ctx, cps, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a ClusterPushSecret whose author has the rights in all namespaces: %v", err)
	}
	t.Cleanup(func() {
		_ = cluster.VeilClient.ConfigV1alpha1().ClusterPushSecrets().Delete(ctxFor(t), cps.Name, metav1.DeleteOptions{})
	})
	for _, ns := range []string{ns1, ns2} {
		ps := waitPush(t, 30*time.Second, pushReady(ns, cps.Name, configv1alpha1.ReasonSynced, ""))
		if ps.Labels[configv1alpha1.ClusterPushSecretLabel] != cps.Name || metav1.GetControllerOf(ps) == nil {
			t.Errorf("PushSecret %s/%s: labels %v, owners %v", ns, ps.Name, ps.Labels, ps.OwnerReferences)
		}
	}
	waitVault(t, v1, "cps/"+tag, "password", value)
	waitVault(t, v2, "cps/"+tag, "password", value)
	eventually(t, func() error {
		got, err := cluster.VeilClient.ConfigV1alpha1().ClusterPushSecrets().Get(ctx, cps.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(got.Status.Conditions, "Ready")
		if c == nil || c.Reason != "Provisioned" || len(got.Status.ProvisionedNamespaces) != 2 {
			return fmt.Errorf("Ready %+v, provisioned %v", c, got.Status.ProvisionedNamespaces)
		}
		return nil
	})

	// ns2 stops matching: its PushSecret goes, ns1's stays.
	labelNamespace(t, ns2, map[string]any{cesLabel: nil})
	eventually(t, func() error {
		if _, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns2).Get(ctx, cps.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("PushSecret %s/%s still there (%v)", ns2, cps.Name, err)
		}
		return nil
	})
	if _, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns1).Get(ctx, cps.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("PushSecret of %s, still selected: %v", ns1, err)
	}

	s, err := cluster.FindCanary(ctx, value)
	if err != nil {
		t.Fatal(err)
	}
	if s.InFiles() != 0 {
		t.Errorf("the pushed value was found in logs: %s", s)
	}
}
