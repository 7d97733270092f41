package vault

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"
	testingclock "k8s.io/utils/clock/testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/credentials"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/test/conformance/remotetest"
	"github.com/veil-dev/veil/test/harness"
)

// These tests run against a real Vault server (hack/install-vault.sh), one
// for the whole package; each test works under its own mounts and roles.
var server *harness.Vault

func TestMain(m *testing.M) {
	// The child process of TestConformanceRemote serves and exits here,
	// before any server starts.
	remotetest.ServeIfChild()
	// A fuzz run (hack/fuzz.sh) runs no test that needs the server.
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	dir, err := os.MkdirTemp("", "veil-vault-test-")
	if err == nil {
		server, err = harness.StartVault(ctx, harness.VaultOptions{Dir: dir, Progress: os.Stderr})
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting Vault:", err)
		os.Exit(1)
	}
	code := m.Run()
	server.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// unique names mounts, roles and policies so tests do not meet.
func unique(t *testing.T) string {
	return strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())) + fmt.Sprint(time.Now().UnixNano()%1e6)
}

const testNamespace = "team"

// dialer records every address the provider dials, and refuses those
// outside allowed (none refused when allowed is nil), like
// --allowed-provider-endpoints.
type dialer struct {
	allowed map[string]bool
	mu      sync.Mutex
	dialed  []string
}

func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dialed = append(d.dialed, addr)
	d.mu.Unlock()
	host, _, _ := net.SplitHostPort(addr)
	if d.allowed != nil && !d.allowed[host] {
		return nil, fmt.Errorf("endpoint %q is not allowed by veil-apiserver's --allowed-provider-endpoints", host)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func (d *dialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dialed)
}

// fixture builds clients of a SecretStore in testNamespace, whose
// credentials are read through the real credentials.Reader from objs.
type fixture struct {
	t      *testing.T
	objs   []runtime.Object
	clock  clock.PassiveClock
	dialer *dialer
	plain  bool
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	return &fixture{t: t, objs: objs, clock: clock.RealClock{}, dialer: &dialer{}}
}

func (f *fixture) store(spec configv1alpha1.VaultProvider) *providers.Store {
	return &providers.Store{
		Kind: configv1alpha1.SecretStoreKind, Namespace: testNamespace, Name: "vault", Generation: 1,
		Spec: &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &spec}},
	}
}

func (f *fixture) newClient(spec configv1alpha1.VaultProvider) (*client, error) {
	store := f.store(spec)
	c, err := provider{clock: f.clock}.NewClient(ctxFor(f.t), store, credsFor(store, f.objs...), providers.Env{DialContext: f.dialer.DialContext, AllowPlaintext: f.plain})
	if err != nil {
		return nil, err
	}
	f.t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c.(*client), nil
}

func (f *fixture) mustClient(spec configv1alpha1.VaultProvider) *client {
	f.t.Helper()
	c, err := f.newClient(spec)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// credsFor reads objs through the real credentials.Reader, which confines
// a store to its namespace.
func credsFor(store *providers.Store, objs ...runtime.Object) providers.Credentials {
	return credentials.NewReader(fake.NewClientset(objs...), 0).ForStore(store)
}

func secret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace}, Data: data}
}

func ref(name, key string) *configv1alpha1.SecretKeySelector {
	return &configv1alpha1.SecretKeySelector{Name: name, Key: key}
}

func ptr[T any](v T) *T { return &v }

// tokenFor creates a Vault token with a policy granting rules, and returns
// it with the Secret "vault-token" holding it.
func tokenFor(t *testing.T, rules string) (string, *corev1.Secret) {
	t.Helper()
	ctx := ctxFor(t)
	policy := unique(t)
	if err := server.Policy(ctx, policy, rules); err != nil {
		t.Fatal(err)
	}
	tok, err := server.Token(ctx, time.Hour, policy)
	if err != nil {
		t.Fatal(err)
	}
	return tok, secret("vault-token", map[string]string{"token": tok})
}

// httpsSpec is a store spec for the test server's TLS listener, trusting
// its CA, with the given auth.
func httpsSpec(auth configv1alpha1.VaultAuth) configv1alpha1.VaultProvider {
	return configv1alpha1.VaultProvider{Server: server.HTTPSURL, CABundle: server.CA.CertPEM, Auth: auth}
}

func tokenAuth() configv1alpha1.VaultAuth {
	return configv1alpha1.VaultAuth{TokenSecretRef: ref("vault-token", "token")}
}

// steppingClock is a fake clock for token lifetimes.
func steppingClock() *testingclock.FakePassiveClock {
	return testingclock.NewFakePassiveClock(time.Now())
}
