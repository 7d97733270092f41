package remote

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"k8s.io/klog/v2"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// MaxMessageSize bounds every message either side sends or accepts. A
// Secret, and so anything Veil can serve or push, is at most 1 MiB; the
// rest is room for keys and framing.
const MaxMessageSize = 2 << 20

// maxBatch bounds the refs of one GetBatch.
const maxBatch = providers.MaxFindResults

// Server serves one provider kind over the protocol, for the stores of its
// configuration only.
type Server struct {
	providerv1.UnimplementedProviderServer

	provider providers.Provider
	config   *configFile
	env      providers.Env
	// closeDelay lets calls holding a replaced client finish.
	closeDelay time.Duration

	// recheck is how often a change stream looks whether its store's
	// configuration or credential files changed: a look at local files,
	// never a backend call.
	recheck time.Duration

	mu     sync.Mutex
	stores map[storeKey]*served
	// streams counts the change streams open, by store.
	streams map[storeKey]int
	// swept is the configuration the clients of stores no longer in it
	// were last closed against.
	swept  *Config
	builds singleflight.Group
}

// served is one configured store, with the client built for it.
type served struct {
	key         storeKey
	fingerprint [sha256.Size]byte
	prefixes    []string
	creds       *fileCredentials
	client      providers.Client
	caps        *providerv1.Capabilities
	limits      Limits
	limiter     *rate.Limiter
	slots       chan struct{}
}

// NewServer serves provider for the stores of the configuration file at
// configPath, which it reads again when it changes. env is how the
// provider reaches its backends.
func NewServer(provider providers.Provider, configPath string, env providers.Env) (*Server, error) {
	cfg, err := loadConfigFile(configPath, provider.Name())
	if err != nil {
		return nil, err
	}
	return &Server{provider: provider, config: cfg, env: env, closeDelay: time.Minute, recheck: time.Second,
		stores: map[storeKey]*served{}, streams: map[storeKey]int{}}, nil
}

// ServerOptions are the gRPC options every provider server runs with.
func ServerOptions(creds credentials.TransportCredentials) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.MaxSendMsgSize(MaxMessageSize),
		// Connections end after a while (calls in flight finish), so that
		// a rotated or revoked client certificate stops being trusted on
		// connections made before.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: 30 * time.Minute, MaxConnectionAgeGrace: time.Minute}),
		// Clients ping idle connections (clientKeepalive) to notice a
		// provider gone without a word.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: clientKeepalive.Time / 2, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(countRequests, logErrors),
		grpc.ChainStreamInterceptor(countStreams),
	}
}

// countRequests and countStreams count each request by method as it
// arrives (veil_provider_requests_total).
func countRequests(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	metrics.ProviderRequests.WithLabelValues(path.Base(info.FullMethod)).Inc()
	return handler(ctx, req)
}

func countStreams(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	metrics.ProviderRequests.WithLabelValues(path.Base(info.FullMethod)).Inc()
	return handler(srv, ss)
}

// drainTimeout bounds how long Serve waits for calls in flight once its
// context ends.
const drainTimeout = 30 * time.Second

// Serve serves s on lis with mutual TLS (ServerTLS) until ctx ends, then
// lets calls in flight finish, for drainTimeout at most.
//
// Change streams last until their client ends them, so they are ended
// when the stop begins (with Unavailable: the client reconnects, to
// another replica or to this one restarted) rather than waited for.
func Serve(ctx context.Context, lis net.Listener, s *Server, creds credentials.TransportCredentials) error {
	stopping, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	g := grpc.NewServer(append(ServerOptions(creds), grpc.ChainStreamInterceptor(endStreamsWith(stopping)))...)
	providerv1.RegisterProviderServer(g, s)
	drained := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(drained)
		endStreams()
		t := time.AfterFunc(drainTimeout, g.Stop)
		g.GracefulStop()
		t.Stop()
	})
	err := g.Serve(lis)
	if stop() {
		// Serve failed on its own: nothing to drain.
		g.Stop()
		return err
	}
	// Serve returns when the stop begins; the calls in flight end after.
	<-drained
	return nil
}

// endStreamsWith ends each stream's context when stopping ends.
func endStreamsWith(stopping context.Context) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		defer context.AfterFunc(stopping, cancel)()
		return handler(srv, &streamWithContext{ServerStream: ss, ctx: ctx})
	}
}

type streamWithContext struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *streamWithContext) Context() context.Context { return s.ctx }

// logErrors logs failed calls by method, store and reason; provider
// errors carry no value, and requests are never logged.
func logErrors(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		store := ""
		if r, ok := req.(interface{ GetStore() *providerv1.StoreRef }); ok {
			store = keyOf(r.GetStore()).String()
		}
		klog.V(2).InfoS("Provider call failed", "method", info.FullMethod, "store", store, "err", err)
	}
	return resp, err
}

func keyOf(r *providerv1.StoreRef) storeKey {
	return storeKey{kind: r.GetKind(), namespace: r.GetNamespace(), name: r.GetName()}
}

// Close closes every client built.
func (s *Server) Close(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, st := range s.stores {
		_ = st.client.Close(ctx)
		delete(s.stores, k)
	}
}

// store returns the configured store ref names, with its client built
// from the configuration as it is now.
func (s *Server) store(ctx context.Context, ref *providerv1.StoreRef) (*served, error) {
	key := keyOf(ref)
	cfg := s.config.current()
	i := slices.IndexFunc(cfg.Stores, func(c StoreConfig) bool { return c.ref() == key })
	if i < 0 {
		return nil, providers.Errorf(providers.Forbidden, "this veil-provider does not serve %s: it serves only the stores of its own configuration; add the store there", key)
	}
	sc := cfg.Stores[i]
	s.mu.Lock()
	s.sweep(cfg)
	cur := s.stores[key]
	s.mu.Unlock()
	if cur != nil && cur.fingerprint == sc.fp && !cur.creds.changed() {
		return cur, nil
	}
	// One build per store at a time (a Vault login, an AWS credential
	// exchange), shared by the calls waiting for it.
	v, err, _ := s.builds.Do(key.String(), func() (any, error) { return s.build(ctx, key, sc) })
	if err != nil {
		return nil, err
	}
	return v.(*served), nil
}

// sweep retires the clients of stores cfg no longer has. s.mu is held.
func (s *Server) sweep(cfg *Config) {
	if cfg == s.swept {
		return
	}
	s.swept = cfg
	for key, st := range s.stores {
		if !slices.ContainsFunc(cfg.Stores, func(c StoreConfig) bool { return c.ref() == key }) {
			delete(s.stores, key)
			s.retire(st)
		}
	}
}

// retire closes a client replaced or removed, once calls holding it are
// likely done.
func (s *Server) retire(st *served) {
	time.AfterFunc(s.closeDelay, func() { _ = st.client.Close(context.Background()) })
}

func (s *Server) build(ctx context.Context, key storeKey, sc StoreConfig) (*served, error) {
	creds := newFileCredentials(&sc)
	store := &providers.Store{Kind: sc.Kind, Namespace: sc.Namespace, Name: sc.Name, Generation: 1,
		Spec: &configv1alpha1.SecretStoreSpec{Provider: sc.Provider}}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	client, err := s.provider.NewClient(bctx, store, creds, s.env)
	if err != nil {
		return nil, err
	}
	limits := sc.Limits.withDefaults()
	next := &served{key: key, fingerprint: sc.fp, prefixes: sc.KeyPrefixes, creds: creds, client: client,
		caps: capabilitiesOf(s.provider, client), limits: limits}
	s.mu.Lock()
	old := s.stores[key]
	if old != nil && old.limits == limits {
		// A new client (rotated credentials, another backend setting)
		// keeps the store's budget: calls in flight on the old one still
		// count, and the rate does not start again.
		next.limiter, next.slots = old.limiter, old.slots
	} else {
		next.limiter, next.slots = rate.NewLimiter(rate.Limit(limits.QPS), limits.Burst), make(chan struct{}, limits.Concurrency)
	}
	s.stores[key] = next
	s.mu.Unlock()
	if old != nil {
		s.retire(old)
	}
	return next, nil
}

func capabilitiesOf(p providers.Provider, c providers.Client) *providerv1.Capabilities {
	caps := &providerv1.Capabilities{}
	_, caps.BatchGet = c.(providers.BatchGetter)
	_, caps.ChangeStream = c.(providers.ChangeWatcher)
	if vl, ok := c.(providers.VersionLister); ok {
		caps.Versions, caps.VersionsPerCall = true, uint32(vl.VersionsPerCall())
	}
	if ro, ok := p.(interface{ ReadOnly() bool }); ok {
		caps.ReadOnly = ro.ReadOnly()
	}
	return caps
}

// admit takes a call slot of st within its rate; release gives it back.
func (st *served) admit() (release func(), err error) {
	r := st.limiter.Reserve()
	if d := r.Delay(); d > 0 {
		r.Cancel()
		metrics.ProviderThrottled.WithLabelValues(st.key.kind, "store", "rate").Inc()
		return nil, &providers.Error{Reason: providers.Throttled, RetryAfter: d,
			Message: fmt.Sprintf("%s is over the calls per second this veil-provider admits for it; retry in %s", st.key, d.Round(time.Millisecond))}
	}
	select {
	case st.slots <- struct{}{}:
		return func() { <-st.slots }, nil
	default:
		metrics.ProviderThrottled.WithLabelValues(st.key.kind, "store", "in_flight").Inc()
		return nil, &providers.Error{Reason: providers.Throttled, RetryAfter: 100 * time.Millisecond,
			Message: fmt.Sprintf("%s has %d calls in flight, all this veil-provider admits for it", st.key, cap(st.slots))}
	}
}

// call runs f with the client of the store ref names, admitted.
func (s *Server) call(ctx context.Context, ref *providerv1.StoreRef, f func(st *served) error) error {
	st, err := s.store(ctx, ref)
	if err != nil {
		return toStatus(err)
	}
	release, err := st.admit()
	if err != nil {
		return toStatus(err)
	}
	defer release()
	return toStatus(f(st))
}

// underPrefix says whether key is one the store serves.
func (st *served) underPrefix(key string) bool {
	for _, p := range st.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// checkKey refuses a key outside the store's prefixes, or one that could
// step out of them once the backend cleans its path.
func (st *served) checkKey(key string) error {
	if !st.underPrefix(key) {
		return providers.Errorf(providers.Forbidden, "remote key %q is outside the prefixes this veil-provider serves for %s (%q)", key, st.key, st.prefixes)
	}
	return st.checkSegments("remote key", key)
}

// checkPath is checkKey for a find's path.
func (st *served) checkPath(path string) error {
	if !st.underPrefix(path) {
		return providers.Errorf(providers.Forbidden, "find.path %q is outside the prefixes this veil-provider serves for %s (%q); set find.path under one of them", path, st.key, st.prefixes)
	}
	return st.checkSegments("find.path", path)
}

func (st *served) checkSegments(what, key string) error {
	if slices.Contains(st.prefixes, "") {
		return nil
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "." || seg == ".." {
			return providers.Errorf(providers.Forbidden, "%s %q has a %q segment, which could leave the prefixes this veil-provider serves for %s", what, key, seg, st.key)
		}
	}
	return nil
}

// fits refuses a response larger than a message may be.
func fits(m proto.Message, what string) error {
	if n := proto.Size(m); n > MaxMessageSize {
		return providers.Errorf(providers.Invalid, "%s come to %d bytes, more than the %d one response may carry; ask for fewer", what, n, MaxMessageSize)
	}
	return nil
}

// Handshake agrees on the newest version both sides speak.
func (s *Server) Handshake(ctx context.Context, req *providerv1.HandshakeRequest) (*providerv1.HandshakeResponse, error) {
	var chosen uint32
	for _, v := range supportedVersions {
		if slices.Contains(req.GetProtocolVersions(), v) {
			chosen = v
			break
		}
	}
	if chosen == 0 {
		return nil, toStatus(providers.Errorf(providers.Invalid, "veil-apiserver speaks provider protocol versions %v and this veil-provider speaks %v: upgrade the older of the two", req.GetProtocolVersions(), supportedVersions))
	}
	var caps *providerv1.Capabilities
	err := s.call(ctx, req.GetStore(), func(st *served) error { caps = st.caps; return nil })
	if err != nil {
		return nil, err
	}
	return &providerv1.HandshakeResponse{ProtocolVersion: chosen, Provider: s.provider.Name(), Capabilities: caps}, nil
}

// Validate builds the store's client: a store that cannot be served fails
// here, with the reason.
func (s *Server) Validate(ctx context.Context, req *providerv1.ValidateRequest) (*providerv1.ValidateResponse, error) {
	if err := s.call(ctx, req.GetStore(), func(*served) error { return nil }); err != nil {
		return nil, err
	}
	return &providerv1.ValidateResponse{}, nil
}

func (s *Server) Get(ctx context.Context, req *providerv1.GetRequest) (*providerv1.GetResponse, error) {
	var resp *providerv1.GetResponse
	err := s.call(ctx, req.GetStore(), func(st *served) error {
		if err := st.checkKey(req.GetRef().GetKey()); err != nil {
			return err
		}
		v, err := st.client.Get(ctx, providers.Ref{Key: req.GetRef().GetKey(), Version: req.GetRef().GetVersion()})
		if err != nil {
			return err
		}
		resp = &providerv1.GetResponse{Value: &providerv1.Value{Data: v.Data, Version: v.Version}}
		return fits(resp, fmt.Sprintf("the value of %q", req.GetRef().GetKey()))
	})
	return resp, err
}

func (s *Server) GetBatch(ctx context.Context, req *providerv1.GetBatchRequest) (*providerv1.GetBatchResponse, error) {
	var resp *providerv1.GetBatchResponse
	err := s.call(ctx, req.GetStore(), func(st *served) error {
		bg, ok := st.client.(providers.BatchGetter)
		if !ok {
			return providers.Errorf(providers.Invalid, "%s reads one value a call: use Get", st.key)
		}
		if len(req.GetRefs()) > maxBatch {
			return providers.Errorf(providers.Invalid, "a batch of %d keys is more than the %d one call may ask for", len(req.GetRefs()), maxBatch)
		}
		refs := make([]providers.Ref, 0, len(req.GetRefs()))
		for _, r := range req.GetRefs() {
			if err := st.checkKey(r.GetKey()); err != nil {
				return err
			}
			refs = append(refs, providers.Ref{Key: r.GetKey(), Version: r.GetVersion()})
		}
		got, err := bg.GetBatch(ctx, refs)
		if err != nil {
			return err
		}
		resp = &providerv1.GetBatchResponse{}
		for r, v := range got {
			resp.Values = append(resp.Values, &providerv1.GetBatchResponse_Entry{
				Ref: &providerv1.Ref{Key: r.Key, Version: r.Version}, Value: &providerv1.Value{Data: v.Data, Version: v.Version}})
		}
		return fits(resp, fmt.Sprintf("the %d values of the batch", len(resp.Values)))
	})
	return resp, err
}

func (s *Server) Find(ctx context.Context, req *providerv1.FindRequest) (*providerv1.FindResponse, error) {
	var resp *providerv1.FindResponse
	err := s.call(ctx, req.GetStore(), func(st *served) error {
		if err := st.checkPath(req.GetPath()); err != nil {
			return err
		}
		found, err := st.client.Find(ctx, providers.Find{Path: req.GetPath(), NameRegexp: req.GetNameRegexp(), Tags: req.GetTags()})
		if err != nil {
			return err
		}
		if len(found) > providers.MaxFindResults {
			return providers.Errorf(providers.Invalid, "find under %q in %s matches %d keys, more than %d; narrow find.path or find.name", req.GetPath(), st.key, len(found), providers.MaxFindResults)
		}
		resp = &providerv1.FindResponse{Values: make(map[string]*providerv1.Value, len(found))}
		for k, v := range found {
			// The backend lists what its credentials can; only keys
			// under the prefixes leave.
			if st.checkKey(k) == nil {
				resp.Values[k] = &providerv1.Value{Data: v.Data, Version: v.Version}
			}
		}
		return fits(resp, fmt.Sprintf("the %d values found under %q", len(resp.Values), req.GetPath()))
	})
	return resp, err
}

func ownerOf(o *providerv1.Owner) providers.Owner {
	return providers.Owner{Namespace: o.GetNamespace(), Name: o.GetName(), UID: o.GetUid()}
}

func (s *Server) Push(ctx context.Context, req *providerv1.PushRequest) (*providerv1.PushResponse, error) {
	var resp *providerv1.PushResponse
	err := s.call(ctx, req.GetStore(), func(st *served) error {
		if err := st.checkKey(req.GetKey()); err != nil {
			return err
		}
		result, err := st.client.Push(ctx, providers.Push{Key: req.GetKey(), Property: req.GetProperty(), Value: req.GetValue(),
			Owner: ownerOf(req.GetOwner()), IfNotExists: req.GetIfNotExists(), Replace: req.GetReplace(), Metadata: req.GetMetadata()})
		resp = &providerv1.PushResponse{Result: result}
		return err
	})
	return resp, err
}

func (s *Server) Delete(ctx context.Context, req *providerv1.DeleteRequest) (*providerv1.DeleteResponse, error) {
	err := s.call(ctx, req.GetStore(), func(st *served) error {
		if err := st.checkKey(req.GetKey()); err != nil {
			return err
		}
		return st.client.Delete(ctx, providers.Delete{Key: req.GetKey(), Property: req.GetProperty(), Owner: ownerOf(req.GetOwner())})
	})
	if err != nil {
		return nil, err
	}
	return &providerv1.DeleteResponse{}, nil
}

func (s *Server) Versions(ctx context.Context, req *providerv1.VersionsRequest) (*providerv1.VersionsResponse, error) {
	var resp *providerv1.VersionsResponse
	err := s.call(ctx, req.GetStore(), func(st *served) error {
		vl, ok := st.client.(providers.VersionLister)
		if !ok {
			return providers.Errorf(providers.Invalid, "%s cannot list versions", st.key)
		}
		if n := len(req.GetKeys()); n > providers.MaxVersionKeys {
			return providers.Errorf(providers.Invalid, "%d keys is more than the %d one Versions call may ask about", n, providers.MaxVersionKeys)
		}
		for _, k := range req.GetKeys() {
			if err := st.checkKey(k); err != nil {
				return err
			}
		}
		got, err := vl.Versions(ctx, req.GetKeys())
		if err != nil {
			return err
		}
		resp = &providerv1.VersionsResponse{Versions: make(map[string]*providerv1.KeyVersion, len(got))}
		for k, v := range got {
			resp.Versions[k] = versionToProto(v)
		}
		return nil
	})
	return resp, err
}
