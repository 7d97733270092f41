package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	"github.com/veil-dev/veil/pkg/syncer"
	"github.com/veil-dev/veil/test/harness"
)

// The attacker suite of tenant isolation: what kube-apiserver itself
// refuses, through Veil's ValidatingAdmissionPolicies and RBAC, to users
// holding the built-in roles and to a stolen veil-syncer token. Every
// refusal is checked twice: the answer, and that nothing changed.

// attacker is a user acting through impersonation, as kubectl --as does:
// kube-apiserver authorises and admits the request as that user.
type attacker struct {
	name string
	kube kubernetes.Interface
	veil versioned.Interface
}

func impersonate(t *testing.T, user string) attacker {
	t.Helper()
	cfg := rest.CopyConfig(cluster.Admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	return attacker{name: user, kube: kubernetes.NewForConfigOrDie(cfg), veil: versioned.NewForConfigOrDie(cfg)}
}

// waitAllowed waits until kube-apiserver's authorizer answers want for
// user: kube-controller-manager aggregates Veil's roles into view, edit
// and admin a moment after a binding to them, or a role, is created.
func waitAllowed(t *testing.T, user string, attrs authorizationv1.ResourceAttributes, want bool) {
	t.Helper()
	eventually(t, func() error {
		sar, err := cluster.KubeClient.AuthorizationV1().SubjectAccessReviews().Create(ctxFor(t), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: user, Groups: []string{"system:authenticated"}, ResourceAttributes: &attrs},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if sar.Status.Allowed != want {
			return fmt.Errorf("%s %s %s/%s in %q: allowed %v, want %v", user, attrs.Verb, attrs.Resource, attrs.Name, attrs.Namespace, sar.Status.Allowed, want)
		}
		return nil
	})
}

func esAttrs(ns, verb string) authorizationv1.ResourceAttributes {
	return authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: "config.veil.dev", Resource: "externalsecrets"}
}

func useAttrs(ns, resource, name string) authorizationv1.ResourceAttributes {
	return authorizationv1.ResourceAttributes{Namespace: ns, Verb: "use", Group: "config.veil.dev", Resource: resource, Name: name}
}

// bindBuiltIn binds one of the built-in roles (view, edit, admin) and waits
// until its aggregated rules include Veil's.
func bindBuiltIn(t *testing.T, ns, user, role string) {
	t.Helper()
	bind(t, ns, user, role)
	verb := map[string]string{"view": "get", "edit": "create", "admin": "create"}[role]
	waitAllowed(t, user, esAttrs(ns, verb), true)
	if role == "admin" {
		waitAllowed(t, user, useAttrs(ns, "secretstores", "any"), true)
	}
}

// grantUse creates a ClusterRole allowing use on one store by name and
// binds it to user in ns, as a cluster admin would.
func grantUse(t *testing.T, ns, user, resource, store string) {
	t.Helper()
	ctx := ctxFor(t)
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: unique("veil-e2e-use-")},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"config.veil.dev"}, Resources: []string{resource}, ResourceNames: []string{store}, Verbs: []string{"use"}}},
	}
	if _, err := cluster.KubeClient.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.KubeClient.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	bind(t, ns, user, role.Name)
	waitAllowed(t, user, useAttrs(ns, resource, store), true)
}

// newClusterStore creates a fake ClusterSecretStore whose conditions name
// the namespaces, so that only `use` can stop a reference to it.
func newClusterStore(t *testing.T, namespaces []string, data ...configv1alpha1.FakeProviderData) string {
	t.Helper()
	css := &configv1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: unique("css-")},
		Spec: configv1alpha1.ClusterSecretStoreSpec{
			SecretStoreSpec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{Data: data}}},
			Conditions:      []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: namespaces}},
		},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Create(ctxFor(t), css, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Delete(context.Background(), css.Name, metav1.DeleteOptions{})
	})
	return css.Name
}

func clusterStoreRef(name string) configv1alpha1.SecretStoreRef {
	return configv1alpha1.SecretStoreRef{Name: name, Kind: configv1alpha1.ClusterSecretStoreKind}
}

func externalSecret(ns, name string, store configv1alpha1.SecretStoreRef, target *configv1alpha1.ExternalSecretTarget, data ...configv1alpha1.ExternalSecretData) *configv1alpha1.ExternalSecret {
	return &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(store), Data: data, Target: target},
	}
}

func pushSecret(ns, name string, stores ...configv1alpha1.SecretStoreRef) *configv1alpha1.PushSecret {
	return &configv1alpha1.PushSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: configv1alpha1.PushSecretSpec{
			SecretStoreRefs: stores,
			Selector:        configv1alpha1.PushSecretSelector{Secret: configv1alpha1.PushSecretSecret{Name: "source"}},
			Data:            []configv1alpha1.PushSecretData{{Match: match("k", "pushed/k", "")}},
		},
	}
}

// refused checks that err is kube-apiserver's 403 from the named admission
// policy, with a message containing each of want.
func refused(t *testing.T, what string, err error, policy string, want ...string) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Errorf("%s: %v, want 403 Forbidden from ValidatingAdmissionPolicy %s", what, err, policy)
		return
	}
	msg := err.Error()
	for _, w := range append([]string{"ValidatingAdmissionPolicy '" + policy + "'"}, want...) {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: the refusal does not say %q: %s", what, w, msg)
		}
	}
}

func esAbsent(t *testing.T, ns, name string) {
	t.Helper()
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ExternalSecret %s/%s: %v, want it never created", ns, name, err)
	}
}

func secretAbsent(t *testing.T, ns, name string) {
	t.Helper()
	if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Get(ctxFor(t), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Secret %s/%s: %v, want none", ns, name, err)
	}
}

// TestIsolationEditCannotMaterialise is the exploit of issue 12, finding
// 1: a user with the built-in edit role, who may not read values, asks
// veil-syncer to write a value into a Secret that outlives the
// ExternalSecret. Materialising is reading, so kube-apiserver refuses it,
// naming the permission; a values reader who may use the store does it.
func TestIsolationEditCannotMaterialise(t *testing.T) {
	startSyncer(t)
	ns := newNamespace(t, nil)
	root := unique("root-only-canary-")
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "admin/root", Value: root},
		configv1alpha1.FakeProviderData{Key: "app/password", Value: "app-password"})
	createExternalSecret(t, ns, "app", storeRef("store"), nil, dataRef("password", "app/password", ""))

	mallory := impersonate(t, unique("mallory-"))
	bindBuiltIn(t, ns, mallory.name, "edit")
	waitAllowed(t, mallory.name, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Group: "externalsecrets.veil.dev", Resource: "externalsecretvalues"}, false)

	orphan := &configv1alpha1.ExternalSecretTarget{Name: "exfil", CreationPolicy: configv1alpha1.CreatePolicyOrphan}
	_, err := mallory.veil.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t),
		externalSecret(ns, "exfil", storeRef("store"), orphan, dataRef("root", "admin/root", "")), metav1.CreateOptions{})
	refused(t, "edit creates an ExternalSecret with a target", err, "veil-externalsecrets",
		"may not get externalsecretvalues/exfil in namespace "+ns, "veil:values-reader")

	// Adding a target to an ExternalSecret someone else wrote is the same.
	app, err := mallory.veil.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	app.Spec.Target = orphan
	_, err = mallory.veil.ConfigV1alpha1().ExternalSecrets(ns).Update(ctxFor(t), app, metav1.UpdateOptions{})
	refused(t, "edit adds a target", err, "veil-externalsecrets", "may not get externalsecretvalues/app", "veil:values-reader")

	// The same request from a values reader who may use the store.
	alice := impersonate(t, unique("alice-"))
	bindBuiltIn(t, ns, alice.name, "edit")
	bind(t, ns, alice.name, "veil:values-reader")
	bind(t, ns, alice.name, "veil:store-user")
	waitAllowed(t, alice.name, useAttrs(ns, "secretstores", "store"), true)
	allowed := &configv1alpha1.ExternalSecretTarget{Name: "allowed", CreationPolicy: configv1alpha1.CreatePolicyOrphan}
	if _, err := alice.veil.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t),
		externalSecret(ns, "allowed", storeRef("store"), allowed, dataRef("root", "admin/root", "")), metav1.CreateOptions{}); err != nil {
		t.Fatalf("a values reader with use on the store: %v", err)
	}
	// The syncer materialises alice's; mallory's left nothing to sync.
	waitSecret(t, ns, "allowed", hasData(map[string]string{"root": root}))
	waitReady(t, ns, "allowed", configv1alpha1.ReasonSynced)
	esAbsent(t, ns, "exfil")
	secretAbsent(t, ns, "exfil")
	got, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), "app", metav1.GetOptions{})
	if err != nil || got.Spec.Target != nil {
		t.Errorf("ExternalSecret app after the refused update: target %+v, %v; want no target", got.Spec.Target, err)
	}
	secretAbsent(t, ns, "app")
}

// TestIsolationUsingAStoreIsAPermission: referencing a store from an
// ExternalSecret or a PushSecret needs `use` on it in the namespace.
// Namespace admins have it on their SecretStores and may grant it; edit
// does not; nobody has it on a ClusterSecretStore until a cluster admin
// grants that store to that namespace.
func TestIsolationUsingAStoreIsAPermission(t *testing.T) {
	ns, other := newNamespace(t, nil), newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	css := newClusterStore(t, []string{ns, other}, configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	cssOther := newClusterStore(t, []string{ns, other}, configv1alpha1.FakeProviderData{Key: "k", Value: "v"})

	ada := impersonate(t, unique("ada-"))
	for _, n := range []string{ns, other} {
		bindBuiltIn(t, n, ada.name, "admin")
	}
	eve := impersonate(t, unique("eve-"))
	bindBuiltIn(t, ns, eve.name, "edit")
	esClient := func(a attacker) func(*configv1alpha1.ExternalSecret) error {
		return func(es *configv1alpha1.ExternalSecret) error {
			_, err := a.veil.ConfigV1alpha1().ExternalSecrets(es.Namespace).Create(ctxFor(t), es, metav1.CreateOptions{})
			return err
		}
	}
	createPS := func(a attacker, ps *configv1alpha1.PushSecret) error {
		_, err := a.veil.ConfigV1alpha1().PushSecrets(ps.Namespace).Create(ctxFor(t), ps, metav1.CreateOptions{})
		return err
	}

	// edit alone: neither an ExternalSecret nor a PushSecret through the store.
	err := esClient(eve)(externalSecret(ns, "eve", storeRef("store"), nil, dataRef("k", "k", "")))
	refused(t, "edit references a SecretStore", err, "veil-externalsecrets", "may not use secretstores/store", "veil:store-user")
	err = createPS(eve, pushSecret(ns, "eve", storeRef("store")))
	refused(t, "edit pushes through a SecretStore", err, "veil-pushsecrets", "may not use secretstores/store (verb use", "veil:store-user")
	esAbsent(t, ns, "eve")
	if _, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Get(ctxFor(t), "eve", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("PushSecret eve: %v, want it never created", err)
	}

	// admin uses the namespace's SecretStores, and grants that to eve.
	if err := esClient(ada)(externalSecret(ns, "ada", storeRef("store"), nil, dataRef("k", "k", ""))); err != nil {
		t.Errorf("admin references its namespace's SecretStore: %v", err)
	}
	grant := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "eve-store-user"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "veil:store-user"},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: eve.name}},
	}
	if _, err := ada.kube.RbacV1().RoleBindings(ns).Create(ctxFor(t), grant, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a namespace admin grants veil:store-user: %v", err)
	}
	waitAllowed(t, eve.name, useAttrs(ns, "secretstores", "store"), true)
	if err := esClient(eve)(externalSecret(ns, "eve", storeRef("store"), nil, dataRef("k", "k", ""))); err != nil {
		t.Errorf("edit with veil:store-user references the SecretStore: %v", err)
	}
	if err := createPS(eve, pushSecret(ns, "eve", storeRef("store"))); err != nil {
		t.Errorf("edit with veil:store-user pushes through the SecretStore: %v", err)
	}

	// A ClusterSecretStore whose conditions name the namespace is still not
	// for admin to use, nor to grant.
	err = esClient(ada)(externalSecret(ns, "shared", clusterStoreRef(css), nil, dataRef("k", "k", "")))
	refused(t, "admin references a ClusterSecretStore", err, "veil-externalsecrets",
		"may not use clustersecretstores/"+css, "resourceNames: ["+css+"]")
	err = createPS(eve, pushSecret(ns, "shared", storeRef("store"), clusterStoreRef(css)))
	refused(t, "a PushSecret naming a ClusterSecretStore among others", err, "veil-pushsecrets", "may not use clustersecretstores/"+css, "resourceNames: ["+css+"]")
	selfGrant := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "use-shared"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"config.veil.dev"}, Resources: []string{"clustersecretstores"}, ResourceNames: []string{css}, Verbs: []string{"use"}}},
	}
	if _, err := ada.kube.RbacV1().Roles(ns).Create(ctxFor(t), selfGrant, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("admin grants itself use of a ClusterSecretStore: %v, want 403 (RBAC escalation)", err)
	}
	esAbsent(t, ns, "shared")

	// A cluster admin grants one store to one namespace by name.
	grantUse(t, ns, ada.name, "clustersecretstores", css)
	if err := esClient(ada)(externalSecret(ns, "shared", clusterStoreRef(css), nil, dataRef("k", "k", ""))); err != nil {
		t.Errorf("admin with use on %s in %s: %v", css, ns, err)
	}
	err = esClient(ada)(externalSecret(ns, "other-store", clusterStoreRef(cssOther), nil, dataRef("k", "k", "")))
	refused(t, "a ClusterSecretStore not granted", err, "veil-externalsecrets", "may not use clustersecretstores/"+cssOther)
	err = esClient(ada)(externalSecret(other, "shared", clusterStoreRef(css), nil, dataRef("k", "k", "")))
	refused(t, "the granted ClusterSecretStore from another namespace", err, "veil-externalsecrets", "may not use clustersecretstores/"+css, "namespace "+other)
	esAbsent(t, ns, "other-store")
	esAbsent(t, other, "shared")

	// Repointing an existing PushSecret at a store is using it too.
	ps, err := eve.veil.ConfigV1alpha1().PushSecrets(ns).Get(ctxFor(t), "eve", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := ps.Spec.DeepCopy()
	ps.Spec.SecretStoreRefs = []configv1alpha1.SecretStoreRef{clusterStoreRef(cssOther)}
	_, err = eve.veil.ConfigV1alpha1().PushSecrets(ns).Update(ctxFor(t), ps, metav1.UpdateOptions{})
	refused(t, "a PushSecret repointed at a ClusterSecretStore", err, "veil-pushsecrets", "may not use clustersecretstores/"+cssOther)
	after, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Get(ctxFor(t), "eve", metav1.GetOptions{})
	if err != nil || !equality.Semantic.DeepEqual(after.Spec, *before) {
		t.Errorf("PushSecret eve changed after a refused update: %+v, %v", after.Spec, err)
	}
}

// TestIsolationPushSecretNeedsItsSource: veil-syncer reads a PushSecret's
// source Secret with its own identity, wherever the namespace opted in to
// pushes, so a tenant who may create PushSecrets and use a store but may
// not read a Secret cannot copy it out through one: naming, or repointing
// at, a Secret its author may not get is refused before anything exists.
func TestIsolationPushSecretNeedsItsSource(t *testing.T) {
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	mal := impersonate(t, unique("mal-"))
	bind(t, ns, mal.name, "veil:definitions-editor")
	bind(t, ns, mal.name, "veil:store-user")
	waitAllowed(t, mal.name, useAttrs(ns, "secretstores", "store"), true)
	getSecret := func(name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "secrets", Name: name}
	}
	waitAllowed(t, mal.name, getSecret("source"), false)
	create := func(ps *configv1alpha1.PushSecret) error {
		_, err := mal.veil.ConfigV1alpha1().PushSecrets(ns).Create(ctxFor(t), ps, metav1.CreateOptions{})
		return err
	}

	err := create(pushSecret(ns, "mal", storeRef("store")))
	refused(t, "a PushSecret of a Secret its author may not read", err, "veil-pushsecrets",
		"names secrets/source, which veil-syncer would read and push", "may not get it in namespace "+ns, "resourceNames")
	if _, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Get(ctxFor(t), "mal", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("PushSecret mal: %v, want it never created", err)
	}

	// Granted get on that one Secret by name, the same PushSecret is admitted.
	bind(t, ns, mal.name, clusterRole(t, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"source"}, Verbs: []string{"get"}}))
	waitAllowed(t, mal.name, getSecret("source"), true)
	if err := create(pushSecret(ns, "mal", storeRef("store"))); err != nil {
		t.Fatalf("a PushSecret of a Secret its author may get: %v", err)
	}

	// Three stores are three authorization checks, more than one CEL
	// expression may make: each validation asks about two at most.
	createFakeStore(t, ns, "store-2", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	createFakeStore(t, ns, "store-3", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	if err := create(pushSecret(ns, "three", storeRef("store"), storeRef("store-2"), storeRef("store-3"))); err != nil {
		t.Errorf("a PushSecret through three stores its author may use: %v", err)
	}

	// Repointing it at another Secret is naming that one: refused, unchanged.
	ps, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Get(ctxFor(t), "mal", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ps.Spec.Selector.Secret.Name = "someone-elses"
	_, err = mal.veil.ConfigV1alpha1().PushSecrets(ns).Update(ctxFor(t), ps, metav1.UpdateOptions{})
	refused(t, "a PushSecret repointed at a Secret its author may not read", err, "veil-pushsecrets", "names secrets/someone-elses")
	after, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Get(ctxFor(t), "mal", metav1.GetOptions{})
	if err != nil || after.Spec.Selector.Secret.Name != "source" {
		t.Errorf("PushSecret mal after a refused repoint: %+v, %v", after.Spec.Selector, err)
	}
}

// TestIsolationSecretStoreNeedsItsCredentials: veil-apiserver reads the
// Secrets a SecretStore names and requests tokens for the ServiceAccounts
// it names, with its own identity, so writing a store is no way to use
// credentials one may not read: a subject holding veil:stores-admin alone
// is refused, told what to grant, until it may get the Secret (or create
// the ServiceAccount's token). Namespace admins write such stores as before.
func TestIsolationSecretStoreNeedsItsCredentials(t *testing.T) {
	ns := newNamespace(t, nil)
	sam := impersonate(t, unique("sam-"))
	bind(t, ns, sam.name, "veil:stores-admin")
	waitAllowed(t, sam.name, useAttrs(ns, "secretstores", "any"), true)
	attrs := func(verb, resource, sub, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: resource, Subresource: sub, Name: name}
	}
	waitAllowed(t, sam.name, attrs("get", "secrets", "", "team-vault-token"), false)
	vaultStore := func(name string, auth configv1alpha1.VaultAuth, ca *configv1alpha1.CAProvider) *configv1alpha1.SecretStore {
		return &configv1alpha1.SecretStore{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{
				Server: "https://vault.example:8200", Auth: auth, CAProvider: ca,
			}}},
		}
	}
	create := func(a attacker, s *configv1alpha1.SecretStore) error {
		_, err := a.veil.ConfigV1alpha1().SecretStores(ns).Create(ctxFor(t), s, metav1.CreateOptions{})
		return err
	}
	token := configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "team-vault-token", Key: "token"}}
	k8s := configv1alpha1.VaultAuth{Kubernetes: &configv1alpha1.VaultKubernetesAuth{Role: "app",
		ServiceAccountRef: &configv1alpha1.ServiceAccountSelector{Name: "deployer"}}}
	ca := &configv1alpha1.CAProvider{Type: "ConfigMap", Name: "vault-ca", Key: "ca.crt"}

	refused(t, "a store naming a Secret its author may not read", create(sam, vaultStore("token", token, nil)), "veil-secretstores",
		"names secrets/team-vault-token", "may not get it in namespace "+ns, "resourceNames")
	refused(t, "a store naming a ServiceAccount its author may not act as", create(sam, vaultStore("k8s", k8s, nil)), "veil-secretstores",
		"names serviceaccounts/deployer", "may not create serviceaccounts/token")
	for _, name := range []string{"token", "k8s"} {
		if _, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Get(ctxFor(t), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("SecretStore %s: %v, want it never created", name, err)
		}
	}

	// Granted get on the one Secret by name, the token store is admitted;
	// repointing it at another Secret is refused.
	bind(t, ns, sam.name, clusterRole(t, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"team-vault-token"}, Verbs: []string{"get"}}))
	waitAllowed(t, sam.name, attrs("get", "secrets", "", "team-vault-token"), true)
	if err := create(sam, vaultStore("token", token, nil)); err != nil {
		t.Fatalf("a store naming a Secret its author may get: %v", err)
	}
	s, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Get(ctxFor(t), "token", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Provider.Vault.Auth.TokenSecretRef.Name = "root-token"
	_, err = sam.veil.ConfigV1alpha1().SecretStores(ns).Update(ctxFor(t), s, metav1.UpdateOptions{})
	refused(t, "a store repointed at a Secret its author may not read", err, "veil-secretstores", "names secrets/root-token")
	// With the token Secret readable, its CA bundle's ConfigMap is still one
	// more thing veil-apiserver would read for it.
	refused(t, "a store naming a CA ConfigMap its author may not read", create(sam, vaultStore("ca", token, ca)), "veil-secretstores",
		"names configmaps/vault-ca as its CA bundle", "may not get it in namespace "+ns)
	if _, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Get(ctxFor(t), "ca", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("SecretStore ca: %v, want it never created", err)
	}

	// A namespace admin (veil:stores-admin through admin) writes all three.
	ada := impersonate(t, unique("ada-"))
	bindBuiltIn(t, ns, ada.name, "admin")
	waitAllowed(t, ada.name, attrs("create", "serviceaccounts", "token", "deployer"), true)
	for name, s := range map[string]*configv1alpha1.SecretStore{"admin-token": vaultStore("admin-token", token, nil), "admin-k8s": vaultStore("admin-k8s", k8s, nil), "admin-ca": vaultStore("admin-ca", token, ca)} {
		if err := create(ada, s); err != nil {
			t.Errorf("a namespace admin writes store %s: %v", name, err)
		}
	}
}

// TestIsolationPerObjectValueGrantsHold: a user granted the values of one
// ExternalSecret by resourceNames, who may also edit it (edit), cannot
// point it at other remote keys: changing what it reads needs `use` on the
// store. What such a user can do, and what widens it, is shown too.
func TestIsolationPerObjectValueGrantsHold(t *testing.T) {
	ns := newNamespace(t, nil)
	appValue, rootValue := unique("app-value-"), unique("root-value-")
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "app/password", Value: appValue},
		configv1alpha1.FakeProviderData{Key: "admin/root", Value: rootValue})
	createExternalSecret(t, ns, "app", storeRef("store"), nil, dataRef("password", "app/password", ""))
	createExternalSecret(t, ns, "root", storeRef("store"), nil, dataRef("password", "admin/root", ""))

	bob := impersonate(t, unique("bob-"))
	bindBuiltIn(t, ns, bob.name, "edit")
	reader := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "app-values"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"externalsecrets.veil.dev"}, Resources: []string{"externalsecretvalues"},
			ResourceNames: []string{"app"}, Verbs: []string{"get"}}},
	}
	if _, err := cluster.KubeClient.RbacV1().Roles(ns).Create(ctxFor(t), reader, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bob-app-values"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: reader.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: bob.name}},
	}
	if _, err := cluster.KubeClient.RbacV1().RoleBindings(ns).Create(ctxFor(t), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	values := bob.veil.ExternalsecretsV1alpha1().ExternalSecretValues(ns)
	readApp := func() string {
		t.Helper()
		var got string
		eventually(t, func() error {
			v, err := values.Get(ctxFor(t), "app", metav1.GetOptions{})
			if err != nil {
				return err
			}
			got = string(v.Data["password"])
			return nil
		})
		return got
	}
	if got := readApp(); got != appValue {
		t.Fatalf("bob reads app: not its value")
	}
	if _, err := values.Get(ctxFor(t), "root", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("bob reads root: %v, want 403", err)
	}

	es := bob.veil.ConfigV1alpha1().ExternalSecrets(ns)
	update := func(edit func(*configv1alpha1.ExternalSecretSpec)) error {
		app, err := es.Get(ctxFor(t), "app", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		edit(&app.Spec)
		_, err = es.Update(ctxFor(t), app, metav1.UpdateOptions{})
		return err
	}
	original, err := es.Get(ctxFor(t), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*configv1alpha1.ExternalSecretSpec){
		"repoint data at another key": func(s *configv1alpha1.ExternalSecretSpec) { s.Data[0].RemoteRef.Key = "admin/root" },
		"add a key":                   func(s *configv1alpha1.ExternalSecretSpec) { s.Data = append(s.Data, dataRef("root", "admin/root", "")) },
		"add a find": func(s *configv1alpha1.ExternalSecretSpec) {
			s.DataFrom = []configv1alpha1.ExternalSecretDataFromRemoteRef{{Find: &configv1alpha1.ExternalSecretFind{Name: &configv1alpha1.FindName{RegExp: ".*"}}}}
		},
		"add a target": func(s *configv1alpha1.ExternalSecretSpec) { s.Target = &configv1alpha1.ExternalSecretTarget{} },
	} {
		refused(t, "bob: "+name, update(edit), "veil-externalsecrets", "may not use secretstores/store")
	}
	after, err := es.Get(ctxFor(t), "app", metav1.GetOptions{})
	if err != nil || !equality.Semantic.DeepEqual(after.Spec, original.Spec) {
		t.Errorf("ExternalSecret app changed after refused updates: %+v, %v", after.Spec, err)
	}
	if got := readApp(); got != appValue {
		t.Errorf("after the refused updates, app serves another value")
	}

	// What does not change what is read stays open to edit.
	if err := update(func(s *configv1alpha1.ExternalSecretSpec) {
		s.RefreshInterval = &metav1.Duration{Duration: time.Minute}
	}); err != nil {
		t.Errorf("bob changes refreshInterval: %v", err)
	}

	// `use` on the store is what widens a per-object grant: with it, what
	// the store can reach from the namespace (its key scope) is the bound.
	bind(t, ns, bob.name, "veil:store-user")
	waitAllowed(t, bob.name, useAttrs(ns, "secretstores", "store"), true)
	if err := update(func(s *configv1alpha1.ExternalSecretSpec) { s.Data[0].RemoteRef.Key = "admin/root" }); err != nil {
		t.Errorf("bob with use on the store repoints app: %v", err)
	}
}

// syncerToken is a real token of veil-syncer's ServiceAccount, from a
// TokenRequest: what an attacker who stole it would hold.
func syncerToken(t *testing.T) kubernetes.Interface {
	t.Helper()
	exp := int64(600)
	tr, err := cluster.KubeClient.CoreV1().ServiceAccounts(harness.VeilNamespace).CreateToken(ctxFor(t), harness.SyncerServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(cluster.Admin)
	cfg.BearerToken = tr.Status.Token
	return kubernetes.NewForConfigOrDie(cfg)
}

// workload is a Deployment, StatefulSet or DaemonSet as the syncer's
// token sees it: it may patch and nothing else.
type workload struct {
	kind  string
	patch func(kubernetes.Interface, []byte) error
	get   func() workloadState
}

// workloadState is what a patch must not change: the object's metadata
// and its spec, whose pod template is also reachable on its own.
type workloadState struct {
	meta     metav1.Object
	spec     any
	template *corev1.PodTemplateSpec
}

func newWorkloads(t *testing.T, ns string) []workload {
	t.Helper()
	labels := map[string]string{"app": "web"}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"keep": "me"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example/app:1"}}},
	}
	sel := &metav1.LabelSelector{MatchLabels: labels}
	ctx := ctxFor(t)
	apps := cluster.KubeClient.AppsV1()
	meta := metav1.ObjectMeta{Name: "web", Labels: map[string]string{"team": "a"}}
	if _, err := apps.Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := apps.StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Selector: sel, Template: tmpl, ServiceName: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := apps.DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	opts := metav1.PatchOptions{FieldManager: "veil-syncer"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	return []workload{
		{"Deployment", func(c kubernetes.Interface, p []byte) error {
			_, err := c.AppsV1().Deployments(ns).Patch(ctxFor(t), "web", types.StrategicMergePatchType, p, opts)
			return err
		}, func() workloadState {
			d, err := apps.Deployments(ns).Get(ctxFor(t), "web", metav1.GetOptions{})
			must(err)
			return workloadState{d, &d.Spec, &d.Spec.Template}
		}},
		{"StatefulSet", func(c kubernetes.Interface, p []byte) error {
			_, err := c.AppsV1().StatefulSets(ns).Patch(ctxFor(t), "web", types.StrategicMergePatchType, p, opts)
			return err
		}, func() workloadState {
			s, err := apps.StatefulSets(ns).Get(ctxFor(t), "web", metav1.GetOptions{})
			must(err)
			return workloadState{s, &s.Spec, &s.Spec.Template}
		}},
		{"DaemonSet", func(c kubernetes.Interface, p []byte) error {
			_, err := c.AppsV1().DaemonSets(ns).Patch(ctxFor(t), "web", types.StrategicMergePatchType, p, opts)
			return err
		}, func() workloadState {
			d, err := apps.DaemonSets(ns).Get(ctxFor(t), "web", metav1.GetOptions{})
			must(err)
			return workloadState{d, &d.Spec, &d.Spec.Template}
		}},
	}
}

// TestIsolationSyncerTokenIsFenced is finding 2: a stolen veil-syncer
// token may patch workloads only to restart them, may write only Veil's
// Secrets of the types Veil writes, and writes nothing in kube-system.
func TestIsolationSyncerTokenIsFenced(t *testing.T) {
	ns := newNamespace(t, nil)
	stolen := syncerToken(t)
	restart := `{"spec":{"template":{"metadata":{"annotations":{"` + configv1alpha1.RestartedForAnnotation + `":"app@0123"}}}}}`
	attacks := map[string]string{
		"an image": `{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"evil.example/x:1"}]}}}}`,
		"the image with a restart": `{"spec":{"template":{"metadata":{"annotations":{"` + configv1alpha1.RestartedForAnnotation + `":"x"}},` +
			`"spec":{"containers":[{"name":"c","image":"evil.example/x:1"}]}}}}`,
		"the ServiceAccount":          `{"spec":{"template":{"spec":{"serviceAccountName":"admin"}}}}`,
		"a hostPath volume":           `{"spec":{"template":{"spec":{"volumes":[{"name":"host","hostPath":{"path":"/"}}]}}}}`,
		"privileged":                  `{"spec":{"template":{"spec":{"containers":[{"name":"c","securityContext":{"privileged":true}}]}}}}`,
		"a capability":                `{"spec":{"template":{"spec":{"containers":[{"name":"c","securityContext":{"capabilities":{"add":["SYS_ADMIN"]}}}]}}}}`,
		"a pod template label":        `{"spec":{"template":{"metadata":{"labels":{"extra":"x"}}}}}`,
		"another template annotation": `{"spec":{"template":{"metadata":{"annotations":{"keep":null}}}}}`,
		"minReadySeconds":             `{"spec":{"minReadySeconds":30}}`,
		"the object's labels":         `{"metadata":{"labels":{"team":"b"}}}`,
		"the object's finalizers":     `{"metadata":{"finalizers":["example.com/hold"]}}`,
	}
	for _, w := range newWorkloads(t, ns) {
		before := w.get()
		for what, patch := range attacks {
			refused(t, "the syncer's token patches "+what+" of a "+w.kind, w.patch(stolen, []byte(patch)),
				"veil-syncer-workloads", configv1alpha1.RestartedForAnnotation)
		}
		after := w.get()
		if after.meta.GetResourceVersion() != before.meta.GetResourceVersion() || !equality.Semantic.DeepEqual(after.spec, before.spec) ||
			after.template.Spec.Containers[0].Image != "registry.example/app:1" {
			t.Errorf("%s changed after refused patches: resourceVersion %s -> %s, image %s", w.kind,
				before.meta.GetResourceVersion(), after.meta.GetResourceVersion(), after.template.Spec.Containers[0].Image)
		}
		// What a rollout restart sends is allowed, and changes only that.
		if err := w.patch(stolen, []byte(restart)); err != nil {
			t.Errorf("the syncer's rollout restart of a %s: %v", w.kind, err)
			continue
		}
		restarted := w.get()
		before.template.Annotations[configv1alpha1.RestartedForAnnotation] = "app@0123"
		if !equality.Semantic.DeepEqual(restarted.spec, before.spec) {
			t.Errorf("the restart of a %s changed more than its annotation: %+v", w.kind, restarted.spec)
		}
		if !equality.Semantic.DeepEqual(restarted.meta.GetLabels(), before.meta.GetLabels()) {
			t.Errorf("the restart of a %s changed its labels", w.kind)
		}
	}

	// Secrets: Veil's marks and Veil's types only.
	secrets := stolen.CoreV1().Secrets(ns)
	managed := map[string]string{configv1alpha1.ManagedByLabel: "veil-syncer"}
	for _, typ := range []corev1.SecretType{corev1.SecretTypeBootstrapToken, corev1.SecretTypeServiceAccountToken, "helm.sh/release.v1"} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "typed", Labels: managed, Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
			Type: typ, Data: map[string][]byte{"token-id": []byte("abcdef"), "token-secret": []byte("0123456789abcdef")}}
		_, err := secrets.Create(ctxFor(t), s, metav1.CreateOptions{})
		refused(t, "the syncer's token creates a Secret of type "+string(typ), err, "veil-syncer-secrets", "of type Opaque")
		secretAbsent(t, ns, "typed")
	}
	if _, err := secrets.Create(ctxFor(t), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "opaque", Labels: managed}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("the syncer's token creates a Veil-marked Opaque Secret: %v", err)
	}

	// kube-system: nothing, not even what is allowed elsewhere.
	sys := stolen.CoreV1().Secrets("kube-system")
	_, err := sys.Create(ctxFor(t), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: unique("veil-e2e-"), Labels: managed}}, metav1.CreateOptions{})
	refused(t, "the syncer's token creates a Veil-marked Secret in kube-system", err, "veil-syncer-excluded-namespaces", "never writes in namespace kube-system")
	list, err := cluster.KubeClient.CoreV1().Secrets("kube-system").List(ctxFor(t), metav1.ListOptions{LabelSelector: configv1alpha1.ManagedByLabel})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("Veil-marked Secrets in kube-system: %d, %v; want none", len(list.Items), err)
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: unique("veil-e2e-")},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example/app:1"}}}},
		},
	}
	if d, err = cluster.KubeClient.AppsV1().Deployments("kube-system").Create(ctxFor(t), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.KubeClient.AppsV1().Deployments("kube-system").Delete(context.Background(), d.Name, metav1.DeleteOptions{})
	})
	_, err = stolen.AppsV1().Deployments("kube-system").Patch(ctxFor(t), d.Name, types.StrategicMergePatchType, []byte(restart), metav1.PatchOptions{})
	refused(t, "the syncer's token restarts a Deployment in kube-system", err, "veil-syncer-excluded-namespaces", "never writes in namespace kube-system")
	after, err := cluster.KubeClient.AppsV1().Deployments("kube-system").Get(ctxFor(t), d.Name, metav1.GetOptions{})
	if err != nil || after.ResourceVersion != d.ResourceVersion {
		t.Errorf("the kube-system Deployment changed: %v", err)
	}
}

// TestIsolationSyncerSkipsExcludedNamespaces: veil-syncer itself does not
// try to write in an excluded namespace, and says so in the status.
func TestIsolationSyncerSkipsExcludedNamespaces(t *testing.T) {
	startSyncer(t)
	const ns = "kube-system"
	store, name := unique("veil-e2e-store-"), unique("veil-e2e-")
	createFakeStore(t, ns, store, configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	t.Cleanup(func() {
		ctx := context.Background()
		_ = cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Delete(ctx, name, metav1.DeleteOptions{})
		_ = cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Delete(ctx, store, metav1.DeleteOptions{})
	})
	es := externalSecret(ns, name, storeRef(store), &configv1alpha1.ExternalSecretTarget{}, dataRef("k", "k", ""))
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := waitReady(t, ns, name, configv1alpha1.ReasonNamespaceExcluded)
	if c := apimeta.FindStatusCondition(got.Status.Conditions, "Ready"); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "--excluded-namespaces") {
		t.Errorf("Ready condition %+v, want False naming --excluded-namespaces", c)
	}
	waitEvent(t, ns, name, syncer.EventSyncError, configv1alpha1.ReasonNamespaceExcluded)
	secretAbsent(t, ns, name)
}
