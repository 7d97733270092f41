package vault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/spf13/pflag"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// count is how many requests to path reached the test Vault through the
// recording proxy; total, to paths under prefix.
func (r *headerRecorder) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen[path])
}

func (r *headerRecorder) total(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for p, hs := range r.seen {
		if strings.HasPrefix(p, prefix) {
			n += len(hs)
		}
	}
	return n
}

// feedFixture runs an audit feed for a recording proxy in front of the
// test Vault, and points a socket audit device of the test Vault at it.
type feedFixture struct {
	rec    *headerRecorder
	url    string
	mount  string
	device string
	client *feedClient
}

func newFeedFixture(t *testing.T, enableDevice bool) *feedFixture {
	t.Helper()
	ctx := ctxFor(t)
	rec, url := recordHeaders(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	feedCtx, stop := context.WithCancel(context.Background())
	sources, _ := ParseSources([]string{"127.0.0.1"})
	feedURL, _ := feedServer(url)
	if err := StartAuditFeeds(feedCtx, []AuditFeedConfig{{Server: feedURL, Sources: sources, Listener: lis}}); err != nil {
		t.Fatal(err)
	}
	f := &feedFixture{rec: rec, url: url, mount: unique(t), device: "socket-" + unique(t)}
	t.Cleanup(func() {
		stop()
		stopAuditFeed(feedURL)
	})
	if enableDevice {
		f.enable(t, lis.Addr().String())
	}
	if err := server.EnableKV(ctx, f.mount, 2); err != nil {
		t.Fatal(err)
	}
	_, tokSecret := tokenFor(t, `path "`+f.mount+`/*" { capabilities = ["read", "list"] }`)
	fx := newFixture(t, tokSecret)
	path := f.mount
	store := fx.store(configv1alpha1.VaultProvider{Server: url, Path: &path, Auth: tokenAuth()})
	c, err := provider{clock: fx.clock}.NewClient(ctx, store, credsFor(store, tokSecret), providers.Env{DialContext: fx.dialer.DialContext, AllowPlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	fc, ok := c.(*feedClient)
	if !ok {
		t.Fatalf("a client of a server with an audit feed is a %T, want a *feedClient (a providers.ChangeWatcher)", c)
	}
	f.client = fc
	return f
}

// seen waits until the feed has taken in a write of key.
func (f *feedFixture) seen(t *testing.T, key string) {
	t.Helper()
	k := feedKey{namespace: f.client.namespace, mount: f.client.mount, key: key}
	deadline := time.Now().Add(10 * time.Second)
	for f.client.feed.touches(k) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the feed took in no write of %s within 10s", key)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *feedFixture) enable(t *testing.T, addr string) {
	t.Helper()
	if err := server.Root.Sys().EnableAuditWithOptionsWithContext(ctxFor(t), f.device, &vaultapi.EnableAuditOptions{
		Type: "socket", Options: map[string]string{"address": addr, "socket_type": "tcp"},
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Root.Sys().DisableAuditWithContext(context.Background(), f.device) })
}

// watch runs WatchChanges in the background, passing its changes on.
type watchRun struct {
	changes chan providers.KeyChange
	done    chan error
	cancel  context.CancelFunc
	// last is the version last reported of each key.
	last map[string]string
}

func startWatch(t *testing.T, c providers.ChangeWatcher, keys []string) *watchRun {
	return startWatchIn(context.Background(), t, c, keys)
}

func startWatchIn(parent context.Context, t *testing.T, c providers.ChangeWatcher, keys []string) *watchRun {
	ctx, cancel := context.WithCancel(parent)
	w := &watchRun{changes: make(chan providers.KeyChange, 100), done: make(chan error, 1), cancel: cancel}
	t.Cleanup(cancel)
	go func() {
		w.done <- c.WatchChanges(ctx, keys, func(kc providers.KeyChange) error {
			w.changes <- kc
			return nil
		})
	}()
	return w
}

// next returns the next KeyChange reported.
func (w *watchRun) next(t *testing.T) providers.KeyChange {
	t.Helper()
	select {
	case kc := <-w.changes:
		w.seen(kc)
		return kc
	case err := <-w.done:
		t.Fatalf("the watch ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no change reported in 30s")
	}
	return providers.KeyChange{}
}

// seen records the version kc reports.
func (w *watchRun) seen(kc providers.KeyChange) {
	if w.last == nil {
		w.last = map[string]string{}
	}
	w.last[kc.Key] = fmt.Sprint(kc.Exists, kc.Version.ID)
}

// repeat says whether kc repeats the version last reported for its key,
// which the contract allows (an entry of a write from before the watch may
// arrive after it began).
func (w *watchRun) repeat(kc providers.KeyChange) bool {
	last, ok := w.last[kc.Key]
	return ok && last == fmt.Sprint(kc.Exists, kc.Version.ID)
}

// nextOf returns the next KeyChange of key, skipping repeats of other
// keys' versions; any other change fails the test.
func (w *watchRun) nextOf(t *testing.T, key string) providers.KeyChange {
	t.Helper()
	for {
		select {
		case kc := <-w.changes:
			switch {
			case kc.Key == key:
				w.seen(kc)
				return kc
			case !w.repeat(kc):
				t.Fatalf("reported %+v while waiting for a change of %s", kc, key)
			}
		case err := <-w.done:
			t.Fatalf("the watch ended: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatalf("no change of %s reported in 30s", key)
		}
	}
}

// quiet fails if anything but a repeat is reported within d.
func (w *watchRun) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	end := time.After(d)
	for {
		select {
		case kc := <-w.changes:
			if !w.repeat(kc) {
				t.Fatalf("reported %+v, want nothing", kc)
			}
		case err := <-w.done:
			t.Fatalf("the watch ended: %v", err)
		case <-end:
			return
		}
	}
}

// TestAuditFeed: with Vault's socket audit device pointed at a feed, a
// watch of keys reports their versions, then each write of one of them as
// it happens, asking Vault only about the key written; a write of a key
// it does not follow costs nothing; a watch started again reads no version
// the feed knows to be current; and a lost connection ends the watch.
func TestAuditFeed(t *testing.T) {
	ctx := ctxFor(t)
	f := newFeedFixture(t, true)
	for _, k := range []string{"a", "b", "other"} {
		if _, err := server.PutKV(ctx, f.mount, k, map[string]any{"v": "1"}); err != nil {
			t.Fatal(err)
		}
		f.seen(t, k)
	}
	keys := []string{"a", "b", "missing"}
	meta := "/v1/" + f.mount + "/metadata/"
	w := startWatch(t, f.client, keys)
	for _, want := range []struct {
		key    string
		exists bool
	}{{"a", true}, {"b", true}, {"missing", false}} {
		kc := w.next(t)
		if kc.Key != want.key || kc.Exists != want.exists {
			t.Fatalf("initial state: got %+v, want key %s exists %v", kc, want.key, want.exists)
		}
		if kc.Exists && kc.Version.ID != "1/1" {
			t.Fatalf("initial version of %s: %q, want 1/1", kc.Key, kc.Version.ID)
		}
	}
	if got := f.rec.total(meta); got != 3 {
		t.Fatalf("the initial state read %d versions, want 3 (one a key)", got)
	}

	// A write of a followed key: reported with its new version, at the
	// cost of one read of that key's metadata.
	if _, err := server.PutKV(ctx, f.mount, "b", map[string]any{"v": "2"}); err != nil {
		t.Fatal(err)
	}
	if kc := w.nextOf(t, "b"); kc.Key != "b" || !kc.Exists || kc.Version.ID != "2/2" {
		t.Fatalf("after writing b: %+v, want b at 2/2", kc)
	}
	if got := f.rec.count(meta + "b"); got != 2 {
		t.Fatalf("b's metadata was read %d times, want 2 (initial state, then once for its write)", got)
	}
	// A key created after the watch began is reported too.
	if _, err := server.PutKV(ctx, f.mount, "missing", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	if kc := w.nextOf(t, "missing"); kc.Key != "missing" || !kc.Exists {
		t.Fatalf("after creating missing: %+v, want it to exist", kc)
	}
	// A deletion of the current version is a change.
	if err := server.Root.KVv2(f.mount).Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if kc := w.nextOf(t, "a"); kc.Key != "a" || kc.Version.ID == "1/1" {
		t.Fatalf("after deleting a's current version: %+v, want a with another version", kc)
	}
	// A key not followed: nothing reported, nothing read.
	if _, err := server.PutKV(ctx, f.mount, "other", map[string]any{"v": "2"}); err != nil {
		t.Fatal(err)
	}
	w.quiet(t, 2*time.Second)
	if got := f.rec.count(meta + "other"); got != 0 {
		t.Fatalf("a write of a key no watch follows made %d metadata reads of it", got)
	}

	// A watch started again, for the same keys and one more, reads only
	// the new key's version: the feed has seen no write of the others
	// since they were read. (Known and unknown keys in one watch: the
	// race detector checks they are gathered safely.) It proves the feed
	// again every probeEvery.
	if _, err := server.PutKV(ctx, f.mount, "c", map[string]any{"v": "1"}); err != nil {
		t.Fatal(err)
	}
	// Vault writes the entry before it answers, but the feed reads it on
	// its own: wait until it has, or the new watch may see c's creation
	// as a change and rightly read c again.
	f.seen(t, "c")
	w.cancel()
	if err := <-w.done; err != nil {
		t.Fatalf("a cancelled watch returned %v", err)
	}
	oldEvery, oldWait := probeEvery, probeWait
	probeEvery, probeWait = time.Second, 5*time.Second
	t.Cleanup(func() { probeEvery, probeWait = oldEvery, oldWait })
	beforeB, beforeMissing := f.rec.count(meta+"b"), f.rec.count(meta+"missing")
	w = startWatch(t, f.client, append(keys, "c"))
	for range 4 {
		w.next(t)
	}
	if b, m := f.rec.count(meta+"b")-beforeB, f.rec.count(meta+"missing")-beforeMissing; b != 0 || m != 0 {
		t.Fatalf("a watch started again read b %d and missing %d times, want 0: the feed saw no write since they were read", b, m)
	}
	if got := f.rec.count(meta + "c"); got != 1 {
		t.Fatalf("a watch started again read the new key c %d times, want once", got)
	}

	// The device disabled: Vault keeps its connection open but sends
	// nothing; the next probe fails and the watch ends with an error.
	if err := server.Root.Sys().DisableAuditWithContext(ctx, f.device); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.done:
		if providers.ReasonOf(err) != providers.Unavailable {
			t.Fatalf("the watch ended with %v, want Unavailable", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the watch went on 30s after its feed's device was disabled")
	}
}

// TestAuditFeedProbe: a watch whose feed carries nothing (no device points
// at it, or it points at another replica) fails rather than reporting no
// change for ever.
func TestAuditFeedProbe(t *testing.T) {
	old := probeWait
	probeWait = time.Second
	t.Cleanup(func() { probeWait = old })
	f := newFeedFixture(t, false)
	w := startWatch(t, f.client, []string{"a"})
	select {
	case err := <-w.done:
		if err == nil || !strings.Contains(err.Error(), "no entry from the audit feed") {
			t.Fatalf("a watch with no feed ended with %v", err)
		}
	case kc := <-w.changes:
		t.Fatalf("a watch with no feed reported %+v", kc)
	case <-time.After(30 * time.Second):
		t.Fatal("a watch with no feed neither failed nor reported")
	}
	// A failed probe forgets every version: the feed did not deliver.
	f.client.feed.mu.Lock()
	defer f.client.feed.mu.Unlock()
	if n := len(f.client.feed.versions); n != 0 {
		t.Errorf("a feed with no connection remembered %d versions", n)
	}
}

// dialFeed serves a feed admitting sources and connects to it.
func dialFeed(t *testing.T, sources string) (*auditFeed, net.Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	src, err := ParseSources([]string{sources})
	if err != nil {
		t.Fatal(err)
	}
	feed := newAuditFeed("http://test", src, lis)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go feed.serve(ctx)
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return feed, conn
}

// TestAuditFeedLosses: anything that may lose an entry ends every watch of
// the feed: a line over the bound, a line that is not an entry, a closed
// connection. A connection from an address not named is closed unread.
func TestAuditFeedLosses(t *testing.T) {
	for name, send := range map[string]string{
		"over the bound": strings.Repeat("x", maxAuditLine+10) + "\n",
		"not an entry":   "hello\n",
		"closed":         "",
	} {
		t.Run(name, func(t *testing.T) {
			feed, conn := dialFeed(t, "127.0.0.0/8")
			sub, _, _ := feed.subscribe("", "secret", map[string]bool{"a": true})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				if send == "" {
					_ = conn.Close()
					return
				}
				_, _ = conn.Write([]byte(send))
			}()
			select {
			case <-sub.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the watch went on")
			}
			wg.Wait()
		})
	}
	t.Run("source not named", func(t *testing.T) {
		_, conn := dialFeed(t, "10.0.0.0/8")
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("a connection from an address not named was not closed: %v", err)
		}
	})
}

// TestParseAuditEntry: what a feed makes of entries as Vault writes them.
func TestParseAuditEntry(t *testing.T) {
	for _, c := range []struct {
		name, line   string
		key          feedKey
		write, probe bool
	}{
		{"kv v2 write", `{"type":"response","request":{"operation":"create","mount_point":"secret/","path":"secret/data/app/db","namespace":{"id":"root"}}}`, feedKey{"", "secret", "app/db"}, true, false},
		{"patch", `{"type":"response","request":{"operation":"patch","mount_point":"kv/","path":"kv/data/x"}}`, feedKey{"", "kv", "x"}, true, false},
		{"destroy", `{"type":"response","request":{"operation":"update","mount_point":"kv/","path":"kv/destroy/x"}}`, feedKey{"", "kv", "x"}, true, false},
		{"metadata delete", `{"type":"response","request":{"operation":"delete","mount_point":"kv/","path":"kv/metadata/x"}}`, feedKey{"", "kv", "x"}, true, false},
		{"namespace", `{"type":"response","request":{"operation":"update","mount_point":"secret/","path":"secret/data/x","namespace":{"id":"a1","path":"team-a/"}}}`, feedKey{"team-a", "secret", "x"}, true, false},
		{"prefix", `veil{"type":"response","request":{"operation":"update","mount_point":"secret/","path":"secret/data/x"}}`, feedKey{"", "secret", "x"}, true, false},
		{"metadata read", `{"type":"response","request":{"operation":"read","mount_point":"secret/","path":"secret/metadata/x"}}`, feedKey{"", "secret", "x"}, false, true},
		{"data read", `{"type":"response","request":{"operation":"read","mount_point":"secret/","path":"secret/data/x"}}`, feedKey{}, false, false},
		{"request", `{"type":"request","request":{"operation":"update","mount_point":"secret/","path":"secret/data/x"}}`, feedKey{}, false, false},
		{"failed", `{"type":"response","error":"permission denied","request":{"operation":"update","mount_point":"secret/","path":"secret/data/x"}}`, feedKey{}, false, false},
		{"other mount", `{"type":"response","request":{"operation":"update","mount_point":"sys/","path":"sys/policy/x"}}`, feedKey{}, false, false},
	} {
		k, write, probe, ok := parseEntry([]byte(c.line))
		if !ok || k != c.key || write != c.write || probe != c.probe {
			t.Errorf("%s: got %+v write %v probe %v ok %v, want %+v write %v probe %v", c.name, k, write, probe, ok, c.key, c.write, c.probe)
		}
	}
	if _, _, _, ok := parseEntry([]byte("not json")); ok {
		t.Error("a line that is not JSON parsed")
	}
}

// TestFeedFlags: --vault-audit-feed and --vault-audit-sources say what is
// wrong with them before anything listens.
func TestFeedFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // "" for valid
	}{
		{nil, ""},
		{[]string{"--vault-audit-feed=https://vault.example:8200@:8201", "--vault-audit-sources=10.0.0.0/8,192.0.2.1"}, ""},
		{[]string{"--vault-audit-feed=https://vault.example:8200@:8201"}, "needs --vault-audit-sources"},
		{[]string{"--vault-audit-sources=10.0.0.0/8"}, "without --vault-audit-feed"},
		{[]string{"--vault-audit-feed=https://vault.example:8200", "--vault-audit-sources=10.0.0.0/8"}, "not SERVER_URL@LISTEN_ADDRESS"},
		{[]string{"--vault-audit-feed=vault.example:8200@:8201", "--vault-audit-sources=10.0.0.0/8"}, "https:// URL"},
		{[]string{"--vault-audit-feed=https://vault.example:8200@8201", "--vault-audit-sources=10.0.0.0/8"}, "not host:port"},
		{[]string{"--vault-audit-feed=https://vault.example:8200@:8201", "--vault-audit-sources=vault.example"}, "neither an address nor a CIDR"},
		{[]string{"--vault-audit-feed=https://vault.example:8200@:8201", "--vault-audit-feed=https://vault.example:8200/@:8202", "--vault-audit-sources=10.0.0.0/8"}, "twice"},
	} {
		o := &feedOptions{}
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		err := o.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: got %v, want an error saying %q", c.args, err, c.want)
		}
	}
}

// TestFeedRemembers: a version read is taken as current later only if a
// connection was open from before the read until after it, and no entry
// touched the key meanwhile.
func TestFeedRemembers(t *testing.T) {
	f := newAuditFeed("http://test", nil, nil)
	k := feedKey{mount: "secret", key: "a"}
	meta := &kvMetadata{version: 1, current: 1}
	remembered := func() bool { _, ok := f.cached(k, f.epoch); return ok }

	f.remember(k, meta, f.epoch, f.touches(k))
	if remembered() {
		t.Fatal("remembered a version read with no connection open")
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	f.mu.Lock()
	f.open[c1] = struct{}{}
	f.mu.Unlock()
	epoch, before := f.epoch, f.touches(k)
	f.entry([]byte(`{"type":"response","request":{"operation":"update","mount_point":"secret/","path":"secret/data/a"}}`))
	f.remember(k, meta, epoch, before)
	if remembered() {
		t.Fatal("remembered a version read across a write of its key")
	}
	epoch, before = f.epoch, f.touches(k)
	f.mu.Lock()
	f.forgetLocked() // what accepting or losing a connection does
	f.mu.Unlock()
	f.remember(k, meta, epoch, before)
	if remembered() {
		t.Fatal("remembered a version read across a connection accepted or lost")
	}
	f.remember(k, meta, f.epoch, f.touches(k))
	if !remembered() {
		t.Fatal("did not remember a version read with a connection open all along")
	}
}

// TestAuditFeedAdmitsItsCalls: every version a watch reads is a call
// within the budget its context carries (the store's, from change
// detection); a refused call makes no request and ends the watch.
func TestAuditFeedAdmitsItsCalls(t *testing.T) {
	ctx := ctxFor(t)
	f := newFeedFixture(t, true)
	for _, k := range []string{"a", "b"} {
		if _, err := server.PutKV(ctx, f.mount, k, map[string]any{"v": "1"}); err != nil {
			t.Fatal(err)
		}
	}
	meta := "/v1/" + f.mount + "/metadata/"
	var mu sync.Mutex
	admitted := 0
	counting := providers.WithAdmit(context.Background(), func() (func(), error) {
		mu.Lock()
		defer mu.Unlock()
		admitted++
		return func() {}, nil
	})
	w := startWatchIn(counting, t, f.client, []string{"a", "b"})
	w.next(t)
	w.next(t)
	w.cancel()
	<-w.done
	// The audit entries of the two writes above may reach the watch after
	// it started, and it reads that key again: the cancel can then come
	// between that read's admission and its request. So one admitted call
	// may have made no request; a request never admitted fails the test.
	mu.Lock()
	if reads := f.rec.total(meta); reads == 0 || reads > admitted || admitted > reads+1 {
		t.Errorf("%d calls admitted for %d metadata reads", admitted, reads)
	}
	mu.Unlock()

	// Keys the first watch never read: a request it cancelled may still
	// reach the proxy after it ended.
	unread := func() int { return f.rec.total(meta+"c") + f.rec.total(meta+"d") }
	before := unread()
	refusing := providers.WithAdmit(context.Background(), func() (func(), error) {
		return nil, providers.Errorf(providers.Throttled, "over budget")
	})
	w = startWatchIn(refusing, t, f.client, []string{"c", "d"})
	select {
	case err := <-w.done:
		if providers.ReasonOf(err) != providers.Throttled {
			t.Fatalf("a watch over its budget ended with %v, want Throttled", err)
		}
	case kc := <-w.changes:
		t.Fatalf("a watch over its budget reported %+v", kc)
	case <-time.After(30 * time.Second):
		t.Fatal("a watch over its budget went on")
	}
	if got := unread() - before; got != 0 {
		t.Errorf("a watch over its budget made %d metadata reads", got)
	}
}

// stopAuditFeed forgets server's feed, so the next test starts its own.
func stopAuditFeed(server string) {
	feedsMu.Lock()
	f := feeds[server]
	delete(feeds, server)
	feedsMu.Unlock()
	if f != nil {
		_ = f.lis.Close()
		f.fail(errors.New("the audit feed stopped"))
	}
}
