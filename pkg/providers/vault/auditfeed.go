package vault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/veil-dev/veil/pkg/metrics"
)

// An audit feed is Vault's socket audit device pointed at Veil: Vault
// writes one JSON entry per request and response to a TCP connection Veil
// accepts, and Veil learns of every write to a KV v2 key as it happens,
// without Vault Enterprise's event notifications and without asking Vault
// about keys that did not change.
//
// Vault carries on only while at least one of its audit devices succeeds,
// so a feed must never be Vault's only audit device: Vault would refuse
// every request while Veil is down. Veil's side is built so that it never
// slows Vault: it reads each connection at once, whatever it does with the
// entries, and keeps none.
//
// What a feed is trusted with: the path and operation of every request to
// its server. It is not trusted to be complete. A feed proves it reaches
// this process for a store by carrying the entry of a read this process
// made through that store, after the watch began (probe); anything that
// may have lost an entry (a connection closed, a line over the bound, a
// line that is not an entry) ends every watch of the feed, and change
// detection looks at the keys' versions again before following a new one.

// Bounds of a feed.
const (
	// maxAuditLine bounds one entry. Vault HMACs the values in an entry,
	// so entries stay small; a longer one is skipped and counts as lost.
	maxAuditLine = 1 << 20
	// maxAuditConns bounds the connections one feed accepts at once (Vault
	// keeps one per audit device).
	maxAuditConns = 4
	// subBuffer bounds the changes a watch has not handled yet; a watch
	// that falls further behind ends (and detection looks again).
	subBuffer = 1024
	// maxCachedVersions bounds the versions a feed remembers between
	// watches; past it, it forgets them all.
	maxCachedVersions = 100000
)

// probeWait bounds how long a new watch waits for the entry of its own
// read (a variable for tests).
var probeWait = 10 * time.Second

// probeEvery is how often a watch proves again that the feed reaches this
// process (one read a store, whatever its keys): Vault keeps a connection
// open after its device is disabled, and sends nothing on it.
var probeEvery = 30 * time.Second

// AuditFeedConfig names one feed: the Vault server whose socket audit
// device connects to Listen, and the addresses it may connect from.
type AuditFeedConfig struct {
	// Server is scheme://host[:port], as stores name it.
	Server string
	// Listen is the TCP address to listen on.
	Listen string
	// Sources are the networks a connection may come from.
	Sources []*net.IPNet
	// Listener, when set, is served instead of listening on Listen.
	Listener net.Listener
}

// ParseAuditFeed reads one --vault-audit-feed: SERVER_URL@LISTEN_ADDRESS.
func ParseAuditFeed(s string) (AuditFeedConfig, error) {
	i := strings.LastIndex(s, "@")
	if i < 0 {
		return AuditFeedConfig{}, fmt.Errorf("%q is not SERVER_URL@LISTEN_ADDRESS, such as https://vault.vault.svc:8200@:8201", s)
	}
	server, err := feedServer(s[:i])
	if err != nil {
		return AuditFeedConfig{}, err
	}
	if _, _, err := net.SplitHostPort(s[i+1:]); err != nil {
		return AuditFeedConfig{}, fmt.Errorf("the listen address of audit feed %s is not host:port: %v", server, err)
	}
	return AuditFeedConfig{Server: server, Listen: s[i+1:]}, nil
}

// feedServer is a server URL as clients compare it: scheme://host[:port].
func feedServer(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return "", errors.New("an audit feed's server is an https:// URL with a host and no user info, as stores name it in spec.provider.vault.server")
	}
	return u.Scheme + "://" + u.Host, nil
}

// ParseSources reads --vault-audit-sources: CIDRs, or addresses.
func ParseSources(ss []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, s := range ss {
		if !strings.Contains(s, "/") {
			ip := net.ParseIP(s)
			if ip == nil {
				return nil, fmt.Errorf("audit feed source %q is neither an address nor a CIDR", s)
			}
			bits := 8 * len(ip.To16())
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("audit feed source %q is not a CIDR: %v", s, err)
		}
		out = append(out, n)
	}
	return out, nil
}

var (
	feedsMu sync.Mutex
	feeds   = map[string]*auditFeed{}
	// following: this process elects a change detection leader and does
	// not lead; feeds turn connections away.
	following bool
)

// setFeedsLeading turns feeds' connections away (closing those open), or
// takes them again.
func setFeedsLeading(leading bool) {
	feedsMu.Lock()
	following = !leading
	all := make([]*auditFeed, 0, len(feeds))
	for _, f := range feeds {
		all = append(all, f)
	}
	feedsMu.Unlock()
	if !leading {
		for _, f := range all {
			f.closeConns()
		}
	}
}

func isFollowing() bool {
	feedsMu.Lock()
	defer feedsMu.Unlock()
	return following
}

// feedFor returns the feed of server (scheme://host), if one runs.
func feedFor(server string) *auditFeed {
	feedsMu.Lock()
	defer feedsMu.Unlock()
	return feeds[server]
}

// StartAuditFeeds listens for each feed until ctx ends. Clients of stores
// on a server with a feed follow changes by it (providers.ChangeWatcher).
func StartAuditFeeds(ctx context.Context, cfgs []AuditFeedConfig) error {
	feedsMu.Lock()
	defer feedsMu.Unlock()
	var started []*auditFeed
	for _, cfg := range cfgs {
		if feeds[cfg.Server] != nil {
			return fmt.Errorf("audit feed for %s named twice", cfg.Server)
		}
		if len(cfg.Sources) == 0 {
			return fmt.Errorf("audit feed for %s: name the addresses Vault connects from (--vault-audit-sources)", cfg.Server)
		}
		lis := cfg.Listener
		if lis == nil {
			var err error
			if lis, err = net.Listen("tcp", cfg.Listen); err != nil {
				for _, f := range started {
					_ = f.lis.Close()
				}
				return fmt.Errorf("audit feed for %s: %v", cfg.Server, err)
			}
		}
		f := newAuditFeed(cfg.Server, cfg.Sources, lis)
		started = append(started, f)
	}
	for _, f := range started {
		feeds[f.server] = f
		go f.serve(ctx)
		klog.InfoS("Following Vault's socket audit device", "server", f.server, "address", f.lis.Addr().String())
	}
	return nil
}

// feedKey names a KV v2 key on a feed's server.
type feedKey struct{ namespace, mount, key string }

type auditFeed struct {
	server  string
	sources []*net.IPNet
	lis     net.Listener

	mu   sync.Mutex
	open map[net.Conn]struct{}
	subs map[*feedSub]struct{}
	// versions are the versions read while the feed ran without a loss
	// and no entry touched the key since: still current.
	versions map[feedKey]cachedVersion
	// touched counts the entries that touched a key, so a version read
	// across an entry is not remembered as current.
	touched map[feedKey]uint64
	epoch   uint64
}

type cachedVersion struct {
	meta  *kvMetadata
	epoch uint64
}

func newAuditFeed(server string, sources []*net.IPNet, lis net.Listener) *auditFeed {
	return &auditFeed{server: server, sources: sources, lis: lis, subs: map[*feedSub]struct{}{}, open: map[net.Conn]struct{}{},
		versions: map[feedKey]cachedVersion{}, touched: map[feedKey]uint64{}}
}

func (f *auditFeed) serve(ctx context.Context) {
	context.AfterFunc(ctx, func() { _ = f.lis.Close() })
	for {
		conn, err := f.lis.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				klog.ErrorS(err, "Audit feed stopped accepting", "server", f.server)
			}
			f.fail(errors.New("the audit feed stopped listening"))
			return
		}
		if !f.allowed(conn.RemoteAddr()) {
			metrics.VaultAuditConnections.WithLabelValues("refused").Inc()
			klog.InfoS("Refused an audit feed connection from an address --vault-audit-sources does not name", "server", f.server, "from", conn.RemoteAddr().String())
			_ = conn.Close()
			continue
		}
		if isFollowing() {
			// Only the leader's watches use a feed: Vault's next write
			// reconnects, through the leader's Service, to the leader.
			metrics.VaultAuditConnections.WithLabelValues("not_leader").Inc()
			_ = conn.Close()
			continue
		}
		f.mu.Lock()
		full := len(f.open) >= maxAuditConns
		if !full {
			f.open[conn] = struct{}{}
			// Vault connects after a gap (its first write, or one
			// after a failure): what was read before is not known to
			// be current.
			f.forgetLocked()
		}
		f.mu.Unlock()
		if full {
			metrics.VaultAuditConnections.WithLabelValues("refused").Inc()
			_ = conn.Close()
			continue
		}
		metrics.VaultAuditConnections.WithLabelValues("accepted").Inc()
		go f.read(ctx, conn)
	}
}

// closeConns closes the open connections (their readers end every watch).
func (f *auditFeed) closeConns() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.open {
		_ = c.Close()
	}
}

func (f *auditFeed) allowed(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	for _, n := range f.sources {
		if n.Contains(ta.IP) {
			return true
		}
	}
	return false
}

// read handles one connection's entries until it closes. Entries from
// before it was accepted are unknown, and so are those after it closed:
// both end the watches (a watch that began before the connection did
// proves itself by its probe).
func (f *auditFeed) read(ctx context.Context, conn net.Conn) {
	context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer func() {
		_ = conn.Close()
		f.mu.Lock()
		delete(f.open, conn)
		f.mu.Unlock()
		f.fail(errors.New("Vault's audit connection closed; entries around it may be lost"))
	}()
	r := bufio.NewReaderSize(conn, 64<<10)
	var long bool
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			if !long && len(line)+len(chunk) > maxAuditLine {
				long, line = true, nil
			}
			if !long {
				line = append(line, chunk...)
			}
			continue
		case err != nil:
			return
		}
		if long {
			long = false
			metrics.VaultAuditEntries.WithLabelValues("lost").Inc()
			f.fail(fmt.Errorf("an audit entry over %d bytes was skipped", maxAuditLine))
			continue
		}
		if len(line) > 0 {
			line = append(line, chunk...)
			chunk, line = line, nil
		}
		f.entry(chunk)
	}
}

// auditEntry is what a feed reads of an entry.
type auditEntry struct {
	Type    string `json:"type"`
	Error   string `json:"error"`
	Request struct {
		Operation  string `json:"operation"`
		Path       string `json:"path"`
		MountPoint string `json:"mount_point"`
		Namespace  struct {
			Path string `json:"path"`
		} `json:"namespace"`
	} `json:"request"`
}

// kvWrites are the operations that change a KV v2 key, by the part of
// the path after the mount.
var kvWrites = map[string]map[string]bool{
	"data/":     {"create": true, "update": true, "patch": true, "delete": true},
	"metadata/": {"create": true, "update": true, "patch": true, "delete": true},
	"delete/":   {"update": true, "create": true},
	"undelete/": {"update": true, "create": true},
	"destroy/":  {"update": true, "create": true},
}

// parseEntry reads one line. ok is false for a line that is not an entry
// (which counts as lost). key is set for a response to a KV v2 write, or
// to a read of a key's metadata (a probe).
func parseEntry(line []byte) (k feedKey, write, probe, ok bool) {
	line = bytes.TrimSpace(line)
	if i := bytes.IndexByte(line, '{'); i > 0 { // the device's prefix
		line = line[i:]
	}
	var e auditEntry
	if err := json.Unmarshal(line, &e); err != nil {
		return feedKey{}, false, false, false
	}
	if e.Type != "response" || e.Error != "" || e.Request.MountPoint == "" {
		return feedKey{}, false, false, true
	}
	rest, found := strings.CutPrefix(e.Request.Path, e.Request.MountPoint)
	if !found {
		return feedKey{}, false, false, true
	}
	for prefix, ops := range kvWrites {
		key, found := strings.CutPrefix(rest, prefix)
		if !found || key == "" {
			continue
		}
		k = feedKey{namespace: strings.Trim(e.Request.Namespace.Path, "/"), mount: strings.Trim(e.Request.MountPoint, "/"), key: key}
		if ops[e.Request.Operation] {
			return k, true, false, true
		}
		if prefix == "metadata/" && e.Request.Operation == "read" {
			return k, false, true, true
		}
	}
	return feedKey{}, false, false, true
}

func (f *auditFeed) entry(line []byte) {
	k, write, probe, ok := parseEntry(line)
	switch {
	case !ok:
		metrics.VaultAuditEntries.WithLabelValues("lost").Inc()
		f.fail(errors.New("a line of the audit feed was not an audit entry"))
		return
	case write:
		metrics.VaultAuditEntries.WithLabelValues("write").Inc()
	case probe:
		metrics.VaultAuditEntries.WithLabelValues("read").Inc()
	default:
		metrics.VaultAuditEntries.WithLabelValues("other").Inc()
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if write {
		delete(f.versions, k)
		f.touched[k]++
		if len(f.touched) > maxCachedVersions {
			f.forgetLocked()
		}
	}
	for s := range f.subs {
		s.see(k, write)
	}
}

// fail ends every watch of the feed and forgets every version: something
// may have been missed.
func (f *auditFeed) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgetLocked()
	for s := range f.subs {
		s.end(err)
	}
	f.subs = map[*feedSub]struct{}{}
}

func (f *auditFeed) forgetLocked() {
	f.epoch++
	f.versions = map[feedKey]cachedVersion{}
	f.touched = map[feedKey]uint64{}
}

// feedSub is one watch's view of a feed: the keys of one mount it
// follows, by their cleaned name.
type feedSub struct {
	namespace, mount string
	keys             map[string]bool
	changed          chan string
	// probe is closed by the next read entry of the mount; nil when no
	// probe waits. Guarded by the feed's lock.
	probe   chan struct{}
	done    chan struct{}
	err     error
	endOnce sync.Once
}

// see passes a key's entry on; the feed's lock is held.
func (s *feedSub) see(k feedKey, write bool) {
	if k.namespace != s.namespace || k.mount != s.mount {
		return
	}
	if !write {
		if s.probe != nil {
			close(s.probe)
			s.probe = nil
		}
		return
	}
	if !s.keys[k.key] {
		return
	}
	select {
	case s.changed <- k.key:
	default:
		s.end(fmt.Errorf("more than %d changes waited to be handled", subBuffer))
	}
}

func (s *feedSub) end(err error) {
	s.endOnce.Do(func() {
		s.err = err
		close(s.done)
	})
}

// subscribe starts a watch of keys (cleaned) in one mount; it returns
// the feed's epoch then, for versions read under it, and the probe armed
// for the first read after it.
func (f *auditFeed) subscribe(namespace, mount string, keys map[string]bool) (*feedSub, uint64, <-chan struct{}) {
	s := &feedSub{namespace: namespace, mount: mount, keys: keys, changed: make(chan string, subBuffer),
		probe: make(chan struct{}), done: make(chan struct{})}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs[s] = struct{}{}
	return s, f.epoch, s.probe
}

// arm returns a channel the next read entry of s's mount closes.
func (f *auditFeed) arm(s *feedSub) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	s.probe = make(chan struct{})
	return s.probe
}

func (f *auditFeed) unsubscribe(s *feedSub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.subs, s)
}

// cached returns a version read under epoch that no entry touched since.
func (f *auditFeed) cached(k feedKey, epoch uint64) (*kvMetadata, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.versions[k]
	if !ok || v.epoch != epoch || f.epoch != epoch {
		return nil, false
	}
	return v.meta, true
}

// touches returns how many entries touched k, to pass to remember.
func (f *auditFeed) touches(k feedKey) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.touched[k]
}

// remember keeps a version read under epoch, if no entry touched k since
// the read began (touches was then before), and a connection has been
// open all along: no connection was accepted or closed since epoch began
// (either changes the epoch), and one is open now. A connection Vault no
// longer writes to is found by the next probe, which forgets everything.
func (f *auditFeed) remember(k feedKey, meta *kvMetadata, epoch, before uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.epoch != epoch || f.touched[k] != before || len(f.open) == 0 {
		return
	}
	if len(f.versions) >= maxCachedVersions {
		f.forgetLocked()
		return
	}
	f.versions[k] = cachedVersion{meta: meta, epoch: epoch}
}
