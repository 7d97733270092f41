package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
)

// cesLabel is the namespace label a test's ClusterExternalSecret selects,
// with a value of its own so no other test's namespace matches.
const cesLabel = "e2e.veil.dev/ces"

func labelNamespace(t *testing.T, ns string, labels map[string]any) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.KubeClient.CoreV1().Namespaces().Patch(ctxFor(t), ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// newCES is a ClusterExternalSecret selecting namespaces labelled
// cesLabel=tag, reading key "app/db" property "password" of the store
// "vault" of each namespace into Secret "app".
func newCES(name, tag string) *configv1alpha1.ClusterExternalSecret {
	return &configv1alpha1.ClusterExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: configv1alpha1.ClusterExternalSecretSpec{
			ExternalSecretName:     "app-es",
			ExternalSecretMetadata: configv1alpha1.ClusterSecretMetadata{Labels: map[string]string{"team": "a"}},
			NamespaceSelection: configv1alpha1.NamespaceSelection{
				NamespaceSelectors: []*metav1.LabelSelector{{MatchLabels: map[string]string{cesLabel: tag}}},
			},
			RefreshTime: &metav1.Duration{Duration: time.Minute},
			ExternalSecretSpec: configv1alpha1.ExternalSecretSpec{
				SecretStoreRef:  ptr.To(storeRef("vault")),
				RefreshInterval: &metav1.Duration{Duration: time.Second},
				Data:            []configv1alpha1.ExternalSecretData{dataRef("password", "app/db", "password")},
				Target:          &configv1alpha1.ExternalSecretTarget{Name: "app"},
			},
		},
	}
}

func createCES(t *testing.T, c versioned.Interface, ces *configv1alpha1.ClusterExternalSecret) (*configv1alpha1.ClusterExternalSecret, error) {
	t.Helper()
	out, err := c.ConfigV1alpha1().ClusterExternalSecrets().Create(ctxFor(t), ces, metav1.CreateOptions{})
	if err == nil {
		t.Cleanup(func() {
			_ = cluster.VeilClient.ConfigV1alpha1().ClusterExternalSecrets().Delete(ctxFor(t), ces.Name, metav1.DeleteOptions{})
		})
	}
	return out, err
}

// waitCESStatus waits until the ClusterExternalSecret reports, for its
// generation, Ready with reason and the provisioned namespaces.
func waitCESStatus(t *testing.T, name, reason string, provisioned ...string) *configv1alpha1.ClusterExternalSecret {
	t.Helper()
	slices.Sort(provisioned)
	var ces *configv1alpha1.ClusterExternalSecret
	eventually(t, func() error {
		var err error
		if ces, err = cluster.VeilClient.ConfigV1alpha1().ClusterExternalSecrets().Get(ctxFor(t), name, metav1.GetOptions{}); err != nil {
			return err
		}
		c := apimeta.FindStatusCondition(ces.Status.Conditions, "Ready")
		if c == nil || c.ObservedGeneration != ces.Generation || c.Reason != reason || !slices.Equal(ces.Status.ProvisionedNamespaces, provisioned) {
			return fmt.Errorf("Ready %+v, provisioned %v, failed %+v; want %s and %v", c, ces.Status.ProvisionedNamespaces, ces.Status.FailedNamespaces, reason, provisioned)
		}
		return nil
	})
	return ces
}

func waitNoExternalSecret(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, func() error {
		_, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("ExternalSecret %s/%s still there (%v)", ns, name, err)
	})
}

// TestClusterExternalSecret: a ClusterExternalSecret creates its
// ExternalSecret in every namespace it selects, each reading through that
// namespace's own Vault store into a Secret; a namespace labelled later
// gets one, a namespace that stops matching loses it (and its Secret),
// one whose ExternalSecret of that name is someone else's is reported and
// left alone, and deleting the ClusterExternalSecret removes them all. The
// values reach the Secrets and are nowhere in a log.
func TestClusterExternalSecret(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	canary := unique("veil-canary-ces-")
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": canary}); err != nil {
		t.Fatal(err)
	}
	startSyncer(t)
	tag := unique("t")
	sel := map[string]string{cesLabel: tag}
	ns1, ns2, later, other, taken := newNamespace(t, sel), newNamespace(t, sel), newNamespace(t, nil), newNamespace(t, nil), newNamespace(t, sel)
	for _, ns := range []string{ns1, ns2, later, other, taken} {
		vaultTokenStore(t, v, ns, "vault", nil)
	}
	// Someone else's ExternalSecret of the same name: not veil-syncer's to change.
	mine := createExternalSecret(t, taken, "app-es", storeRef("vault"), nil, dataRef("mine", "app/db", "password"))

	name := unique("ces-")
	if _, err := createCES(t, cluster.VeilClient, newCES(name, tag)); err != nil {
		t.Fatal(err)
	}
	ces := waitCESStatus(t, name, "NamespacesFailed", ns1, ns2)
	if len(ces.Status.FailedNamespaces) != 1 || ces.Status.FailedNamespaces[0].Namespace != taken ||
		!strings.Contains(ces.Status.FailedNamespaces[0].Reason, "already exists") {
		t.Errorf("failedNamespaces %+v, want %s: already exists", ces.Status.FailedNamespaces, taken)
	}
	for _, ns := range []string{ns1, ns2} {
		es, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctx, "app-es", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ref := metav1.GetControllerOf(es)
		if es.Labels[configv1alpha1.ClusterExternalSecretLabel] != name || es.Labels["team"] != "a" || ref == nil || ref.UID != ces.UID {
			t.Errorf("ExternalSecret %s/app-es: labels %v, controller %+v; want the ClusterExternalSecret's", ns, es.Labels, ref)
		}
		waitSecret(t, ns, "app", func(s *corev1.Secret) error {
			if string(s.Data["password"]) != canary {
				return fmt.Errorf("Secret %s/app has %d bytes of password, want the value in Vault", ns, len(s.Data["password"]))
			}
			return nil
		})
		wantData(t, mustValue(t, ns, "app-es"), map[string]string{"password": canary})
	}
	for _, ns := range []string{later, other} {
		if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctx, "app-es", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ExternalSecret in unselected namespace %s: %v, want NotFound", ns, err)
		}
	}
	got, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(taken).Get(ctx, "app-es", metav1.GetOptions{})
	if err != nil || got.ResourceVersion != mine.ResourceVersion || len(got.OwnerReferences) != 0 {
		t.Errorf("someone else's ExternalSecret in %s was touched: %v", taken, err)
	}

	// A namespace labelled now is provisioned; one unlabelled loses its
	// ExternalSecret and, through its owner reference, its Secret.
	labelNamespace(t, later, map[string]any{cesLabel: tag})
	labelNamespace(t, ns1, map[string]any{cesLabel: nil})
	waitCESStatus(t, name, "NamespacesFailed", ns2, later)
	waitSecret(t, later, "app", func(s *corev1.Secret) error {
		if string(s.Data["password"]) != canary {
			return fmt.Errorf("Secret %s/app not written yet", later)
		}
		return nil
	})
	waitNoExternalSecret(t, ns1, "app-es")
	eventually(t, func() error {
		if _, err := cluster.KubeClient.CoreV1().Secrets(ns1).Get(ctx, "app", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Secret %s/app still there (%v)", ns1, err)
		}
		return nil
	})

	// An ExternalSecret of the ClusterExternalSecret changed by hand is put
	// back. (veil-syncer writes its status meanwhile: a conflict is retried.)
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		es, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns2).Get(ctx, "app-es", metav1.GetOptions{})
		if err != nil {
			return err
		}
		es.Spec.Data[0].SecretKey = "changed"
		_, err = cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns2).Update(ctx, es, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		es, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns2).Get(ctx, "app-es", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if es.Spec.Data[0].SecretKey != "password" {
			return fmt.Errorf("ExternalSecret %s/app-es still has secretKey %q", ns2, es.Spec.Data[0].SecretKey)
		}
		return nil
	})

	// Deleted, the ClusterExternalSecret takes its ExternalSecrets along.
	if err := cluster.VeilClient.ConfigV1alpha1().ClusterExternalSecrets().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{ns2, later} {
		waitNoExternalSecret(t, ns, "app-es")
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(taken).Get(ctx, "app-es", metav1.GetOptions{}); err != nil {
		t.Errorf("someone else's ExternalSecret in %s went with the ClusterExternalSecret: %v", taken, err)
	}

	s, err := cluster.FindCanary(ctx, canary)
	if err != nil {
		t.Fatal(err)
	}
	if s.InFiles() != 0 {
		t.Errorf("the value was found in logs: %s", s)
	}
	for _, k := range s.EtcdKeys {
		if !strings.HasPrefix(k, "/registry/secrets/") || !strings.HasSuffix(k, "/app") {
			t.Errorf("the value is in etcd key %s, which is not a target Secret", k)
		}
	}
}

// clusterBind grants a user a ClusterRole in all namespaces.
func clusterBind(t *testing.T, user, clusterRole string) {
	t.Helper()
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: unique(user + "-")},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}
	if _, err := cluster.KubeClient.RbacV1().ClusterRoleBindings().Create(ctxFor(t), crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.KubeClient.RbacV1().ClusterRoleBindings().Delete(ctxFor(t), crb.Name, metav1.DeleteOptions{})
	})
}

// clusterRole creates a ClusterRole of these rules.
func clusterRole(t *testing.T, rules ...rbacv1.PolicyRule) string {
	t.Helper()
	cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: unique("e2e-")}, Rules: rules}
	if _, err := cluster.KubeClient.RbacV1().ClusterRoles().Create(ctxFor(t), cr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.KubeClient.RbacV1().ClusterRoles().Delete(ctxFor(t), cr.Name, metav1.DeleteOptions{})
	})
	return cr.Name
}

// TestClusterExternalSecretPermissions: a ClusterExternalSecret is no way
// around the rules for ExternalSecrets. Its author needs, in all
// namespaces, what creating its ExternalSecret needs; rights granted in
// the namespaces it selects are not enough, and the refusal says what is
// missing. veil-syncer itself may write only the ExternalSecrets of a
// ClusterExternalSecret, and one it wrote that is not as the
// ClusterExternalSecret says reads nothing.
func TestClusterExternalSecretPermissions(t *testing.T) {
	ctx := ctxFor(t)
	s := startSyncer(t)
	tag := unique("t")
	ns := newNamespace(t, map[string]string{cesLabel: tag})
	createFakeStore(t, ns, "vault", configv1alpha1.FakeProviderData{Key: "app/db", Value: `{"password":"p"}`})

	writeCES := clusterRole(t, rbacv1.PolicyRule{APIGroups: []string{"config.veil.dev"}, Resources: []string{"clusterexternalsecrets"}, Verbs: []string{"create", "get"}})
	createES := clusterRole(t, rbacv1.PolicyRule{APIGroups: []string{"config.veil.dev"}, Resources: []string{"externalsecrets"}, Verbs: []string{"create"}})

	// A namespace admin everywhere the ClusterExternalSecret reaches, with
	// the right to write ClusterExternalSecrets, but no cluster-wide
	// rights on ExternalSecrets.
	nsAdmin := unique("ns-admin-")
	clusterBind(t, nsAdmin, writeCES)
	bind(t, ns, nsAdmin, "admin")
	bind(t, ns, nsAdmin, "veil:values-reader")
	_, err := createCES(t, userClient(t, nsAdmin), newCES(unique("ces-"), tag))
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may not create externalsecrets (group config.veil.dev) in all namespaces") ||
		!strings.Contains(err.Error(), "ClusterRoleBinding") {
		t.Errorf("a namespace admin's ClusterExternalSecret: %v, want forbidden: may not create externalsecrets in all namespaces", err)
	}

	// May create ExternalSecrets and read values everywhere, but use the
	// store in one namespace only: veil-syncer must not use it for them.
	author := unique("author-")
	clusterBind(t, author, writeCES)
	clusterBind(t, author, createES)
	clusterBind(t, author, "veil:values-reader")
	bind(t, ns, author, "veil:store-user")
	_, err = createCES(t, userClient(t, author), newCES(unique("ces-"), tag))
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may not use secretstores/vault (verb use, group config.veil.dev) in all namespaces") {
		t.Errorf("a ClusterExternalSecret whose author may use the store in one namespace: %v, want forbidden: may not use secretstores/vault in all namespaces", err)
	}
	// Nor read values it may not: with use everywhere but values-reader
	// in one namespace only.
	reader := unique("reader-")
	clusterBind(t, reader, writeCES)
	clusterBind(t, reader, createES)
	clusterBind(t, reader, "veil:store-user")
	bind(t, ns, reader, "veil:values-reader")
	_, err = createCES(t, userClient(t, reader), newCES(unique("ces-"), tag))
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may not get externalsecretvalues/app-es in all namespaces") {
		t.Errorf("a ClusterExternalSecret with a target whose author may read values in one namespace: %v, want forbidden", err)
	}
	if l, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("ExternalSecrets in %s after refused ClusterExternalSecrets: %v, %v", ns, l, err)
	}

	// With every right cluster-wide, the same author's is admitted and
	// provisioned.
	clusterBind(t, author, "veil:store-user")
	name := unique("ces-")
	if _, err := createCES(t, userClient(t, author), newCES(name, tag)); err != nil {
		t.Fatalf("a ClusterExternalSecret whose author has every right in all namespaces: %v", err)
	}
	waitCESStatus(t, name, "Provisioned", ns)
	wantData(t, mustValue(t, ns, "app-es"), map[string]string{"password": "p"})

	// A store named by one entry's sourceRef.storeRef is asked for too:
	// the same author may use every SecretStore, but no ClusterSecretStore.
	perEntry := newCES(unique("ces-"), tag)
	perEntry.Spec.ExternalSecretName = "per-entry"
	perEntry.Spec.ExternalSecretSpec.Data = append(perEntry.Spec.ExternalSecretSpec.Data, configv1alpha1.ExternalSecretData{
		SecretKey: "other",
		RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "app/db"},
		SourceRef: &configv1alpha1.StoreSourceRef{StoreRef: &configv1alpha1.SecretStoreRef{Name: "elsewhere", Kind: "ClusterSecretStore"}},
	})
	clusterBind(t, author, clusterRole(t, rbacv1.PolicyRule{APIGroups: []string{"externalsecrets.veil.dev"}, Resources: []string{"externalsecretvalues"}, ResourceNames: []string{"per-entry"}, Verbs: []string{"get"}}))
	_, err = createCES(t, userClient(t, author), perEntry)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may not use clustersecretstores/elsewhere (verb use, group config.veil.dev) in all namespaces") {
		t.Errorf("a ClusterExternalSecret with an entry read through a ClusterSecretStore its author may not use: %v, want forbidden", err)
	}

	// A namespace editor may not take the ExternalSecret for their own by
	// removing its label: that keeps what the author was allowed, and is
	// judged as a change of the spec.
	editor := unique("editor-")
	bind(t, ns, editor, "edit")
	_, err = userClient(t, editor).ConfigV1alpha1().ExternalSecrets(ns).Patch(ctx, "app-es", types.JSONPatchType,
		[]byte(`[{"op":"remove","path":"/metadata/labels/veil.dev~1cluster-external-secret"},{"op":"remove","path":"/metadata/ownerReferences"}]`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "veil-externalsecrets") || !strings.Contains(err.Error(), editor) {
		t.Errorf("an editor releasing a ClusterExternalSecret's ExternalSecret: %v, want forbidden", err)
	}

	// veil-syncer's own writes: only ExternalSecrets of a
	// ClusterExternalSecret, and one of those that is not as it says is
	// served nothing. (Written under its name with no veil-syncer running,
	// which would delete the forged one at once.)
	s.Stop()
	cfg := rest.CopyConfig(cluster.Admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: syncerSA}
	asSyncer := versioned.NewForConfigOrDie(cfg).ConfigV1alpha1().ExternalSecrets(ns)
	plain := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "forged", Namespace: ns},
		Spec:       configv1alpha1.ExternalSecretSpec{SecretStoreRef: ptr.To(storeRef("vault")), Data: []configv1alpha1.ExternalSecretData{dataRef("x", "app/db", "")}},
	}
	if _, err := asSyncer.Create(ctx, plain, metav1.CreateOptions{}); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "only ExternalSecrets of a ClusterExternalSecret") {
		t.Errorf("veil-syncer creating an ExternalSecret of no ClusterExternalSecret: %v, want forbidden", err)
	}
	ces, err := cluster.VeilClient.ConfigV1alpha1().ClusterExternalSecrets().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	forged := plain.DeepCopy()
	forged.Labels = map[string]string{configv1alpha1.ClusterExternalSecretLabel: name}
	forged.OwnerReferences = []metav1.OwnerReference{{APIVersion: "config.veil.dev/v1alpha1", Kind: "ClusterExternalSecret", Name: name, UID: ces.UID, Controller: ptr.To(true)}}
	if _, err := asSyncer.Create(ctx, forged, metav1.CreateOptions{}); err != nil {
		t.Fatalf("veil-syncer creating a labelled, owned ExternalSecret: %v", err)
	}
	_, err = readValue(t, ns, "forged")
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "is not that ClusterExternalSecret's externalSecretSpec") {
		t.Errorf("values of an ExternalSecret of a ClusterExternalSecret with another spec: %v, want conflict", err)
	}
	// The next veil-syncer garbage-collects it: it is the
	// ClusterExternalSecret's under a name it does not ask for.
	startSyncer(t)
	waitNoExternalSecret(t, ns, "forged")
	wantData(t, mustValue(t, ns, "app-es"), map[string]string{"password": "p"})

	// Someone else's ExternalSecret veil-syncer may neither change nor delete.
	theirs := createExternalSecret(t, ns, "theirs", storeRef("vault"), nil, dataRef("x", "app/db", ""))
	theirs.Spec.Data[0].SecretKey = "y"
	if _, err := asSyncer.Update(ctx, theirs, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("veil-syncer changing someone else's ExternalSecret: %v, want forbidden", err)
	}
	if err := asSyncer.Delete(ctx, "theirs", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("veil-syncer deleting someone else's ExternalSecret: %v, want forbidden", err)
	}
}
