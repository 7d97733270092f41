package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// installKubernetesProviderRBAC applies providers/kubernetes/deploy/rbac.yaml
// as shipped, with the provider's and the source namespace put in place of
// the example's, and returns a kubeconfig of its ServiceAccount.
func installKubernetesProviderRBAC(t *testing.T, providerNS, sourceNS string) string {
	t.Helper()
	ctx := ctxFor(t)
	raw, err := os.ReadFile(filepath.Join(cluster.Root, "providers", "kubernetes", "deploy", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kube := cluster.KubeClient
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			o.Namespace = providerNS
			_, err = kube.CoreV1().ServiceAccounts(providerNS).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			o.Namespace = sourceNS
			_, err = kube.RbacV1().Roles(sourceNS).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			o.Namespace = sourceNS
			for i := range o.Subjects {
				o.Subjects[i].Namespace = providerNS
			}
			_, err = kube.RbacV1().RoleBindings(sourceNS).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("rbac.yaml holds a %T", obj)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	path, err := cluster.ServiceAccountKubeconfig(ctx, providerNS, "veil-provider-kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// A third party's provider, registered like Veil's own: a SecretStore
// names a ProviderRegistration of veil-provider-kubernetes, which reads
// the Secrets of another namespace as its own ServiceAccount (the shipped
// Role, and nothing more). The tenant reads the value through
// kube-apiserver's aggregation; a rotated Secret reaches the tenant
// without waiting out the refresh interval; a store the provider does not
// list is refused; and the value is in no log and in etcd only where the
// source Secret keeps it.
func TestKubernetesProvider(t *testing.T) {
	ctx := ctxFor(t)
	source, providerNS, ns := newNamespace(t, nil), newNamespace(t, nil), newNamespace(t, nil)
	kubeconfig := installKubernetesProviderRBAC(t, providerNS, source)
	value := unique("k8s-canary-")
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": value, "user": "app"}}
	if _, err := cluster.KubeClient.CoreV1().Secrets(source).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	name := unique("kubernetes-provider-")
	p, err := cluster.StartKubernetesProvider(ctx, name, fmt.Sprintf(`stores:
- kind: SecretStore
  namespace: %s
  name: shared
  source: {namespace: %s, kubeconfig: %q}
`, ns, source, kubeconfig))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	regs := cluster.VeilClient.ConfigV1alpha1().ProviderRegistrations()
	reg := &configv1alpha1.ProviderRegistration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       configv1alpha1.ProviderRegistrationSpec{Provider: "kubernetes", Endpoint: p.Address, ServerName: p.ServerName, CABundle: string(p.CAPEM)},
	}
	if _, err := regs.Create(ctx, reg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = regs.Delete(ctxFor(t), name, metav1.DeleteOptions{}) })

	remoteStoreNaming(t, ns, "shared", name)
	remoteStoreNaming(t, ns, "unlisted", name)
	createExternalSecret(t, ns, "app", storeRef("shared"), nil, dataRef("password", "db", "password"), dataRef("user", "db", "user"))
	createExternalSecret(t, ns, "unlisted", storeRef("unlisted"), nil, dataRef("password", "db", "password"))

	tenant := unique("tenant-")
	bind(t, ns, tenant, "veil:values-reader")
	tc := userClient(t, tenant)
	read := func() (map[string][]byte, error) {
		esv, err := tc.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), "app", metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return esv.Data, nil
	}

	t.Run("the tenant reads the other namespace's Secret through the provider", func(t *testing.T) {
		eventually(t, func() error {
			data, err := read()
			if err != nil {
				return err
			}
			if string(data["password"]) != value || string(data["user"]) != "app" {
				return fmt.Errorf("read %d and %d bytes, not the source Secret's keys", len(data["password"]), len(data["user"]))
			}
			return nil
		})
	})

	t.Run("the tenant has no access to the source namespace itself", func(t *testing.T) {
		cfg, err := cluster.UserConfig(tenant)
		if err != nil {
			t.Fatal(err)
		}
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kube.CoreV1().Secrets(source).Get(ctxFor(t), "db", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the tenant's own GET of the source Secret: %v, want Forbidden", err)
		}
	})

	rotated := unique("k8s-rotated-")
	t.Run("a rotated Secret is read again before the refresh interval", func(t *testing.T) {
		cur, err := cluster.KubeClient.CoreV1().Secrets(source).Get(ctxFor(t), "db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Data["password"] = []byte(rotated)
		if _, err := cluster.KubeClient.CoreV1().Secrets(source).Update(ctxFor(t), cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The ExternalSecret's refresh interval is the default hour: only
		// change detection through the provider's versions brings it.
		eventually(t, func() error {
			data, err := read()
			if err != nil {
				return err
			}
			if string(data["password"]) != rotated {
				return fmt.Errorf("still the value before the rotation")
			}
			return nil
		})
	})

	t.Run("the provider refuses a store its configuration does not list", func(t *testing.T) {
		_, err := readValue(t, ns, "unlisted")
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "does not serve SecretStore "+ns+"/unlisted") {
			t.Errorf("read through an unlisted store: %v, want Forbidden naming the store", err)
		}
	})

	t.Run("the value is in no log, and in etcd only as the source Secret", func(t *testing.T) {
		for _, v := range []string{value, rotated} {
			s, err := cluster.FindCanary(ctxFor(t), v)
			if err != nil {
				t.Fatal(err)
			}
			if s.InFiles() != 0 {
				t.Errorf("a value is in a log: %s", s)
			}
			for _, k := range s.EtcdKeys {
				if k != "/registry/secrets/"+source+"/db" {
					t.Errorf("a value is in etcd under %s, not only in the source Secret", k)
				}
			}
		}
		if _, err := os.Stat(p.LogFile); err != nil {
			t.Errorf("the provider's log, which the search must cover: %v", err)
		}
	})
}
