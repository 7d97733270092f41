package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

func init() {
	scenarios = append(scenarios,
		scenario{"P1", "warm GET externalsecretvalue through the aggregator vs GET secret of the same size, same kube-apiserver, same client", readThroughAggregator},
		scenario{"P2", "warm reads sent directly to veil-apiserver vs GET secret sent directly to kube-apiserver, same HTTP client code and concurrency", readDirect},
	)
}

const benchNamespace, benchName, benchUser = "perf", "bench", "bench-reader"

// setupReads creates, once, a Secret and an ExternalSecret (fake store)
// holding one value of the same size, readable by benchUser.
func setupReads(ctx context.Context, c *harness.Cluster) error {
	if _, err := c.KubeClient.CoreV1().Namespaces().Get(ctx, benchNamespace, metav1.GetOptions{}); err == nil {
		return nil
	}
	value := printable(*valueSize)
	if _, err := c.KubeClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.KubeClient.CoreV1().Secrets(benchNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: benchName},
		Data:       map[string][]byte{"value": []byte(value)},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.VeilClient.ConfigV1alpha1().SecretStores(benchNamespace).Create(ctx, &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: benchName},
		Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{
			Fake: &configv1alpha1.FakeProvider{Data: []configv1alpha1.FakeProviderData{{Key: "value", Value: value}}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.VeilClient.ConfigV1alpha1().ExternalSecrets(benchNamespace).Create(ctx, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: benchName},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef: new(configv1alpha1.SecretStoreRef{Name: benchName, Kind: configv1alpha1.SecretStoreKind}),
			Data:           []configv1alpha1.ExternalSecretData{{SecretKey: "value", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "value"}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.KubeClient.RbacV1().Roles(benchNamespace).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: benchUser},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
			{APIGroups: []string{"externalsecrets.veil.dev"}, Resources: []string{"externalsecretvalues"}, Verbs: []string{"get"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := c.KubeClient.RbacV1().RoleBindings(benchNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: benchUser},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: benchUser},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: benchUser}},
	}, metav1.CreateOptions{})
	return err
}

func printable(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

var (
	secretPath = "/api/v1/namespaces/" + benchNamespace + "/secrets/" + benchName
	valuePath  = "/apis/externalsecrets.veil.dev/v1alpha1/namespaces/" + benchNamespace + "/externalsecretvalues/" + benchName
)

// readThroughAggregator is P1: one client-go REST client, as a regular user
// with a RoleBinding, reads both paths through kube-apiserver.
func readThroughAggregator(ctx context.Context, c *harness.Cluster) error {
	if err := setupReads(ctx, c); err != nil {
		return err
	}
	cfg, err := c.UserConfig(benchUser)
	if err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	cfg.APIPath = "/"
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	client, err := rest.UnversionedRESTClientFor(cfg)
	if err != nil {
		return err
	}
	get := func(path string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := client.Get().AbsPath(path).SetHeader("Accept", "application/json").DoRaw(ctx)
			return err
		}
	}
	return duringMeasurement(ctx, c, func() error {
		return measurePair(ctx, "through kube-apiserver", get(valuePath), get(secretPath),
			"GET externalsecretvalue (Veil)", "GET secret (native)")
	})
}

// readDirect is P2: the same net/http client code reads Veil's own port, as
// the front proxy for the user, and kube-apiserver's, with the user's
// certificate.
func readDirect(ctx context.Context, c *harness.Cluster) error {
	if err := setupReads(ctx, c); err != nil {
		return err
	}
	proxyCert, err := c.FrontProxyCertificate()
	if err != nil {
		return err
	}
	veil := c.VeilHTTPClient(&proxyCert)
	userCfg, err := c.UserConfig(benchUser)
	if err != nil {
		return err
	}
	userCert, err := tls.X509KeyPair(userCfg.CertData, userCfg.KeyData)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.ClusterCA.CertPEM)
	kube := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{userCert}, MinVersion: tls.VersionTLS12},
	}}
	veil.Transport.(*http.Transport).ForceAttemptHTTP2 = true

	get := func(client *http.Client, url string, headers map[string]string) func(context.Context) error {
		return func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Accept", "application/json")
			for k, v := range headers {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", url, resp.Status)
			}
			return nil
		}
	}
	asUser := map[string]string{"X-Remote-User": benchUser, "X-Remote-Group": "system:authenticated"}
	return duringMeasurement(ctx, c, func() error {
		return measurePair(ctx, "direct", get(veil, c.VeilURL()+valuePath, asUser), get(kube, c.APIServerURL+secretPath, nil),
			"veil-apiserver directly", "kube-apiserver directly")
	})
}

// measurePair warms both paths, then measures them alternately so drift in
// the machine's load affects both alike.
func measurePair(ctx context.Context, label string, veil, native func(context.Context) error, veilName, nativeName string) error {
	for _, f := range []func(context.Context) error{veil, native} {
		if r := sequential(ctx, 300, f); r.errors > 0 {
			return fmt.Errorf("warm-up: %v", r.firstErr)
		}
	}
	half := *requests / 2
	v1, n1 := sequential(ctx, half, veil), sequential(ctx, half, native)
	n2, v2 := sequential(ctx, half, native), sequential(ctx, half, veil)
	if err := compare(label+", sequential", merge(v1, v2), merge(n1, n2), veilName, nativeName); err != nil {
		return err
	}
	vc, nc := concurrent(ctx, *concurrency, *duration/2, veil), concurrent(ctx, *concurrency, *duration/2, native)
	nc2, vc2 := concurrent(ctx, *concurrency, *duration/2, native), concurrent(ctx, *concurrency, *duration/2, veil)
	return compare(fmt.Sprintf("%s, %d concurrent", label, *concurrency), merge(vc, vc2), merge(nc, nc2), veilName, nativeName)
}

// merge combines two runs of one path (percentiles are averaged, rates added
// over both durations).
func merge(a, b result) result {
	return result{
		n: a.n + b.n, p50: (a.p50 + b.p50) / 2, p99: (a.p99 + b.p99) / 2,
		perSecond: (a.perSecond + b.perSecond) / 2,
		errors:    a.errors + b.errors, firstErr: firstNonNil(a.firstErr, b.firstErr),
	}
}

func firstNonNil(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
