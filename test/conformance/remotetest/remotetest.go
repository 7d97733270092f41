// Package remotetest runs the provider conformance suite against a
// provider served out of process: a child process (the test binary
// itself, started again) serves the provider through veil-provider's
// command code over gRPC with mutual TLS on loopback, and the suite reaches
// it through remote.Provider, registered in the place of the in-process
// provider of the same kind.
//
// The child serves the store from its own configuration and credential
// files, which Run writes from the fixture's store; the suite's side holds
// no credential at all. The child logs at -v=4, and its log and metrics are
// searched for canaries with the fixture's own log.
//
// A provider package's tests use it as:
//
//	func TestMain(m *testing.M) { remotetest.ServeIfChild(); ... }
//	func TestConformanceRemote(t *testing.T) { remotetest.Run(t, &fixture{...}) }
package remotetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"github.com/veil-dev/veil/pkg/cmd/provider"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/providers/remote"
	"github.com/veil-dev/veil/test/conformance"
	"github.com/veil-dev/veil/test/harness"
)

// childEnv carries the child's options; its presence makes a test binary
// the child.
const childEnv = "VEIL_REMOTETEST_PROVIDER"

// The identities of the two sides.
const (
	clientIdentity   = "spiffe://cluster.local/ns/veil-system/sa/veil-apiserver"
	providerIdentity = "veil-provider.veil-system.svc"
)

// ServeIfChild serves the provider and exits, when this process is a child
// Run started; otherwise it returns at once. Call it first in TestMain.
func ServeIfChild() {
	opts := os.Getenv(childEnv)
	if opts == "" {
		return
	}
	var o provider.Options
	err := json.Unmarshal([]byte(opts), &o)
	if err == nil {
		// The listeners are the parent's, handed over as extra files.
		o.Listener, err = net.FileListener(os.NewFile(3, "listener"))
	}
	if err == nil {
		o.MetricsListener, err = net.FileListener(os.NewFile(4, "metrics"))
	}
	if err == nil {
		fs := flag.NewFlagSet("klog", flag.ContinueOnError)
		klog.InitFlags(fs)
		_ = fs.Set("v", "4")
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err = o.Run(ctx)
		stop()
	}
	klog.Flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, "veil-provider (conformance child):", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Run runs the conformance suite against f's provider, served by a child
// process.
func Run(t *testing.T, f conformance.Fixture) {
	start(t, f, func(w *wrapped, _ conformance.Store) { conformance.Run(t, w) })
}

// Through serves f's store from a child process, as Run does, and calls
// use with the store as veil-apiserver's side has it (no credentials),
// with the provider of its kind replaced by the remote one: for a
// provider's own checks of what the suite cannot express, such as a
// service whose values cannot be seeded.
func Through(t *testing.T, f conformance.Fixture, use func(t *testing.T, st conformance.Store)) {
	start(t, f, func(_ *wrapped, st conformance.Store) { use(t, st) })
}

func start(t *testing.T, f conformance.Fixture, run func(w *wrapped, st conformance.Store)) {
	dir := t.TempDir()
	ca, err := harness.NewCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue(dir, "provider", "veil-provider", nil, []string{providerIdentity})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.IssueWorkload(dir, "apiserver", clientIdentity)
	if err != nil {
		t.Fatal(err)
	}
	st := f.Store(t)
	name := providers.NameOf(&st.Spec)
	w := &wrapped{inner: f, dir: dir, config: filepath.Join(dir, "config.yaml")}
	served := w.serve(t, st)

	file, addr := listener(t)
	metricsFile, metricsAddr := listener(t)
	w.metrics = "http://" + metricsAddr + "/metrics"
	opts, err := json.Marshal(provider.Options{Provider: name, CertFile: server.CertFile, KeyFile: server.KeyFile, ClientCAFile: ca.CertFile,
		AllowedClient: clientIdentity, ConfigFile: w.config, AllowPlaintextBackends: true})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(opts))
	cmd.ExtraFiles = []*os.File{file, metricsFile}
	cmd.Stdout, cmd.Stderr = &w.logs, &w.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	file.Close()
	metricsFile.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("veil-provider (the child) exited with %v; its log:\n%s", err, w.logs.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("veil-provider (the child) did not stop within 30s of SIGTERM")
		}
	}()

	p, err := remote.NewProvider(name, remote.Endpoint{Address: addr, Identity: providerIdentity,
		TLS: remote.TLSFiles{CertFile: client.CertFile, KeyFile: client.KeyFile, CAFile: ca.CertFile}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	restore := providers.Override(p)
	defer restore()
	run(w, served)
}

// listener listens on loopback, for the child: the file to hand over,
// and the address.
func listener(t *testing.T) (*os.File, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	file, err := lis.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	return file, lis.Addr().String()
}

// syncBuffer is the child's output, written by the exec package's copier.
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

// wrapped is the fixture as the suite sees it out of process: each store
// it hands out is first written into the child's configuration, with its
// credentials in the child's files, and is handed to the suite without
// them.
type wrapped struct {
	inner  conformance.Fixture
	dir    string
	config string
	logs   syncBuffer
	// metrics is the child's /metrics URL.
	metrics string

	mu     sync.Mutex
	last   [sha256.Size]byte
	stores int
}

// serve makes st the store the child serves as the suite's store. Each
// distinct store gets its own credentials directory, so the child sees a
// change even when a rotated file has the size and time of the old one.
func (w *wrapped) serve(t *testing.T, st conformance.Store) conformance.Store {
	t.Helper()
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	w.mu.Lock()
	defer w.mu.Unlock()
	if sum != w.last {
		w.stores++
		creds := filepath.Join(w.dir, fmt.Sprintf("credentials-%d", w.stores))
		for _, o := range st.Objects {
			switch o := o.(type) {
			case *corev1.Secret:
				writeKeys(t, filepath.Join(creds, "secrets", o.Name), o.Data)
			case *corev1.ConfigMap:
				data := map[string][]byte{}
				for k, v := range o.Data {
					data[k] = []byte(v)
				}
				writeKeys(t, filepath.Join(creds, "configmaps", o.Name), data)
			default:
				t.Fatalf("the store refers to a %T, which a provider process cannot be given as a file", o)
			}
		}
		cfg := remote.Config{Stores: []remote.StoreConfig{{
			Kind: "SecretStore", Namespace: conformance.Namespace, Name: conformance.StoreName,
			// Every key: the suite finds by regexp over whole keys,
			// which no prefix can serve. Prefixes are tested in
			// pkg/providers/remote.
			KeyPrefixes:    []string{""},
			Provider:       st.Spec.Provider,
			CredentialsDir: creds,
			Limits:         remote.Limits{QPS: 10000, Burst: 10000, Concurrency: 256},
		}}}
		b, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		tmp := w.config + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, w.config); err != nil {
			t.Fatal(err)
		}
		w.last = sum
	}
	// veil-apiserver's side holds no provider credential.
	return conformance.Store{Spec: st.Spec}
}

func writeKeys(t *testing.T, dir string, data map[string][]byte) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func (w *wrapped) Info() conformance.Info { return w.inner.Info() }

func (w *wrapped) Store(t *testing.T) conformance.Store { return w.serve(t, w.inner.Store(t)) }

func (w *wrapped) Seed(t *testing.T, key string, value []byte) string {
	return w.inner.Seed(t, key, value)
}

// The optional interfaces pass through; the suite calls them only when
// the fixture declares the capability, which the inner fixture then has.

func (w *wrapped) Tag(t *testing.T, key string, tags map[string]string) {
	w.inner.(conformance.Tagger).Tag(t, key, tags)
}

func (w *wrapped) Denied(t *testing.T, key string) (conformance.Store, []string) {
	st, creds := w.inner.(conformance.Denier).Denied(t, key)
	return w.serve(t, st), creds
}

func (w *wrapped) Outage(t *testing.T) func() { return w.inner.(conformance.Outager).Outage(t) }

// Logs are the child's log and metrics, and the server's log, if the
// fixture has one.
func (w *wrapped) Logs(t *testing.T) []byte {
	out := []byte(w.logs.String())
	if len(out) == 0 {
		t.Error("the provider process logged nothing at -v=4: the canary search of its log would prove nothing")
	}
	resp, err := http.Get(w.metrics)
	if err != nil {
		t.Fatalf("scraping the provider process's metrics: %v", err)
	}
	defer resp.Body.Close()
	metrics, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(metrics, []byte("veil_provider_calls_total{")) {
		t.Errorf("the provider process's metrics count no provider call: the canary search of them would prove nothing")
	}
	out = append(out, metrics...)
	if ls, ok := w.inner.(conformance.LogSource); ok {
		out = append(out, ls.Logs(t)...)
	}
	return out
}
