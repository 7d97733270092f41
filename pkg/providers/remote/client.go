package remote

import (
	"context"
	"errors"
	"net"
	"net/url"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/veil-dev/veil/pkg/providers"
	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// Endpoint is a provider process as veil-apiserver reaches it.
type Endpoint struct {
	// Address is host:port.
	Address string
	// Identity is the DNS name the provider's certificate must carry,
	// whatever Address resolves to.
	Identity string
	// TLS is veil-apiserver's client certificate and key, and the CA that
	// signs the provider's certificate.
	TLS TLSFiles
	// Dial, if set, makes the connections (veil-apiserver's allowlist
	// dialer, which checks each address the host resolves to).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// clientKeepalive pings an idle connection, so that a provider that went
// away without closing it is noticed before a read waits on it.
var clientKeepalive = keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}

// defaultTimeout bounds a call whose context has no deadline: a provider
// process that stops answering must not hold veil-apiserver's requests.
const defaultTimeout = 30 * time.Second

// bounded is ctx with defaultTimeout, unless it has a deadline already.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultTimeout)
}

// Provider is a providers.Provider served by a provider process: its
// clients call the process over one connection, shared by every store.
type Provider struct {
	name    string
	address string
	where   string
	conn    *grpc.ClientConn
	rpc     providerv1.ProviderClient
}

var _ providers.Provider = &Provider{}

// NewProvider reaches the provider kind name ("vault") at ep. It does not
// connect: the first client does.
func NewProvider(name string, ep Endpoint) (*Provider, error) {
	if ep.Address == "" {
		return nil, errors.New("the provider endpoint has no address")
	}
	creds, err := ClientTLS(ep.TLS, ep.Identity)
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(clientKeepalive),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize)),
	}
	target := ep.Address
	if ep.Dial != nil {
		// passthrough hands the host name to Dial, which resolves and
		// checks it itself.
		target = "passthrough:///" + ep.Address
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return ep.Dial(ctx, "tcp", addr)
		}))
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, err
	}
	return &Provider{name: name, address: ep.Address, where: "veil-provider " + ep.Identity + " at " + ep.Address, conn: conn, rpc: providerv1.NewProviderClient(conn)}, nil
}

func (p *Provider) Name() string { return p.name }

// Endpoints is the provider process: the store's own backend is the
// process's business, reached with the process's credentials.
func (p *Provider) Endpoints(*providers.Store) ([]*url.URL, error) {
	return []*url.URL{{Scheme: "https", Host: p.address}}, nil
}

// Close closes the connection; clients of p fail after it.
func (p *Provider) Close() error { return p.conn.Close() }

// NewClient agrees on a protocol version for store and learns what the
// provider can do for it. It sends no credential: creds is not read, and
// the provider process authenticates to its backend with its own. Nor is
// env's dialer used: the connection is the endpoint's, shared by every
// store, and the endpoint is an administrator's, checked against the
// allowlist through Endpoints like any other.
func (p *Provider) NewClient(ctx context.Context, store *providers.Store, _ providers.Credentials, _ providers.Env) (providers.Client, error) {
	ref := &providerv1.StoreRef{Kind: string(store.Kind), Namespace: store.Namespace, Name: store.Name}
	ctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := p.rpc.Handshake(ctx, &providerv1.HandshakeRequest{ProtocolVersions: supportedVersions, Store: ref})
	if err != nil {
		return nil, providers.Within(fromStatus(err, p.where), "%s", store)
	}
	if !slices.Contains(supportedVersions, resp.GetProtocolVersion()) {
		return nil, providers.Errorf(providers.Invalid, "%s chose provider protocol version %d, which this veil-apiserver does not speak (it speaks %v)", p.where, resp.GetProtocolVersion(), supportedVersions)
	}
	if resp.GetProvider() != p.name {
		return nil, providers.Errorf(providers.Invalid, "%s serves the %q provider, but %s uses %q", p.where, resp.GetProvider(), store, p.name)
	}
	return compose(&client{rpc: p.rpc, ref: ref, where: p.where}, resp.GetCapabilities()), nil
}

// client is one store's client; deadlines travel with each call's context.
type client struct {
	rpc   providerv1.ProviderClient
	ref   *providerv1.StoreRef
	where string
}

var _ providers.Client = &client{}

func (c *client) Get(ctx context.Context, ref providers.Ref) (providers.Value, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := c.rpc.Get(ctx, &providerv1.GetRequest{Store: c.ref, Ref: &providerv1.Ref{Key: ref.Key, Version: ref.Version}})
	if err != nil {
		return providers.Value{}, fromStatus(err, c.where)
	}
	return providers.Value{Data: resp.GetValue().GetData(), Version: resp.GetValue().GetVersion()}, nil
}

func (c *client) Find(ctx context.Context, f providers.Find) (map[string]providers.Value, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := c.rpc.Find(ctx, &providerv1.FindRequest{Store: c.ref, Path: f.Path, NameRegexp: f.NameRegexp, Tags: f.Tags})
	if err != nil {
		return nil, fromStatus(err, c.where)
	}
	// A provider is held to the same bound as in process.
	if len(resp.GetValues()) > providers.MaxFindResults {
		return nil, providers.Errorf(providers.Invalid, "%s found %d keys under %q, more than %d; narrow find.path or find.name", c.where, len(resp.GetValues()), f.Path, providers.MaxFindResults)
	}
	out := make(map[string]providers.Value, len(resp.GetValues()))
	for k, v := range resp.GetValues() {
		out[k] = providers.Value{Data: v.GetData(), Version: v.GetVersion()}
	}
	return out, nil
}

func ownerMsg(o providers.Owner) *providerv1.Owner {
	return &providerv1.Owner{Namespace: o.Namespace, Name: o.Name, Uid: o.UID}
}

func (c *client) Push(ctx context.Context, p providers.Push) (string, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := c.rpc.Push(ctx, &providerv1.PushRequest{Store: c.ref, Key: p.Key, Property: p.Property, Value: p.Value,
		Owner: ownerMsg(p.Owner), IfNotExists: p.IfNotExists, Replace: p.Replace, Metadata: p.Metadata})
	if err != nil {
		return "", fromStatus(err, c.where)
	}
	return resp.GetResult(), nil
}

func (c *client) Delete(ctx context.Context, d providers.Delete) error {
	ctx, cancel := bounded(ctx)
	defer cancel()
	_, err := c.rpc.Delete(ctx, &providerv1.DeleteRequest{Store: c.ref, Key: d.Key, Property: d.Property, Owner: ownerMsg(d.Owner)})
	return fromStatus(err, c.where)
}

// Close releases nothing: the connection is the Provider's, and the
// backend session the provider process's.
func (c *client) Close(context.Context) error { return nil }

func (c *client) getBatch(ctx context.Context, refs []providers.Ref) (map[providers.Ref]providers.Value, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	req := &providerv1.GetBatchRequest{Store: c.ref}
	for _, r := range refs {
		req.Refs = append(req.Refs, &providerv1.Ref{Key: r.Key, Version: r.Version})
	}
	resp, err := c.rpc.GetBatch(ctx, req)
	if err != nil {
		return nil, fromStatus(err, c.where)
	}
	out := make(map[providers.Ref]providers.Value, len(resp.GetValues()))
	for _, e := range resp.GetValues() {
		out[providers.Ref{Key: e.GetRef().GetKey(), Version: e.GetRef().GetVersion()}] = providers.Value{Data: e.GetValue().GetData(), Version: e.GetValue().GetVersion()}
	}
	return out, nil
}

func (c *client) versions(ctx context.Context, keys []string) (map[string]providers.KeyVersion, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	resp, err := c.rpc.Versions(ctx, &providerv1.VersionsRequest{Store: c.ref, Keys: keys})
	if err != nil {
		return nil, fromStatus(err, c.where)
	}
	out := make(map[string]providers.KeyVersion, len(resp.GetVersions()))
	for k, v := range resp.GetVersions() {
		out[k] = versionFromProto(v)
	}
	return out, nil
}

// versionFromProto and versionToProto carry a providers.KeyVersion over
// the protocol.
func versionFromProto(v *providerv1.KeyVersion) providers.KeyVersion {
	kv := providers.KeyVersion{ID: v.GetId(), Scope: v.GetScope()}
	if n := v.GetChangedUnixNano(); n != 0 {
		kv.Changed = time.Unix(0, n)
	}
	return kv
}

func versionToProto(v providers.KeyVersion) *providerv1.KeyVersion {
	kv := &providerv1.KeyVersion{Id: v.ID, Scope: v.Scope}
	if !v.Changed.IsZero() {
		kv.ChangedUnixNano = v.Changed.UnixNano()
	}
	return kv
}

// The optional interfaces a client has are those the provider declared
// for its store in Handshake: compose gives c the methods of each.
func compose(c *client, caps *providerv1.Capabilities) providers.Client {
	b, v, w := batchGet{c}, versionLister{c, int(caps.GetVersionsPerCall())}, changeWatcher{c}
	switch batch, versions, watch := caps.GetBatchGet(), caps.GetVersions(), caps.GetChangeStream(); {
	case batch && versions && watch:
		return &struct {
			*client
			batchGet
			versionLister
			changeWatcher
		}{c, b, v, w}
	case batch && versions:
		return &struct {
			*client
			batchGet
			versionLister
		}{c, b, v}
	case batch && watch:
		return &struct {
			*client
			batchGet
			changeWatcher
		}{c, b, w}
	case versions && watch:
		return &struct {
			*client
			versionLister
			changeWatcher
		}{c, v, w}
	case batch:
		return &struct {
			*client
			batchGet
		}{c, b}
	case versions:
		return &struct {
			*client
			versionLister
		}{c, v}
	case watch:
		return &struct {
			*client
			changeWatcher
		}{c, w}
	}
	return c
}

type batchGet struct{ c *client }

func (b batchGet) GetBatch(ctx context.Context, refs []providers.Ref) (map[providers.Ref]providers.Value, error) {
	return b.c.getBatch(ctx, refs)
}

type versionLister struct {
	c       *client
	perCall int
}

func (v versionLister) Versions(ctx context.Context, keys []string) (map[string]providers.KeyVersion, error) {
	return v.c.versions(ctx, keys)
}

func (v versionLister) VersionsPerCall() int { return v.perCall }

type changeWatcher struct{ c *client }

func (w changeWatcher) WatchChanges(ctx context.Context, keys []string, changed func(providers.KeyChange) error) error {
	return w.c.watchChanges(ctx, keys, changed)
}

var (
	_ providers.BatchGetter   = batchGet{}
	_ providers.VersionLister = versionLister{}
	_ providers.ChangeWatcher = changeWatcher{}
)
