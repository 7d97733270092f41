package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	"github.com/veil-dev/veil/test/harness"
)

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// unique returns prefix with a random suffix, for names and canary values.
func unique(prefix string) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// newNamespace creates a namespace for one test and deletes it afterwards.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ctx := ctxFor(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique("e2e-"), Labels: labels}}
	if _, err := cluster.KubeClient.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Deferred, so that the namespace goes even if the purge fails.
		defer func() {
			_ = cluster.KubeClient.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		}()
		purgeSynced(t, ns.Name)
	})
	return ns.Name
}

// purgeSynced deletes the PushSecrets and ExternalSecrets of a test's
// namespace, finalizers and all, and waits until they are gone. The
// namespace controller takes its time over a deleted namespace, and until
// it is done the next test's syncer would list them and go on syncing them
// (against a Vault already stopped, say), which its metrics would count.
func purgeSynced(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	config := cluster.VeilClient.ConfigV1alpha1()
	if err := config.ExternalSecrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Errorf("deleting the ExternalSecrets of %s: %v", ns, err)
	}
	// Deleted first, so that no syncer adds its finalizer back; then the
	// finalizer goes, whatever the deletionPolicy: the test is over.
	if err := config.PushSecrets(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Errorf("deleting the PushSecrets of %s: %v", ns, err)
	}
	noFinalizers := []byte(`{"metadata":{"finalizers":null}}`)
	eventually(t, func() error {
		pss, err := config.PushSecrets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		es, err := config.ExternalSecrets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, ps := range pss.Items {
			_, err := config.PushSecrets(ns).Patch(ctx, ps.Name, types.MergePatchType, noFinalizers, metav1.PatchOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("removing the finalizers of PushSecret %s/%s: %v", ns, ps.Name, err)
			}
		}
		if n, m := len(pss.Items), len(es.Items); n+m > 0 {
			return fmt.Errorf("%d PushSecrets and %d ExternalSecrets of %s are still there", n, m, ns)
		}
		return nil
	})
}

// veilMetricsSince takes a baseline of veil-apiserver's /metrics: the
// server outlives the test, so its metric assertions count the moves
// since this point, and fail if the metric is no longer exposed.
func veilMetricsSince(t *testing.T) *harness.Baseline {
	t.Helper()
	return harness.MetricsSince(t, func() (*harness.Metrics, error) { return cluster.VeilMetrics(ctxFor(t)) })
}

// syncerMetricsSince takes a baseline of a syncer's /metrics.
func syncerMetricsSince(t *testing.T, s *harness.Syncer) *harness.Baseline {
	t.Helper()
	return harness.MetricsSince(t, func() (*harness.Metrics, error) { return s.Metrics(ctxFor(t)) })
}

// countedProviderCall makes veil-apiserver call a fake store once, so
// that veil_provider_calls_total, which is only exposed once something
// incremented it, is there for what reads it (TestAlertsNameExportedMetrics).
func countedProviderCall(t *testing.T) {
	t.Helper()
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "counted", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	createExternalSecret(t, ns, "counted", storeRef("counted"), nil, dataRef("v", "k", ""))
	eventually(t, func() error {
		_, err := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), "counted", metav1.GetOptions{})
		return err
	})
}

// createFakeStore creates a SecretStore of the fake provider.
func createFakeStore(t *testing.T, ns, name string, data ...configv1alpha1.FakeProviderData) {
	t.Helper()
	s := &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{Data: data}}},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Create(ctxFor(t), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createExternalSecret creates an ExternalSecret reading through the named store.
func createExternalSecret(t *testing.T, ns, name string, store configv1alpha1.SecretStoreRef, labels map[string]string, data ...configv1alpha1.ExternalSecretData) *configv1alpha1.ExternalSecret {
	t.Helper()
	es := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec:       configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(store), Data: data},
	}
	out, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), es, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func storeRef(name string) configv1alpha1.SecretStoreRef {
	return configv1alpha1.SecretStoreRef{Name: name, Kind: configv1alpha1.SecretStoreKind}
}

func dataRef(secretKey, key, property string) configv1alpha1.ExternalSecretData {
	return configv1alpha1.ExternalSecretData{SecretKey: secretKey, RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: key, Property: property}}
}

// bind grants a user a ClusterRole in a namespace.
func bind(t *testing.T, ns, user, clusterRole string) {
	t.Helper()
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user + "-" + strings.ReplaceAll(clusterRole, ":", "-"), Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}
	if _, err := cluster.KubeClient.RbacV1().RoleBindings(ns).Create(ctxFor(t), rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// userClient is the generated clientset authenticated as user.
func userClient(t *testing.T, user string) versioned.Interface {
	t.Helper()
	cfg, err := cluster.UserConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	return versioned.NewForConfigOrDie(rest.CopyConfig(cfg))
}

// kubectl runs kubectl as the admin (kubeconfig "") or a user's kubeconfig,
// failing the test on error.
func kubectl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, _, err := cluster.RunKubectl(ctxFor(t), kubeconfig, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// eventually retries f until it succeeds: informers in veil-apiserver see a
// new object a moment after kube-apiserver acknowledges it.
func eventually(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deleteNamespaceAndWait deletes ns and waits up to 90 s for the namespace
// controller to finish, which it cannot while a finalizer is held: a
// namespace still there names the PushSecrets left and what they say.
func deleteNamespaceAndWait(t *testing.T, ns string) {
	t.Helper()
	ctx := ctxFor(t)
	if err := cluster.KubeClient.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		_, err := cluster.KubeClient.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			var left []string
			if pss, lerr := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).List(ctx, metav1.ListOptions{}); lerr == nil {
				for _, ps := range pss.Items {
					left = append(left, fmt.Sprintf("%s (finalizers %v): %s", ps.Name, ps.Finalizers, readyMessage(&ps)))
				}
			}
			t.Fatalf("namespace %s still Terminating after 90s (%v); PushSecrets left: %q", ns, err, left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// countingProxy forwards TCP connections from a port of 127.0.0.1 (which
// the suite's endpoint allowlist admits) to target's host and port, and
// counts them. A store given its address reaches the provider only
// through it, so the count is that store's alone, whatever change
// detection does for other stores meanwhile. TLS passes through: the
// provider's certificate must name 127.0.0.1.
func countingProxy(t *testing.T, target string) (string, func() int64) {
	t.Helper()
	return countingProxyOn(t, "127.0.0.1", target)
}

// countingProxyOn is countingProxy listening on a loopback address of the
// caller's choice: 127.0.0.2 is reachable but not in the allowlist.
func countingProxyOn(t *testing.T, host, target string) (string, func() int64) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", u.Host)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c) }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return u.Scheme + "://" + l.Addr().String(), n.Load
}
