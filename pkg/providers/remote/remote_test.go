package remote

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/klog/v2"

	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

const canary = "canary-remote-7f3a9c"

// appConfig serves SecretStore app/db, keys under app/ and shared/ro/.
const appConfig = `
stores:
- kind: SecretStore
  namespace: app
  name: db
  keyPrefixes: ["app/", "shared/ro/"]
  provider: {fake: {}}
`

func TestReadThroughTheProtocol(t *testing.T) {
	m := newMemory(map[string]string{"app/db": `{"password":"` + canary + `"}`, "app/cache": "plain " + canary, "other/x": canary})
	e := serve(t, m, appConfig)
	c := mustClient(t, e.provider(t, e.clientTLS, providerID), "app", "db")

	v, err := c.Get(ctxFor(t), providers.Ref{Key: "app/db"})
	if err != nil || string(v.Data) != `{"password":"`+canary+`"}` || v.Version != "1" {
		t.Fatalf("Get: %d bytes, version %q, error %v", len(v.Data), v.Version, err)
	}
	_, err = c.Get(ctxFor(t), providers.Ref{Key: "app/missing"})
	wantReason(t, err, providers.NotFound, `key "app/missing" does not exist`)

	found, err := c.Find(ctxFor(t), providers.Find{Path: "app/"})
	if err != nil || strings.Join(sortedKeys(found), " ") != "app/cache app/db" {
		t.Fatalf("Find: %v, %v", sortedKeys(found), err)
	}
	got, err := c.Push(ctxFor(t), providers.Push{Key: "app/new", Value: []byte(canary), Owner: providers.Owner{Namespace: "app", Name: "p", UID: "u"}})
	if err != nil || got != "Pushed" {
		t.Fatalf("Push: %q, %v", got, err)
	}
	_, err = c.Push(ctxFor(t), providers.Push{Key: "app/new", Value: []byte(canary)})
	wantReason(t, err, providers.Invalid, "needs an owner")
	if err := c.Delete(ctxFor(t), providers.Delete{Key: "app/new", Owner: providers.Owner{Namespace: "app", Name: "p", UID: "u"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(providers.BatchGetter); ok {
		t.Error("the client is a BatchGetter, but the backend declared no batch get")
	}
	if _, ok := c.(providers.VersionLister); ok {
		t.Error("the client is a VersionLister, but the backend lists no versions")
	}
}

// Every reason, with its message and retry time, arrives as the provider
// gave it.
func TestErrorsKeepTheirReason(t *testing.T) {
	m := newMemory(map[string]string{})
	reasons := []providers.Reason{providers.NotFound, providers.Forbidden, providers.Unavailable, providers.Invalid,
		providers.Conflict, providers.NotOwner, providers.Throttled}
	for _, r := range reasons {
		m.errs["app/"+string(r)] = &providers.Error{Reason: r, Message: "the backend says " + string(r), RetryAfter: 1500 * time.Millisecond}
	}
	m.errs["app/plain"] = errors.New("a plain error")
	e := serve(t, m, appConfig)
	c := mustClient(t, e.provider(t, e.clientTLS, providerID), "app", "db")
	for _, r := range reasons {
		_, err := c.Get(ctxFor(t), providers.Ref{Key: "app/" + string(r)})
		wantReason(t, err, r, "the backend says "+string(r))
		var pe *providers.Error
		if errors.As(err, &pe); pe.RetryAfter != 1500*time.Millisecond {
			t.Errorf("%s: RetryAfter %s, want 1.5s", r, pe.RetryAfter)
		}
	}
	_, err := c.Get(ctxFor(t), providers.Ref{Key: "app/plain"})
	wantReason(t, err, providers.Unavailable, "a plain error")

	// Statuses without a detail (gRPC's own) get a reason from their code.
	for code, want := range map[codes.Code]providers.Reason{codes.DeadlineExceeded: providers.Unavailable,
		codes.PermissionDenied: providers.Forbidden, codes.ResourceExhausted: providers.Invalid, codes.Unimplemented: providers.Invalid} {
		wantReason(t, fromStatus(status.Error(code, "x"), "veil-provider p"), want, "veil-provider p")
	}
}

func TestCapabilitiesFollowTheStore(t *testing.T) {
	m := newMemory(map[string]string{"app/a": "1", "app/b": canary})
	m.batch, m.versions = true, true
	e := serve(t, m, appConfig)
	c := mustClient(t, e.provider(t, e.clientTLS, providerID), "app", "db")
	bg, ok := c.(providers.BatchGetter)
	if !ok {
		t.Fatal("the backend reads batches, but the client is no BatchGetter")
	}
	got, err := bg.GetBatch(ctxFor(t), []providers.Ref{{Key: "app/a"}, {Key: "app/b"}, {Key: "app/missing"}})
	if err != nil || len(got) != 2 || string(got[providers.Ref{Key: "app/a"}].Data) != "1" {
		t.Fatalf("GetBatch: %d values, %v", len(got), err)
	}
	vl, ok := c.(providers.VersionLister)
	if !ok || vl.VersionsPerCall() != 20 {
		t.Fatalf("the backend lists 20 versions a call; the client is a VersionLister: %v", ok)
	}
	vs, err := vl.Versions(ctxFor(t), []string{"app/a", "app/missing"})
	if err != nil || len(vs) != 1 || vs["app/a"].ID == "" || !vs["app/a"].Changed.Equal(time.Unix(1700000000, 5)) || vs["app/a"].Scope != "mem" {
		t.Fatalf("Versions: %v, %v", vs, err)
	}
	_, err = vl.Versions(ctxFor(t), []string{"app/a", "elsewhere/b"})
	wantReason(t, err, providers.Forbidden, `"elsewhere/b" is outside the prefixes`)
}

// T6/T8: whatever veil-apiserver asks, the provider serves only the stores
// and keys of its own configuration, and its backend is not even called
// for anything else.
func TestServesOnlyItsConfiguration(t *testing.T) {
	m := newMemory(map[string]string{"app/db": "1", "other/secret": canary, "shared/ro/x": "2", "shared/rw/y": canary})
	e := serve(t, m, appConfig)
	p := e.provider(t, e.clientTLS, providerID)

	_, err := newClient(t, p, "other", "db")
	wantReason(t, err, providers.Forbidden, "does not serve SecretStore other/db", "add the store there")

	c := mustClient(t, p, "app", "db")
	before := m.calls.Load()
	for _, key := range []string{"other/secret", "shared/rw/y", "app/../other/secret", "shared/ro/../rw/y", "", "App/db"} {
		_, err := c.Get(ctxFor(t), providers.Ref{Key: key})
		wantReason(t, err, providers.Forbidden, "this veil-provider serves for SecretStore app/db")
		_, err = c.Push(ctxFor(t), providers.Push{Key: key, Value: []byte("x"), Owner: providers.Owner{Namespace: "a", Name: "b", UID: "c"}})
		wantReason(t, err, providers.Forbidden)
		wantReason(t, c.Delete(ctxFor(t), providers.Delete{Key: key, Owner: providers.Owner{Namespace: "a", Name: "b", UID: "c"}}), providers.Forbidden)
	}
	for _, path := range []string{"", "other/", "shared/"} {
		_, err := c.Find(ctxFor(t), providers.Find{Path: path})
		wantReason(t, err, providers.Forbidden, "set find.path under one of them")
	}
	_, err = c.Find(ctxFor(t), providers.Find{Path: "app/../other/"})
	wantReason(t, err, providers.Forbidden, `find.path "app/../other/" has a ".." segment`)
	if n := m.calls.Load() - before; n != 0 {
		t.Errorf("the backend was called %d times for refused requests", n)
	}

	// A backend that lists more than the path asks: only keys under the
	// prefixes leave the provider.
	m.findAll = true
	found, err := c.Find(ctxFor(t), providers.Find{Path: "app/"})
	if err != nil || strings.Join(sortedKeys(found), " ") != "app/db shared/ro/x" {
		t.Errorf("Find from a backend that ignores the path: %v, %v", sortedKeys(found), err)
	}
}

const limitsConfig = `
stores:
- {kind: SecretStore, namespace: app, name: db, keyPrefixes: ["app/"], provider: {fake: {}}, limits: {qps: 1000, burst: 1000, concurrency: 1}}
- {kind: SecretStore, namespace: app, name: rate, keyPrefixes: ["app/"], provider: {fake: {}}, limits: {qps: 0.5, burst: 2}}
`

func TestLimits(t *testing.T) {
	m := newMemory(map[string]string{"app/a": "1", "app/slow": "2", "app/huge": strings.Repeat("x", MaxMessageSize+1)})
	slow := make(chan struct{})
	m.block["app/slow"] = slow
	e := serve(t, m, limitsConfig)
	p := e.provider(t, e.clientTLS, providerID)
	metrics.Register()
	throttled := func(reason string) float64 {
		t.Helper()
		v, err := testutil.GetCounterMetricValue(metrics.ProviderThrottled.WithLabelValues("SecretStore", "store", reason))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	inFlight, rated := throttled("in_flight"), throttled("rate")
	defer func() {
		if throttled("in_flight")-inFlight != 2 || throttled("rate")-rated != 1 {
			t.Errorf("veil_provider_throttled_total counted %v calls over the in-flight limit and %v over the rate, want 2 and 1",
				throttled("in_flight")-inFlight, throttled("rate")-rated)
		}
	}()

	t.Run("concurrency", func(t *testing.T) {
		c := mustClient(t, p, "app", "db")
		done := make(chan error, 1)
		go func() { _, err := c.Get(ctxFor(t), providers.Ref{Key: "app/slow"}); done <- err }()
		<-m.started
		_, err := c.Get(ctxFor(t), providers.Ref{Key: "app/a"})
		wantReason(t, err, providers.Throttled, "1 calls in flight")
		// A configuration change that builds a new backend client keeps
		// the store's budget: the call in flight on the old one counts.
		writeAtomic(t, e.configPath, []byte(strings.Replace(limitsConfig, `keyPrefixes: ["app/"]`, `keyPrefixes: ["app/", "more/"]`, 1)))
		builds := m.builds.Load()
		_, err = c.Get(ctxFor(t), providers.Ref{Key: "app/a"})
		wantReason(t, err, providers.Throttled, "1 calls in flight")
		if m.builds.Load() != builds+1 {
			t.Errorf("the changed configuration built %d clients, want 1", m.builds.Load()-builds)
		}
		close(slow)
		if err := <-done; err != nil {
			t.Fatalf("the call in flight: %v", err)
		}
		if _, err := c.Get(ctxFor(t), providers.Ref{Key: "app/a"}); err != nil {
			t.Fatalf("after the call in flight ended: %v", err)
		}
	})
	t.Run("rate", func(t *testing.T) {
		// Handshake took one of the burst of 2.
		c := mustClient(t, p, "app", "rate")
		if _, err := c.Get(ctxFor(t), providers.Ref{Key: "app/a"}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Get(ctxFor(t), providers.Ref{Key: "app/a"})
		wantReason(t, err, providers.Throttled, "calls per second")
		var pe *providers.Error
		if errors.As(err, &pe); pe.RetryAfter <= 0 {
			t.Errorf("a throttled call says when to retry: RetryAfter %s", pe.RetryAfter)
		}
	})
	t.Run("message size", func(t *testing.T) {
		c := mustClient(t, p, "app", "db")
		_, err := c.Get(ctxFor(t), providers.Ref{Key: "app/huge"})
		wantReason(t, err, providers.Invalid, "more than the 2097152 one response may carry")
		_, err = c.Push(ctxFor(t), providers.Push{Key: "app/a", Value: make([]byte, MaxMessageSize+1), Owner: providers.Owner{Namespace: "a", Name: "b", UID: "c"}})
		wantReason(t, err, providers.Invalid)
	})
}

func TestVersionNegotiation(t *testing.T) {
	e := serve(t, newMemory(nil), appConfig)
	p := e.provider(t, e.clientTLS, providerID)
	_, err := p.rpc.Handshake(ctxFor(t), &providerv1.HandshakeRequest{ProtocolVersions: []uint32{7, 9},
		Store: &providerv1.StoreRef{Kind: "SecretStore", Namespace: "app", Name: "db"}})
	wantReason(t, fromStatus(err, "p"), providers.Invalid, "speaks provider protocol versions [7 9]", "this veil-provider speaks [1]", "upgrade")
	resp, err := p.rpc.Handshake(ctxFor(t), &providerv1.HandshakeRequest{ProtocolVersions: []uint32{9, 1},
		Store: &providerv1.StoreRef{Kind: "SecretStore", Namespace: "app", Name: "db"}})
	if err != nil || resp.GetProtocolVersion() != 1 || resp.GetProvider() != "fake" {
		t.Fatalf("a client speaking 9 and 1: %v, %v", resp, err)
	}

	// A client of another provider kind is told so.
	other, err := NewProvider("vault", Endpoint{Address: e.addr, Identity: providerID, TLS: e.clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, err = newClient(t, other, "app", "db")
	wantReason(t, err, providers.Invalid, `serves the "fake" provider`)
}

func TestDeadlinePropagates(t *testing.T) {
	m := newMemory(map[string]string{"app/slow": "1"})
	m.block["app/slow"] = make(chan struct{})
	e := serve(t, m, appConfig)
	c := mustClient(t, e.provider(t, e.clientTLS, providerID), "app", "db")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, providers.Ref{Key: "app/slow"})
	wantReason(t, err, providers.Unavailable)
	if !m.deadline.Load() {
		t.Error("the backend's call had no deadline: the caller's did not travel")
	}
}

// The provider process reads its configuration and credential files again
// when they change: stores come and go, and a rotated credential builds a
// new backend client, without a restart.
func TestConfigurationAndCredentialsReload(t *testing.T) {
	m := newMemory(map[string]string{"app/db": "1", "team/x": "2"})
	e := serve(t, m, appConfig)
	p := e.provider(t, e.clientTLS, providerID)
	_, err := newClient(t, p, "team", "x")
	wantReason(t, err, providers.Forbidden)

	creds := t.TempDir()
	if err := os.MkdirAll(filepath.Join(creds, "secrets", "backend"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, filepath.Join(creds, "secrets", "backend", "token"), []byte("bad1"))
	writeAtomic(t, e.configPath, []byte(appConfig+`
- kind: SecretStore
  namespace: team
  name: x
  keyPrefixes: ["team/"]
  provider: {fake: {}}
  credentialsDir: `+creds+"\n"))
	c := mustClient(t, p, "team", "x")
	_, err = c.Get(ctxFor(t), providers.Ref{Key: "team/x"})
	wantReason(t, err, providers.Forbidden, "refused the token")
	writeAtomic(t, filepath.Join(creds, "secrets", "backend", "token"), []byte("good"))
	if v, err := c.Get(ctxFor(t), providers.Ref{Key: "team/x"}); err != nil || string(v.Data) != "2" {
		t.Fatalf("after the token was rotated: %v", err)
	}

	// A change that does not parse keeps what was served.
	writeAtomic(t, e.configPath, []byte("stores: [{kind: Nonsense"))
	if _, err := c.Get(ctxFor(t), providers.Ref{Key: "team/x"}); err != nil {
		t.Fatalf("after a broken configuration: %v", err)
	}
	// The client of the token rotated out is closed; so is, once the
	// store is removed, the client of the new one.
	waitClosed(t, m, "team/x", 1)
	writeAtomic(t, e.configPath, []byte(appConfig))
	_, err = c.Get(ctxFor(t), providers.Ref{Key: "team/x"})
	wantReason(t, err, providers.Forbidden, "does not serve SecretStore team/x")
	// The removed store's client is closed (its backend session ended).
	if _, err := mustClient(t, p, "app", "db").Get(ctxFor(t), providers.Ref{Key: "app/db"}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, m, "team/x", 2)
	if n := m.closedOf("app/db"); n != 0 {
		t.Errorf("%d clients of app/db, which stayed, were closed", n)
	}
}

// waitClosed waits (closing is asynchronous) until n clients of store
// have been closed.
func waitClosed(t *testing.T, m *memory, store string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for m.closedOf(store) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := m.closedOf(store); got != n {
		t.Errorf("%d clients of %s were closed, want %d", got, store, n)
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct{ config, says string }{
		{`stores: [{kind: SecretStore, name: a, keyPrefixes: [""], provider: {fake: {}}}]`, "a SecretStore needs its namespace"},
		{`stores: [{kind: ClusterSecretStore, namespace: x, name: a, keyPrefixes: [""], provider: {fake: {}}}]`, "a ClusterSecretStore has no namespace"},
		{`stores: [{kind: SecretStore, namespace: x, name: a, provider: {fake: {}}}]`, "keyPrefixes is empty"},
		{`stores: [{kind: SecretStore, namespace: x, name: a, keyPrefixes: [""], provider: {vault: {server: "https://v"}}}]`, `provider block "vault", but this process serves "fake"`},
		{`stores: [{kind: Secret, namespace: x, name: a, keyPrefixes: [""], provider: {fake: {}}}]`, "kind must be SecretStore or ClusterSecretStore"},
		{"stores:\n- {kind: SecretStore, namespace: x, name: a, keyPrefixes: [\"\"], provider: {fake: {}}}\n- {kind: SecretStore, namespace: x, name: a, keyPrefixes: [\"\"], provider: {fake: {}}}", "configured twice"},
		{`stores: [{kind: SecretStore, namespace: x, name: a, keyPrefixes: [""], provider: {fake: {}}, extra: 1}]`, "unknown field"},
	} {
		if _, err := ParseConfig([]byte(tc.config), "fake"); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: error %v, want it to say %q", tc.config, err, tc.says)
		}
	}
}

// T1, T4: both sides prove who they are, and accept only the one peer
// they are configured for, over TLS 1.3.
func TestMutualTLS(t *testing.T) {
	m := newMemory(map[string]string{"app/db": canary})
	e := serve(t, m, appConfig)
	other := newTestCA(t, "another-ca")
	for _, tc := range []struct {
		name     string
		files    TLSFiles
		identity string
	}{
		{"a client certificate of another identity", writeTLS(t, e.ca, "spiffe://cluster.local/ns/app/sa/attacker", false, e.ca), providerID},
		{"a client certificate of another CA", writeTLS(t, other, apiserverID, false, e.ca), providerID},
		{"a server certificate of a CA the client does not trust", writeTLS(t, e.ca, apiserverID, false, other), providerID},
		{"a provider identity other than the certificate's", e.clientTLS, "veil-provider-vault.veil-system.svc"},
		{"a server certificate used as a client's", writeTLS(t, e.ca, apiserverID, true, e.ca), providerID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := m.builds.Load()
			_, err := newClient(t, e.provider(t, tc.files, tc.identity), "app", "db")
			wantReason(t, err, providers.Unavailable)
			if m.builds.Load() != before {
				t.Error("a refused peer reached the backend")
			}
		})
	}
	t.Run("TLS 1.2", func(t *testing.T) {
		pair, err := tls.LoadX509KeyPair(e.clientTLS.CertFile, e.clientTLS.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg := &tls.Config{MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, ServerName: providerID, NextProtos: []string{"h2"}}
		cfg.RootCAs, _ = loadPool(t, e.clientTLS.CAFile)
		conn, err := tls.Dial("tcp", e.addr, cfg)
		if err == nil {
			conn.Close()
			t.Fatal("the provider accepted a TLS 1.2 handshake")
		}
	})
}

// T10: certificate files rotate under a running provider and client: new
// connections use the new certificates, calls in flight finish, and a
// client of a CA no longer trusted is refused.
func TestCertificateRotation(t *testing.T) {
	m := newMemory(map[string]string{"app/db": "1", "app/slow": "2"})
	release := make(chan struct{})
	m.block["app/slow"] = release
	e := serve(t, m, appConfig)
	p := e.provider(t, e.clientTLS, providerID)
	c := mustClient(t, p, "app", "db")
	first := peerSerial(t, p)

	inFlight := make(chan error, 1)
	go func() {
		v, err := c.Get(ctxFor(t), providers.Ref{Key: "app/slow"})
		if err == nil && string(v.Data) != "2" {
			err = errors.New("the call in flight read the wrong value")
		}
		inFlight <- err
	}()
	<-m.started

	// A new CA: the provider's certificate and the bundles both sides
	// trust carry both CAs for the rollover, as cert-manager would.
	next := newTestCA(t, "next-ca")
	both := &testCA{pem: append(append([]byte(nil), e.ca.pem...), next.pem...)}
	rotated := replaceTLS(t, e.serverTLS, next, providerID, true, both)
	replaceTLS(t, e.clientTLS, next, apiserverID, false, both)

	// A new connection (a new Provider: the old one keeps its own)
	// shows the new certificate.
	fresh := e.provider(t, e.clientTLS, providerID)
	if got := peerSerial(t, fresh); got.Cmp(rotated) != 0 || got.Cmp(first) == 0 {
		t.Errorf("a new connection saw certificate %s, want the rotated %s (was %s)", got, rotated, first)
	}
	close(release)
	if err := <-inFlight; err != nil {
		t.Errorf("the call in flight during the rotation failed: %v", err)
	}
	if _, err := c.Get(ctxFor(t), providers.Ref{Key: "app/db"}); err != nil {
		t.Errorf("the client of before the rotation: %v", err)
	}

	// The old CA is dropped: a client still holding a certificate of it
	// is refused on its next handshake.
	stale := writeTLS(t, e.ca, apiserverID, false, both)
	replaceTLS(t, e.serverTLS, next, providerID, true, next)
	_, err := newClient(t, e.provider(t, stale, providerID), "app", "db")
	wantReason(t, err, providers.Unavailable)
	if _, err := newClient(t, e.provider(t, e.clientTLS, providerID), "app", "db"); err != nil {
		t.Errorf("a client of the new CA: %v", err)
	}

	// Files caught half-rotated (a certificate without its key) keep the
	// previous pair.
	cert, _, _ := next.issue(t, providerID, true)
	writeAtomic(t, e.serverTLS.CertFile, cert)
	if _, err := newClient(t, e.provider(t, e.clientTLS, providerID), "app", "db"); err != nil {
		t.Errorf("with a certificate file that does not match its key: %v", err)
	}
}

// No value reaches either side's log or error, at any verbosity.
func TestNoValueInLogsOrErrors(t *testing.T) {
	var logs bytes.Buffer
	klog.LogToStderr(false)
	klog.SetOutput(&logs)
	defer func() { klog.Flush(); klog.SetOutput(os.Stderr); klog.LogToStderr(true) }()
	var v klog.Level
	_ = v.Set("10")
	defer func() { _ = v.Set("0") }()

	m := newMemory(map[string]string{"app/db": canary})
	m.errs["app/failing"] = providers.Errorf(providers.Unavailable, "the backend is down")
	e := serve(t, m, appConfig)
	c := mustClient(t, e.provider(t, e.clientTLS, providerID), "app", "db")
	var errs []error
	if v, err := c.Get(ctxFor(t), providers.Ref{Key: "app/db"}); err != nil || string(v.Data) != canary {
		t.Fatalf("reading the canary: %v", err)
	}
	for _, key := range []string{"app/failing", "app/missing", "other/db"} {
		_, err := c.Get(ctxFor(t), providers.Ref{Key: key})
		errs = append(errs, err)
	}
	_, err := c.Push(ctxFor(t), providers.Push{Key: "other/x", Value: []byte(canary)})
	errs = append(errs, err)
	_, err = c.Push(ctxFor(t), providers.Push{Key: "app/x", Value: []byte(canary)})
	errs = append(errs, err)
	for _, err := range errs {
		if err == nil || strings.Contains(err.Error(), canary) {
			t.Errorf("an error is missing or carries the value: %v", err != nil)
		}
	}
	klog.Flush()
	if logs.Len() == 0 {
		t.Fatal("nothing was logged at -v=10: the search would prove nothing")
	}
	if bytes.Contains(logs.Bytes(), []byte(canary)) {
		t.Error("the log carries the value")
	}
}

// veil-apiserver's side reads its rotated files too: the next handshake of
// a Provider made before the rotation presents the new certificate.
func TestClientCertificateRotation(t *testing.T) {
	ca := newTestCA(t, "ca")
	files := writeTLS(t, ca, apiserverID, false, ca)
	creds, err := ClientTLS(files, providerID)
	if err != nil {
		t.Fatal(err)
	}
	cc := creds.(*clientCreds)
	before := cc.config().Certificates[0].Certificate[0]
	replaceTLS(t, files, ca, apiserverID, false, ca)
	after := cc.config().Certificates[0].Certificate[0]
	want, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before, after) || !bytes.Equal(after, want.Certificate[0]) {
		t.Error("a handshake after the rotation does not present the rotated client certificate")
	}
}

// The example of docs/veil-provider.md is a valid configuration.
func TestExampleConfiguration(t *testing.T) {
	b, err := os.ReadFile("testdata/vault-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(b, "vault")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Stores) != 2 || cfg.Stores[0].Provider.Vault.Auth.Kubernetes == nil || cfg.Stores[1].Provider.Vault.Auth.TokenSecretRef == nil {
		t.Errorf("the example parsed to %+v", cfg)
	}
}

// A provider told to stop lets the calls in flight finish before Serve
// returns (and the process exits).
func TestServeDrainsCallsInFlight(t *testing.T) {
	m := newMemory(map[string]string{"app/slow": "1"})
	release := make(chan struct{})
	m.block["app/slow"] = release
	e := serve(t, m, appConfig)
	creds, err := ServerTLS(e.serverTLS, apiserverID)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, lis, e.server, creds) }()
	p, err := NewProvider("fake", Endpoint{Address: lis.Addr().String(), Identity: providerID, TLS: e.clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := mustClient(t, p, "app", "db")
	got := make(chan error, 1)
	go func() { _, err := c.Get(ctxFor(t), providers.Ref{Key: "app/slow"}); got <- err }()
	<-m.started
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) with a call in flight", err)
	case err := <-got:
		t.Fatalf("the call in flight ended (%v) before it was released", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-got; err != nil {
		t.Errorf("the call in flight at the stop: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestIdentityMatching(t *testing.T) {
	ca := newTestCA(t, "ca")
	parse := func(identity string) *x509.Certificate {
		certPEM, _, _ := ca.issue(t, identity, false)
		block, _ := pem.Decode(certPEM)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	uri, dns := parse(apiserverID), parse("veil-apiserver.veil-system.svc")
	for _, tc := range []struct {
		cert     *x509.Certificate
		identity string
		want     bool
	}{
		{uri, apiserverID, true},
		{uri, apiserverID + "/x", false},
		{uri, "spiffe://cluster.local/ns/veil-system/sa/VEIL-APISERVER", false},
		{dns, "veil-apiserver.veil-system.svc", true},
		{dns, "VEIL-APISERVER.veil-system.svc", true},
		{dns, "veil-apiserver.veil-system", false},
		// A DNS name is not matched against URIs, nor a URI against names.
		{dns, "dns://veil-apiserver.veil-system.svc", false},
		{uri, "cluster.local", false},
	} {
		if got := hasIdentity(tc.cert, tc.identity); got != tc.want {
			t.Errorf("a certificate of %v%v, identity %q: %v, want %v", tc.cert.URIs, tc.cert.DNSNames, tc.identity, got, tc.want)
		}
	}
}
