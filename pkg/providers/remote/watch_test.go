package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	k8smetrics "k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/testutil"

	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// watchConfig serves SecretStore app/db, keys under app/, at most two
// change streams at once.
const watchConfig = `
stores:
- kind: SecretStore
  namespace: app
  name: db
  keyPrefixes: ["app/"]
  provider: {fake: {}}
  limits: {streams: 2}
`

// watcher is a ChangeWatcher's watch running in the background: what it
// reports arrives on changes, and how it ended on done.
type watcher struct {
	changes chan providers.KeyChange
	done    chan error
	ended   chan struct{}
	cancel  context.CancelFunc
}

func startWatch(t *testing.T, c providers.Client, keys ...string) *watcher {
	t.Helper()
	cw, ok := c.(providers.ChangeWatcher)
	if !ok {
		t.Fatal("the client is no providers.ChangeWatcher, but its backend detects changes")
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{changes: make(chan providers.KeyChange, 100), done: make(chan error, 1), ended: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.ended)
		w.done <- cw.WatchChanges(ctx, keys, func(kc providers.KeyChange) error { w.changes <- kc; return nil })
	}()
	t.Cleanup(func() {
		cancel()
		<-w.ended
	})
	return w
}

// next is the next change reported, within 10 seconds.
func (w *watcher) next(t *testing.T) providers.KeyChange {
	t.Helper()
	select {
	case kc := <-w.changes:
		return kc
	case err := <-w.done:
		t.Fatalf("the watch ended (%v) while a change was awaited", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported within 10s")
	}
	return providers.KeyChange{}
}

// none checks that nothing more was reported: what was sent before mark
// arrives before mark's own change (one stream, in order).
func (w *watcher) none(t *testing.T, m *memory, mark string) {
	t.Helper()
	m.set(mark, "x", false)
	if kc := w.next(t); kc.Key != mark {
		t.Fatalf("reported %s (exists %v) before the marker: a change that was not one", kc.Key, kc.Exists)
	}
}

func describe(kcs ...providers.KeyChange) string {
	var b strings.Builder
	for _, kc := range kcs {
		if kc.Exists {
			fmt.Fprintf(&b, "%s=%s ", kc.Key, kc.Version.ID)
		} else {
			fmt.Fprintf(&b, "%s=absent ", kc.Key)
		}
	}
	return strings.TrimSpace(b.String())
}

// eventuallyTrue polls cond until it holds, for 10 seconds at most.
func eventuallyTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *Server) openStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.streams {
		n += c
	}
	return n
}

// The initial state, then each change, reach veil-apiserver's side; a
// canceled watch ends cleanly on both sides.
func TestWatchChangesThroughTheProtocol(t *testing.T) {
	// As veil-provider registers it (pkg/cmd/provider).
	k8smetrics.NewKubeRegistry().MustRegister(metrics.ProviderRequests)
	requests := func(method string) float64 {
		t.Helper()
		v, err := testutil.GetCounterMetricValue(metrics.ProviderRequests.WithLabelValues(method))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	watches, handshakes := requests("WatchChanges"), requests("Handshake")
	m := newMemory(map[string]string{"app/a": "1", "app/b": canary})
	m.watch = true
	e := serve(t, m, watchConfig)
	c := mustClient(t, e.provider(t, e.clientTLS, providerID), "app", "db")
	defer func() {
		if requests("WatchChanges")-watches != 1 || requests("Handshake")-handshakes != 1 {
			t.Errorf("veil_provider_requests_total counted %v WatchChanges and %v Handshake requests, want 1 and 1",
				requests("WatchChanges")-watches, requests("Handshake")-handshakes)
		}
	}()
	if _, ok := c.(providers.VersionLister); ok {
		t.Error("the client is a VersionLister, but the backend lists no versions")
	}
	w := startWatch(t, c, "app/b", "app/missing", "app/a")
	initial := []providers.KeyChange{w.next(t), w.next(t), w.next(t)}
	if got := describe(initial...); got != "app/b=v0 app/missing=absent app/a=v0" {
		t.Fatalf("initial state %q, want one change a key in the order asked", got)
	}
	m.set("app/a", "2", false)
	m.set("app/missing", "3", false)
	m.set("app/b", "", true)
	m.set("app/unwatched", "4", false)
	got := describe(w.next(t), w.next(t), w.next(t))
	if got != "app/a=v1 app/missing=v1 app/b=absent" {
		t.Fatalf("changes %q", got)
	}
	if strings.Contains(got, canary) {
		t.Error("a change carries a value")
	}
	if n := e.server.openStreams(); n != 1 {
		t.Errorf("%d streams counted open, want 1", n)
	}
	w.cancel()
	select {
	case err := <-w.done:
		if err != nil {
			t.Errorf("a canceled watch returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a canceled watch did not return")
	}
	eventuallyTrue(t, "the provider's side ends the canceled stream", func() bool { return e.server.openStreams() == 0 && m.watching() == 0 })
}

// T6/T8 for streams: only the stores and keys of the provider's own
// configuration, a bounded number of keys and of streams; the backend is
// not asked to watch anything refused.
func TestWatchChangesServesOnlyItsConfiguration(t *testing.T) {
	m := newMemory(map[string]string{"app/a": "1", "other/x": canary})
	m.watch = true
	e := serve(t, m, watchConfig)
	p := e.provider(t, e.clientTLS, providerID)
	raw := func(ns, name string, keys ...string) error {
		t.Helper()
		stream, err := p.rpc.WatchChanges(ctxFor(t), &providerv1.WatchChangesRequest{
			Store: &providerv1.StoreRef{Kind: "SecretStore", Namespace: ns, Name: name}, Keys: keys})
		if err == nil {
			_, err = stream.Recv()
		}
		return fromStatus(err, "p")
	}
	wantReason(t, raw("other", "db", "app/a"), providers.Forbidden, "does not serve SecretStore other/db")
	wantReason(t, raw("app", "db", "app/a", "other/x"), providers.Forbidden, `"other/x" is outside the prefixes`)
	wantReason(t, raw("app", "db", "app/../other/x"), providers.Forbidden, `".." segment`)
	wantReason(t, raw("app", "db", "app/a", "app/a"), providers.Invalid, "named twice")
	many := make([]string, providers.MaxVersionKeys+1)
	for i := range many {
		many[i] = fmt.Sprintf("app/k%d", i)
	}
	wantReason(t, raw("app", "db", many...), providers.Invalid, "more than the 10000")
	// veil-apiserver's side refuses them before sending.
	cw := mustClient(t, p, "app", "db").(providers.ChangeWatcher)
	wantReason(t, cw.WatchChanges(ctxFor(t), many, func(providers.KeyChange) error { return nil }), providers.Invalid, "more than the 10000")
	if n := m.watches.Load(); n != 0 {
		t.Fatalf("the backend started %d watches for refused streams", n)
	}

	// Two streams may be open for the store; a third is refused as
	// Throttled, and counted.
	metrics.Register()
	throttled := func() float64 {
		v, err := testutil.GetCounterMetricValue(metrics.ProviderThrottled.WithLabelValues("SecretStore", "store", "streams"))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := throttled()
	c := mustClient(t, p, "app", "db")
	a, b := startWatch(t, c, "app/a"), startWatch(t, c, "app/a")
	a.next(t)
	b.next(t)
	err := raw("app", "db", "app/a")
	wantReason(t, err, providers.Throttled, "2 change streams open")
	var pe *providers.Error
	if errors.As(err, &pe); pe.RetryAfter <= 0 {
		t.Error("a refused stream says when to try again")
	}
	if throttled()-before != 1 {
		t.Errorf("veil_provider_throttled_total{limit=streams} counted %v, want 1", throttled()-before)
	}
	b.cancel()
	eventuallyTrue(t, "a stream slot is free once a stream ended", func() bool { return e.server.openStreams() == 1 })
	if err := raw("app", "db", "app/a"); err != nil {
		t.Fatalf("with a slot free: %v", err)
	}

	// The store leaves the configuration: its open stream ends as
	// Forbidden, and veil-apiserver's side stops watching (a reason that
	// will not pass by reconnecting).
	writeAtomic(t, e.configPath, []byte(strings.Replace(watchConfig, "name: db", "name: other", 1)))
	select {
	case err := <-a.done:
		wantReason(t, err, providers.Forbidden, "does not serve SecretStore app/db")
	case <-time.After(10 * time.Second):
		t.Fatal("the stream of a store removed from the configuration went on")
	}
}

// A backend without change detection: the stream is Unimplemented, with a
// message saying what to use, and the client offers no ChangeWatcher.
func TestWatchChangesUnimplementedWithoutABackendWatch(t *testing.T) {
	m := newMemory(nil)
	m.versions = true
	e := serve(t, m, appConfig)
	p := e.provider(t, e.clientTLS, providerID)
	stream, err := p.rpc.WatchChanges(ctxFor(t), &providerv1.WatchChangesRequest{Store: &providerv1.StoreRef{Kind: "SecretStore", Namespace: "app", Name: "db"}, Keys: []string{"app/a"}})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("WatchChanges: %v, want Unimplemented", err)
	}
	wantReason(t, fromStatus(err, "p"), providers.Invalid, "does not detect changes itself", "Versions")
	if _, ok := mustClient(t, p, "app", "db").(providers.ChangeWatcher); ok {
		t.Error("the client is a ChangeWatcher, but the backend did not declare change_stream")
	}
}

// fastBackoff makes clients open failed streams again at once.
func fastBackoff(t *testing.T) {
	saved := watchBackoff
	watchBackoff.initial, watchBackoff.max = 10*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { watchBackoff = saved })
}

// A stream that fails for a reason that passes is opened again; its
// initial state is compared with what was reported, so the change made
// while no stream was open is reported, once, and nothing else is.
func TestWatchChangesResyncsAfterAnInterruption(t *testing.T) {
	fastBackoff(t)
	m := newMemory(map[string]string{"app/a": "1", "app/b": "2", "app/c": "3"})
	m.watch = true
	e := serve(t, m, watchConfig)
	c := mustClient(t, e.provider(t, e.clientTLS, providerID), "app", "db")
	w := startWatch(t, c, "app/a", "app/b", "app/c")
	if got := describe(w.next(t), w.next(t), w.next(t)); got != "app/a=v0 app/b=v0 app/c=v0" {
		t.Fatalf("initial state %q", got)
	}
	// The backend fails, and is down for a moment: its next watch fails
	// too. Meanwhile b changes and c is deleted, with no stream open.
	m.mu.Lock()
	m.values["app/b"], m.gen["app/b"] = "new", 1
	delete(m.values, "app/c")
	m.gen["app/c"] = 1
	m.mu.Unlock()
	m.watchFail <- providers.Errorf(providers.Unavailable, "the backend lost its connection")
	m.watchFail <- providers.Errorf(providers.Unavailable, "the backend is still down")
	if got := describe(w.next(t), w.next(t)); got != "app/b=v1 app/c=absent" {
		t.Fatalf("after the interruption %q, want b's new version and c's deletion only", got)
	}
	w.none(t, m, "app/a")
	if n := m.watches.Load(); n < 3 {
		t.Errorf("the backend was watched %d times, want a watch after each failure", n)
	}
	select {
	case err := <-w.done:
		t.Fatalf("the watch ended (%v) on a passing failure", err)
	default:
	}
}

// A changed configuration (or rotated credentials) builds a new backend
// client under an open stream: the stream goes on with it, and sends only
// what differs from what it sent.
func TestWatchChangesFollowsTheConfiguration(t *testing.T) {
	m := newMemory(map[string]string{"app/a": "1", "app/b": "2"})
	m.watch = true
	e := serve(t, m, watchConfig)
	p := e.provider(t, e.clientTLS, providerID)
	c := mustClient(t, p, "app", "db")
	w := startWatch(t, c, "app/a", "app/b")
	w.next(t)
	w.next(t)
	// The protocol itself, without the client's own comparison.
	raw, err := p.rpc.WatchChanges(ctxFor(t), &providerv1.WatchChangesRequest{Store: &providerv1.StoreRef{Kind: "SecretStore", Namespace: "app", Name: "db"}, Keys: []string{"app/a", "app/b"}})
	if err != nil {
		t.Fatal(err)
	}
	recv := func() string {
		t.Helper()
		m, err := raw.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return describe(changeOf(m))
	}
	if got := recv() + " " + recv(); got != "app/a=v0 app/b=v0" {
		t.Fatalf("initial state on the wire: %q", got)
	}
	eventuallyTrue(t, "both backend watches run", func() bool { return m.watching() == 2 })
	builds, watches := m.builds.Load(), m.watches.Load()
	// The write happens while no backend watch is told of it: the new
	// client's initial state carries it.
	m.mu.Lock()
	m.values["app/a"], m.gen["app/a"] = "changed", 1
	m.mu.Unlock()
	writeAtomic(t, e.configPath, []byte(strings.Replace(watchConfig, `keyPrefixes: ["app/"]`, `keyPrefixes: ["app/", "more/"]`, 1)))
	if got := describe(w.next(t)); got != "app/a=v1" {
		t.Fatalf("after the configuration changed: %q", got)
	}
	if got := recv(); got != "app/a=v1" {
		t.Fatalf("on the wire after the configuration changed: %q", got)
	}
	if m.builds.Load() != builds+1 || m.watches.Load() != watches+2 {
		t.Errorf("%d clients built and %d watches started after the change, want 1 and 2 (one a stream)", m.builds.Load()-builds, m.watches.Load()-watches)
	}
	w.none(t, m, "app/b")
	if got := recv(); got != "app/b=v1" {
		t.Fatalf("on the wire, the provider sent %q before the marker: its new client's initial state was not compared with what it sent", got)
	}
	// Keys that leave the prefixes end the stream.
	writeAtomic(t, e.configPath, []byte(strings.Replace(watchConfig, `keyPrefixes: ["app/"]`, `keyPrefixes: ["app/a"]`, 1)))
	select {
	case err := <-w.done:
		wantReason(t, err, providers.Forbidden, `"app/b" is outside the prefixes`)
	case <-time.After(10 * time.Second):
		t.Fatal("the stream went on with a key no longer served")
	}
}

// A provider told to stop ends its change streams at once (Unavailable,
// so clients reconnect) instead of waiting for them until the drain
// timeout.
func TestServeEndsChangeStreams(t *testing.T) {
	m := newMemory(map[string]string{"app/a": "1"})
	m.watch = true
	e := serve(t, m, watchConfig)
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
	stream, err := p.rpc.WatchChanges(ctxFor(t), &providerv1.WatchChangesRequest{Store: &providerv1.StoreRef{Kind: "SecretStore", Namespace: "app", Name: "db"}, Keys: []string{"app/a"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	_, err = stream.Recv()
	wantReason(t, fromStatus(err, "p"), providers.Unavailable, "veil-provider is stopping")
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(drainTimeout / 2):
		t.Fatal("Serve waited for an open change stream")
	}
	if d := time.Since(start); d > drainTimeout/2 {
		t.Errorf("the stop took %s", d)
	}
}
