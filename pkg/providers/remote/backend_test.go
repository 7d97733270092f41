package remote

import (
	"context"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// memory is the backend of these tests: a provider kind named "fake" (so
// a configuration's provider block is spec.provider.fake), holding values
// in memory, that can be made to block, fail, or misbehave. It is not the
// fake provider, and is not registered.
type memory struct {
	mu     sync.Mutex
	values map[string]string
	// errs makes Get of a key fail with an error.
	errs map[string]error
	// block makes Get of a key wait until the channel is closed or the
	// call's context ends; started is told when it waits.
	block   map[string]chan struct{}
	started chan string
	// deadline is whether the last blocked call had a deadline.
	deadline atomic.Bool
	// findAll makes Find ignore its path, as a misbehaving backend might.
	findAll bool
	// batch, versions and watch are the optional interfaces clients have.
	batch, versions, watch bool
	// gen is each key's version for watches, moved by set; watchers are
	// the watches open, told of each set; watchFail ends them all with an
	// error; watches counts the watches the backend started.
	gen       map[string]int
	watchers  map[chan providers.KeyChange]bool
	watchFail chan error
	watches   atomic.Int64
	calls     atomic.Int64
	builds    atomic.Int64
	// closed counts the clients closed, by store name.
	closed map[string]int
}

func newMemory(values map[string]string) *memory {
	return &memory{values: values, errs: map[string]error{}, block: map[string]chan struct{}{}, started: make(chan string, 16), closed: map[string]int{},
		gen: map[string]int{}, watchers: map[chan providers.KeyChange]bool{}, watchFail: make(chan error, 16)}
}

func (m *memory) Name() string                                   { return "fake" }
func (m *memory) Endpoints(*providers.Store) ([]*url.URL, error) { return nil, nil }

// NewClient reads the token Secret, when the store's configuration has
// credentials: a client whose token is not "good" is refused every read.
func (m *memory) NewClient(ctx context.Context, store *providers.Store, creds providers.Credentials, _ providers.Env) (providers.Client, error) {
	m.builds.Add(1)
	c := &memClient{m: m, token: "good", store: store.Namespace + "/" + store.Name}
	if fc, ok := creds.(*fileCredentials); ok && fc.dir != "" {
		b, err := creds.SecretKey(ctx, configv1alpha1.SecretKeySelector{Name: "backend", Key: "token"})
		if err != nil {
			return nil, err
		}
		c.token = strings.TrimSpace(string(b))
	}
	switch {
	case m.watch:
		return &struct {
			*memClient
			memWatch
		}{c, memWatch{c}}, nil
	case m.batch && m.versions:
		return &struct {
			*memClient
			memBatch
			memVersions
		}{c, memBatch{c}, memVersions{c}}, nil
	case m.batch:
		return &struct {
			*memClient
			memBatch
		}{c, memBatch{c}}, nil
	case m.versions:
		return &struct {
			*memClient
			memVersions
		}{c, memVersions{c}}, nil
	}
	return c, nil
}

type memClient struct {
	m     *memory
	token string
	store string
}

func (c *memClient) Get(ctx context.Context, ref providers.Ref) (providers.Value, error) {
	m := c.m
	m.calls.Add(1)
	if c.token != "good" {
		return providers.Value{}, providers.Errorf(providers.Forbidden, "the backend refused the token for key %q", ref.Key)
	}
	m.mu.Lock()
	ch, v, ok, err := m.block[ref.Key], m.values[ref.Key], false, m.errs[ref.Key]
	_, ok = m.values[ref.Key]
	m.mu.Unlock()
	if ch != nil {
		_, has := ctx.Deadline()
		m.deadline.Store(has)
		m.started <- ref.Key
		select {
		case <-ch:
		case <-ctx.Done():
			return providers.Value{}, providers.Wrap(providers.Unavailable, ctx.Err(), "reading %q", ref.Key)
		}
	}
	if err != nil {
		return providers.Value{}, err
	}
	if !ok {
		return providers.Value{}, providers.Errorf(providers.NotFound, "key %q does not exist", ref.Key)
	}
	return providers.Value{Data: []byte(v), Version: "1"}, nil
}

func (c *memClient) Find(_ context.Context, f providers.Find) (map[string]providers.Value, error) {
	c.m.calls.Add(1)
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	out := map[string]providers.Value{}
	for k, v := range c.m.values {
		if c.m.findAll || strings.HasPrefix(k, f.Path) {
			out[k] = providers.Value{Data: []byte(v)}
		}
	}
	return out, nil
}

func (c *memClient) Push(_ context.Context, p providers.Push) (string, error) {
	c.m.calls.Add(1)
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	if !p.Owner.Valid() {
		return "", providers.Errorf(providers.Invalid, "a push to %q needs an owner", p.Key)
	}
	if string(p.Value) == c.m.values[p.Key] {
		return "Unchanged", nil
	}
	c.m.values[p.Key] = string(p.Value)
	return "Pushed", nil
}

func (c *memClient) Delete(_ context.Context, d providers.Delete) error {
	c.m.calls.Add(1)
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	delete(c.m.values, d.Key)
	return nil
}

func (c *memClient) Close(context.Context) error {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	c.m.closed[c.store]++
	return nil
}

// closedOf is how many clients of store (namespace/name) were closed.
func (m *memory) closedOf(store string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed[store]
}

type memBatch struct{ c *memClient }

func (b memBatch) GetBatch(ctx context.Context, refs []providers.Ref) (map[providers.Ref]providers.Value, error) {
	out := map[providers.Ref]providers.Value{}
	for _, r := range refs {
		if v, err := b.c.Get(ctx, r); err == nil {
			out[r] = v
		}
	}
	return out, nil
}

type memVersions struct{ c *memClient }

func (v memVersions) Versions(_ context.Context, keys []string) (map[string]providers.KeyVersion, error) {
	v.c.m.mu.Lock()
	defer v.c.m.mu.Unlock()
	out := map[string]providers.KeyVersion{}
	for _, k := range keys {
		if val, ok := v.c.m.values[k]; ok {
			out[k] = providers.KeyVersion{ID: "len-" + string(rune('a'+len(val)%26)), Changed: time.Unix(1700000000, 5), Scope: "mem"}
		}
	}
	return out, nil
}

func (memVersions) VersionsPerCall() int { return 20 }

// memWatch watches the memory's values: versions are "v" and the number
// of sets of a key.
type memWatch struct{ c *memClient }

// changeOfLocked is key's state now; m.mu is held.
func (m *memory) changeOfLocked(key string) providers.KeyChange {
	kc := providers.KeyChange{Key: key}
	if _, ok := m.values[key]; ok {
		kc.Exists, kc.Version = true, providers.KeyVersion{ID: fmt.Sprintf("v%d", m.gen[key])}
	}
	return kc
}

// set writes (or with deleted, removes) key and tells the watches.
func (m *memory) set(key, value string, deleted bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if deleted {
		delete(m.values, key)
	} else {
		m.values[key] = value
	}
	m.gen[key]++
	kc := m.changeOfLocked(key)
	for w := range m.watchers {
		w <- kc
	}
}

// watching is how many watches are open now.
func (m *memory) watching() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.watchers)
}

func (w memWatch) WatchChanges(ctx context.Context, keys []string, changed func(providers.KeyChange) error) error {
	m := w.c.m
	m.watches.Add(1)
	if err := providers.CheckWatchKeys(keys); err != nil {
		return err
	}
	watched := map[string]bool{}
	ch := make(chan providers.KeyChange, 64)
	m.mu.Lock()
	initial := make([]providers.KeyChange, 0, len(keys))
	for _, k := range keys {
		watched[k] = true
		initial = append(initial, m.changeOfLocked(k))
	}
	m.watchers[ch] = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.watchers, ch)
		m.mu.Unlock()
	}()
	for _, kc := range initial {
		if err := changed(kc); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-m.watchFail:
			return err
		case kc := <-ch:
			if watched[kc.Key] {
				if err := changed(kc); err != nil {
					return err
				}
			}
		}
	}
}

// served is a provider process in this test: a Server on loopback with
// mutual TLS, and the files it reads.
type servedEnv struct {
	ca         *testCA
	serverTLS  TLSFiles
	clientTLS  TLSFiles
	configPath string
	addr       string
	server     *Server
}

// serve starts backend behind a Server whose configuration is config.
func serve(t testing.TB, backend providers.Provider, config string) *servedEnv {
	t.Helper()
	e := &servedEnv{ca: newTestCA(t, "test-ca")}
	e.serverTLS = writeTLS(t, e.ca, providerID, true, e.ca)
	e.clientTLS = writeTLS(t, e.ca, apiserverID, false, e.ca)
	e.configPath = filepath.Join(t.TempDir(), "config.yaml")
	writeAtomic(t, e.configPath, []byte(config))
	var err error
	if e.server, err = NewServer(backend, e.configPath, providers.Env{}); err != nil {
		t.Fatal(err)
	}
	// Replaced clients are closed at once: the tests wait for it. Change
	// streams look at the configuration often.
	e.server.closeDelay = 0
	e.server.recheck = 20 * time.Millisecond
	creds, err := ServerTLS(e.serverTLS, apiserverID)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, lis, e.server, creds) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// provider is veil-apiserver's side of e, with the client files given.
func (e *servedEnv) provider(t testing.TB, files TLSFiles, identity string) *Provider {
	t.Helper()
	p, err := NewProvider("fake", Endpoint{Address: e.addr, Identity: identity, TLS: files})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func storeRef(namespace, name string) *providers.Store {
	return &providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: namespace, Name: name, Generation: 1,
		Spec: &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{}}}}
}

// client is a client of SecretStore namespace/name through p.
func newClient(t testing.TB, p *Provider, namespace, name string) (providers.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.NewClient(ctx, storeRef(namespace, name), nil, providers.Env{})
}

func mustClient(t testing.TB, p *Provider, namespace, name string) providers.Client {
	t.Helper()
	c, err := newClient(t, p, namespace, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantReason(t testing.TB, err error, want providers.Reason, says ...string) {
	t.Helper()
	if providers.ReasonOf(err) != want || err == nil {
		t.Fatalf("error %v: reason %s, want %s", err, providers.ReasonOf(err), want)
	}
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// peerSerial is the serial number of the certificate the provider showed
// on the connection of a call for SecretStore app/db.
func peerSerial(t testing.TB, p *Provider) *big.Int {
	t.Helper()
	var pr peer.Peer
	req := &providerv1.ValidateRequest{Store: &providerv1.StoreRef{Kind: "SecretStore", Namespace: "app", Name: "db"}}
	if _, err := p.rpc.Validate(ctxFor(t), req, grpc.Peer(&pr)); err != nil {
		t.Fatal(err)
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		t.Fatalf("the call's peer has no TLS certificate: %#v", pr.AuthInfo)
	}
	return info.State.PeerCertificates[0].SerialNumber
}
