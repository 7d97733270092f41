package remotetest

import (
	"context"
	"net/url"
	"slices"
	"sync"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/providers/remote"
	"github.com/veil-dev/veil/test/conformance"
)

// Endpoint is a provider process serving already, as veil-apiserver
// reaches it: one that has no in-process twin (a third party's, such as
// providers/kubernetes), started by its own tests.
type Endpoint struct {
	// Kind is the provider kind the process says it serves in its
	// handshake (a ProviderRegistration's spec.provider).
	Kind string
	// Address is host:port; Identity the DNS SAN its certificate carries.
	Address, Identity string
	// TLS is the client certificate and key the process accepts, and the
	// CA that signs its certificate.
	TLS remote.TLSFiles
	// Logs returns what the process logged, for the canary search; it
	// must not be empty.
	Logs func(t *testing.T) []byte
}

// RunEndpoint runs the conformance suite against the process at ep: the
// store under test names a ProviderRegistration (spec.provider.remote),
// as a user's would, and every read reaches ep over the protocol through
// remote.Provider. The fixture's Store is not asked for a spec: the
// process serves the store from its own configuration (conformance
// Namespace/StoreName), and holds its credentials. Its Denied, if any,
// changes that configuration and returns a store as Store does.
func RunEndpoint(t *testing.T, f conformance.Fixture, ep Endpoint) {
	p, err := remote.NewProvider(ep.Kind, remote.Endpoint{Address: ep.Address, Identity: ep.Identity, TLS: ep.TLS})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	restore := switchTo(p)
	defer restore()
	conformance.Run(t, &endpointFixture{Fixture: f, logs: ep.Logs})
}

// RegistrationName is the ProviderRegistration the store under test
// names in RunEndpoint.
const RegistrationName = "under-test"

// RemoteStore is the store under test of RunEndpoint: it names a
// registration, and holds nothing else.
func RemoteStore() conformance.Store {
	return conformance.Store{Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{
		Remote: &configv1alpha1.RemoteProvider{Registration: RegistrationName}}}}
}

type endpointFixture struct {
	conformance.Fixture
	logs func(t *testing.T) []byte
}

func (e *endpointFixture) Store(*testing.T) conformance.Store { return RemoteStore() }

func (e *endpointFixture) Tag(t *testing.T, key string, tags map[string]string) {
	e.Fixture.(conformance.Tagger).Tag(t, key, tags)
}

func (e *endpointFixture) Denied(t *testing.T, key string) (conformance.Store, []string) {
	_, creds := e.Fixture.(conformance.Denier).Denied(t, key)
	return RemoteStore(), creds
}

func (e *endpointFixture) Outage(t *testing.T) func() {
	return e.Fixture.(conformance.Outager).Outage(t)
}

func (e *endpointFixture) Logs(t *testing.T) []byte {
	out := e.logs(t)
	if len(out) == 0 {
		t.Error("the provider process logged nothing: the canary search of its log would prove nothing")
	}
	if ls, ok := e.Fixture.(conformance.LogSource); ok {
		out = append(out, ls.Logs(t)...)
	}
	return out
}

// switchboard is the provider registered as "remote" in a test binary:
// stores naming a registration reach the endpoint of the RunEndpoint in
// progress. It is registered once, the first time, and pointed at each
// endpoint in turn.
type switchboard struct {
	mu     sync.Mutex
	target providers.Provider
}

var (
	board      = &switchboard{}
	registered sync.Once
)

func switchTo(p providers.Provider) (restore func()) {
	registered.Do(func() {
		if !slices.Contains(providers.Names(), "remote") {
			providers.Register(board)
		}
	})
	board.mu.Lock()
	board.target = p
	board.mu.Unlock()
	return func() {
		board.mu.Lock()
		board.target = nil
		board.mu.Unlock()
	}
}

func (b *switchboard) current() (providers.Provider, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.target == nil {
		return nil, providers.Errorf(providers.Invalid, "no provider endpoint is under test (remotetest.RunEndpoint is not running)")
	}
	return b.target, nil
}

func (b *switchboard) Name() string { return "remote" }

func (b *switchboard) Endpoints(s *providers.Store) ([]*url.URL, error) {
	p, err := b.current()
	if err != nil {
		return nil, err
	}
	return p.Endpoints(s)
}

func (b *switchboard) NewClient(ctx context.Context, s *providers.Store, c providers.Credentials, env providers.Env) (providers.Client, error) {
	p, err := b.current()
	if err != nil {
		return nil, err
	}
	return p.NewClient(ctx, s, c, env)
}
