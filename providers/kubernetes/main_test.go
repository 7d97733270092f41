package kubeprovider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/veil-dev/veil/pkg/providers/remote"
	kubeprovider "github.com/veil-dev/veil/providers/kubernetes"
	"github.com/veil-dev/veil/test/harness"
)

// cluster is etcd and kube-apiserver: the source of the Secrets the
// provider serves, a real server.
var cluster *harness.Cluster

// childEnv carries the options of a provider process: its presence makes
// the test binary, started again, serve as veil-provider-kubernetes.
const childEnv = "VEIL_KUBEPROVIDER_CHILD"

func TestMain(m *testing.M) {
	serveIfChild()
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	var err error
	cluster, err = harness.Start(ctx, harness.Options{ControlPlaneOnly: true, Progress: os.Stderr})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting etcd and kube-apiserver:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code != 0 {
		cluster.DumpLogs(os.Stderr, 40)
	}
	cluster.Stop()
	os.Exit(code)
}

// serveIfChild serves as veil-provider-kubernetes, with the options and
// listener its parent handed over, until SIGTERM, and exits.
func serveIfChild() {
	opts := os.Getenv(childEnv)
	if opts == "" {
		return
	}
	var o kubeprovider.Options
	err := json.Unmarshal([]byte(opts), &o)
	if err == nil {
		o.Listener, err = net.FileListener(os.NewFile(3, "listener"))
	}
	if err == nil {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err = o.Run(ctx, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
		stop()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "veil-provider-kubernetes (test child):", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// The identities of the two sides.
const (
	clientIdentity   = "spiffe://cluster.local/ns/veil-system/sa/veil-apiserver"
	providerIdentity = "veil-provider-kubernetes.veil-providers.svc"
)

// provider is a veil-provider-kubernetes process (the test binary again).
type provider struct {
	address string
	config  string
	// client is the certificate it accepts; ca signs both sides.
	client *harness.Pair
	ca     *harness.CA
	logs   syncBuffer
}

func (p *provider) endpoint() remote.Endpoint {
	return remote.Endpoint{Address: p.address, Identity: providerIdentity,
		TLS: remote.TLSFiles{CertFile: p.client.CertFile, KeyFile: p.client.KeyFile, CAFile: p.ca.CertFile}}
}

// writeConfig replaces the provider's configuration, as a ConfigMap
// volume's update does (a new file renamed over the old one).
func (p *provider) writeConfig(t *testing.T, config string) {
	t.Helper()
	tmp := p.config + ".tmp"
	if err := os.WriteFile(tmp, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p.config); err != nil {
		t.Fatal(err)
	}
}

// startProvider starts a provider process serving config, stopped (and
// checked to exit cleanly) at the end of the test.
func startProvider(t *testing.T, config string) *provider {
	t.Helper()
	dir := t.TempDir()
	ca, err := harness.NewCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(dir, "provider", "veil-provider-kubernetes", nil, []string{providerIdentity})
	if err != nil {
		t.Fatal(err)
	}
	p := &provider{config: filepath.Join(dir, "config.yaml"), ca: ca}
	if p.client, err = ca.IssueWorkload(dir, "apiserver", clientIdentity); err != nil {
		t.Fatal(err)
	}
	p.writeConfig(t, config)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.address = lis.Addr().String()
	file, err := lis.(*net.TCPListener).File()
	lis.Close()
	if err != nil {
		t.Fatal(err)
	}
	opts, err := json.Marshal(kubeprovider.Options{CertFile: serving.CertFile, KeyFile: serving.KeyFile, ClientCAFile: ca.CertFile,
		AllowedClient: clientIdentity, ConfigFile: p.config})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(opts))
	cmd.ExtraFiles = []*os.File{file}
	cmd.Stdout, cmd.Stderr = &p.logs, &p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	file.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the provider process exited with %v; its log:\n%s", err, p.logs.String())
			}
		case <-time.After(45 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("the provider process did not stop within 45s of SIGTERM")
		}
	})
	return p
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// namespace creates a namespace for the test, deleted after it.
func namespace(t *testing.T, prefix string) string {
	t.Helper()
	name := prefix + rand.String(6)
	_, err := cluster.KubeClient.CoreV1().Namespaces().Create(ctxFor(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.KubeClient.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// installRBAC applies the shipped deploy/rbac.yaml, with the provider's
// namespace and the source namespace put in place of the examples', and
// returns a kubeconfig of the ServiceAccount it makes: a process run with
// it has exactly the RBAC the provider ships, and nothing else.
func installRBAC(t *testing.T, providerNS, sourceNS string) string {
	t.Helper()
	ctx := ctxFor(t)
	raw, err := os.ReadFile("deploy/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kube := cluster.KubeClient
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("deploy/rbac.yaml: %v", err)
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
			t.Fatalf("deploy/rbac.yaml holds a %T: only a ServiceAccount, a Role and a RoleBinding belong there", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	path, err := cluster.ServiceAccountKubeconfig(ctx, providerNS, "veil-provider-kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// storeConfig is one store of a provider configuration.
func storeConfig(kind, ns, name, source, kubeconfig, extra string) string {
	nsLine := ""
	if ns != "" {
		nsLine = "\n  namespace: " + ns
	}
	return fmt.Sprintf(`- kind: %s%s
  name: %s
  source: {namespace: %s, kubeconfig: %q}
%s`, kind, nsLine, name, source, kubeconfig, extra)
}
