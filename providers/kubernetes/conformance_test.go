package kubeprovider_test

import (
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/veil-dev/veil/test/conformance"
	"github.com/veil-dev/veil/test/conformance/remotetest"
)

// TestConformance runs the provider conformance suite over gRPC and
// mutual TLS against a veil-provider-kubernetes process whose backend is
// the real kube-apiserver, and which reads as the ServiceAccount of the
// shipped deploy/rbac.yaml: every read the suite makes passing is the
// proof that the Role suffices.
func TestConformance(t *testing.T) {
	source := namespace(t, "source-")
	providerNS := namespace(t, "providers-")
	// The provider reaches kube-apiserver through a proxy the fixture can
	// cut (Outage), as the ServiceAccount of the shipped RBAC.
	proxy := startProxy(t, strings.TrimPrefix(cluster.APIServerURL, "https://"))
	kubeconfig := throughProxy(t, installRBAC(t, providerNS, source), proxy.address)
	// The suite seeds over a thousand Secrets (the find bound, change
	// detection): client-go's default 5 requests a second would take
	// minutes.
	cfg := rest.CopyConfig(cluster.Admin)
	cfg.QPS, cfg.Burst = 500, 1000
	f := &fixture{t: t, source: source, kubeconfig: kubeconfig, proxy: proxy, kube: kubernetes.NewForConfigOrDie(cfg)}
	f.config = "stores:\n" + f.store(kubeconfig)
	p := startProvider(t, f.config)
	f.p = p
	ep := remotetest.Endpoint{Kind: "kubernetes", Address: p.address, Identity: providerIdentity,
		TLS: p.endpoint().TLS, Logs: func(*testing.T) []byte { return []byte(p.logs.String()) }}
	remotetest.RunEndpoint(t, f, ep)
}

// fixture is the store conformance/under-test, served from the Secrets of
// namespace source. Remote keys are paths (pathSeparator "."), so the
// suite's keys ("veil-conformance-1234/get/db") name Secrets
// ("veil-conformance-1234.get.db").
type fixture struct {
	t          *testing.T
	source     string
	kubeconfig string
	config     string
	p          *provider
	proxy      *proxy
	kube       kubernetes.Interface
}

func (f *fixture) store(kubeconfig string) string {
	return storeConfig("SecretStore", conformance.Namespace, conformance.StoreName, f.source, kubeconfig,
		"  pathSeparator: \".\"\n  limits: {qps: 10000, burst: 10000, concurrency: 256}\n")
}

const readOnly = "veil-provider-kubernetes is read-only: it never writes a Secret, and its Role grants get, list and watch only"

func (f *fixture) Info() conformance.Info {
	return conformance.Info{
		KeepsData: true,
		Unsupported: map[conformance.Capability]string{
			conformance.Versions:     "Kubernetes keeps only a Secret's current version: any other version is NotFound",
			conformance.RawValues:    "a value is a Secret's data: a JSON object of its keys",
			conformance.Push:         readOnly,
			conformance.PushProperty: readOnly,
			conformance.Delete:       readOnly,
		},
	}
}

// Store is not called: RunEndpoint hands the suite a store naming a
// registration, and the provider process serves it from its own
// configuration.
func (f *fixture) Store(t *testing.T) conformance.Store { return remotetest.RemoteStore() }

func secretName(key string) string { return strings.ReplaceAll(key, "/", ".") }

// Seed writes the Secret of key as an operator would: each field of the
// JSON object is a key of its data (strings as their text, anything else
// as the JSON written).
func (f *fixture) Seed(t *testing.T, key string, value []byte) string {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(value, &fields); err != nil {
		t.Fatalf("the suite seeds JSON objects: %v", err)
	}
	data := map[string][]byte{}
	for k, v := range fields {
		var s string
		if json.Unmarshal(v, &s) == nil {
			data[k] = []byte(s)
		} else {
			data[k] = v
		}
	}
	secrets := f.kube.CoreV1().Secrets(f.source)
	ctx := ctxFor(t)
	cur, err := secrets.Get(ctx, secretName(key), metav1.GetOptions{})
	var out *corev1.Secret
	switch {
	case apierrors.IsNotFound(err):
		out, err = secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName(key)}, Data: data}, metav1.CreateOptions{})
	case err == nil:
		cur.Data = data
		out, err = secrets.Update(ctx, cur, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out.UID) + "/" + out.ResourceVersion
}

// Tag labels the Secret of key: its labels are its tags.
func (f *fixture) Tag(t *testing.T, key string, tags map[string]string) {
	t.Helper()
	secrets := f.kube.CoreV1().Secrets(f.source)
	cur, err := secrets.Get(ctxFor(t), secretName(key), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Labels = tags
	if _, err := secrets.Update(ctxFor(t), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Denied points the store at a ServiceAccount that no Role binds, until
// the test ends; its token is what no error or log may show.
func (f *fixture) Denied(t *testing.T, key string) (conformance.Store, []string) {
	t.Helper()
	ns := namespace(t, "denied-")
	_, err := cluster.KubeClient.CoreV1().ServiceAccounts(ns).Create(ctxFor(t), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cluster.ServiceAccountKubeconfig(ctxFor(t), ns, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var token string
	for _, a := range cfg.AuthInfos {
		token = a.Token
	}
	if token == "" {
		t.Fatal("the denied ServiceAccount's kubeconfig has no token")
	}
	f.p.writeConfig(t, "stores:\n"+f.store(kubeconfig))
	t.Cleanup(func() { f.p.writeConfig(t, f.config) })
	return remotetest.RemoteStore(), []string{token}
}

// Outage cuts the provider off kube-apiserver: the proxy between them
// stops listening and drops its connections.
func (f *fixture) Outage(t *testing.T) func() {
	f.proxy.stop()
	return func() { f.proxy.start(t) }
}

// throughProxy is a copy of kubeconfig that reaches kube-apiserver at
// address (the proxy, on the same loopback address its certificate names).
func throughProxy(t *testing.T, kubeconfig, address string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + address
	}
	out := kubeconfig + ".proxied"
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// proxy forwards TCP connections to a backend until stopped; started
// again, it listens at the same address.
type proxy struct {
	address, backend string

	mu    sync.Mutex
	lis   net.Listener
	conns map[net.Conn]bool
}

func startProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	p := &proxy{address: "127.0.0.1:0", backend: backend, conns: map[net.Conn]bool{}}
	p.start(t)
	p.address = p.lis.Addr().String()
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start(t *testing.T) {
	lis, err := net.Listen("tcp", p.address)
	if err != nil {
		t.Fatalf("the proxy cannot listen at %s again: %v", p.address, err)
	}
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *proxy) track(c net.Conn, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if open {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *proxy) forward(c net.Conn) {
	b, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	p.track(c, true)
	p.track(b, true)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
	<-done
	c.Close()
	b.Close()
	p.track(c, false)
	p.track(b, false)
}

func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for c := range p.conns {
		c.Close()
	}
}
