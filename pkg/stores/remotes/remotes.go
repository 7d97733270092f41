// Package remotes keeps veil-apiserver's connections to provider
// processes: one remote.Provider per ProviderRegistration, for the stores
// that name one (stores.Lookup asks it through stores.RemoteProviders).
package remotes

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	configclient "github.com/veil-dev/veil/pkg/generated/clientset/versioned/typed/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/providers/remote"
)

// Providers keeps one remote.Provider, and so one gRPC connection, per
// ProviderRegistration that a store has used: every store naming a
// registration shares it. A registration that changes gets a new provider
// (the old one is closed once the reads holding it are done); one that is
// deleted has its provider closed.
type Providers struct {
	Registrations configlisters.ProviderRegistrationLister
	// Live is read when the informer does not have a registration yet.
	Live configclient.ProviderRegistrationsGetter
	// CertFile and KeyFile are veil-apiserver's client certificate towards
	// provider processes (--provider-client-cert-file and -key-file),
	// read again when they change.
	CertFile, KeyFile string
	// Endpoints is --allowed-provider-endpoints; a registration is a
	// cluster administrator's, so it is trusted as a ClusterSecretStore.
	Endpoints *allowlist.List
	// Dial makes connections; nil is a plain dialer's.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// CloseDelay lets calls still holding a replaced provider finish.
	CloseDelay time.Duration

	mu      sync.Mutex
	entries map[string]*remoteEntry
}

type remoteEntry struct {
	stamp    string
	provider *remote.Provider
}

// stampOf changes whenever the registration does, or is made again under
// the same name: it is part of a remote store's Identity, so no value read
// through an older registration is served after it changes.
func stampOf(r *configv1alpha1.ProviderRegistration) string {
	return string(r.UID) + "/" + strconv.FormatInt(r.Generation, 10)
}

// Provider returns the provider of the registration name and its stamp.
// Its errors are *providers.Error, saying what to fix: NotFound for a
// registration that does not exist, Invalid when this veil-apiserver has
// no client certificate for providers, Forbidden for an endpoint the
// allowlist refuses.
func (r *Providers) Provider(ctx context.Context, store *providers.Store, name string) (providers.Provider, string, error) {
	if r.CertFile == "" || r.KeyFile == "" {
		return nil, "", providers.Errorf(providers.Invalid, "%s names ProviderRegistration %q, but this veil-apiserver has no client certificate for provider processes: its operator sets --provider-client-cert-file and --provider-client-key-file", store, name)
	}
	reg, err := informerElseLive(
		func() (*configv1alpha1.ProviderRegistration, error) { return r.Registrations.Get(name) },
		func() (*configv1alpha1.ProviderRegistration, error) {
			return r.Live.ProviderRegistrations().Get(ctx, name, metav1.GetOptions{})
		})
	if apierrors.IsNotFound(err) {
		return nil, "", providers.Errorf(providers.NotFound, "%s names ProviderRegistration %q, which does not exist; a cluster administrator creates it, or the store names another in spec.provider.remote.registration", store, name)
	}
	if err != nil {
		return nil, "", providers.Wrap(providers.Unavailable, err, "looking up ProviderRegistration %q", name)
	}
	host, _, err := net.SplitHostPort(reg.Spec.Endpoint)
	if err != nil {
		return nil, "", providers.Errorf(providers.Invalid, "ProviderRegistration %q has endpoint %q, which is not host:port", name, reg.Spec.Endpoint)
	}
	if err := r.Endpoints.Check(allowlist.Cluster, host); err != nil {
		return nil, "", providers.Wrap(providers.Forbidden, err, "%s may not use ProviderRegistration %q: veil-apiserver's --allowed-provider-endpoints refuses its endpoint", store, name)
	}

	stamp := stampOf(reg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[name]; e != nil && e.stamp == stamp {
		return e.provider, stamp, nil
	}
	p, err := remote.NewProvider(reg.Spec.Provider, remote.Endpoint{
		Address:  reg.Spec.Endpoint,
		Identity: reg.Spec.ServerName,
		TLS:      remote.TLSFiles{CertFile: r.CertFile, KeyFile: r.KeyFile, CA: []byte(reg.Spec.CABundle)},
		Dial:     r.Endpoints.Dialer(allowlist.Cluster, r.Dial),
	})
	if err != nil {
		return nil, "", providers.Wrap(providers.Invalid, err, "ProviderRegistration %q cannot be used", name)
	}
	if r.entries == nil {
		r.entries = map[string]*remoteEntry{}
	}
	r.retire(r.entries[name], r.CloseDelay)
	r.entries[name] = &remoteEntry{stamp: stamp, provider: p}
	return p, stamp, nil
}

// informerElseLive reads an object from an informer's lister and, when the
// informer does not have it yet, from kube-apiserver, so that a
// registration created a moment ago is not taken for missing.
func informerElseLive[T any](informer, live func() (T, error)) (T, error) {
	v, err := informer()
	if apierrors.IsNotFound(err) {
		return live()
	}
	return v, err
}

// Forget closes the provider of a deleted registration at once: a read
// still holding it fails, as it should.
func (r *Providers) Forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retire(r.entries[name], 0)
	delete(r.entries, name)
}

// Close closes every provider, at shutdown.
func (r *Providers) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, e := range r.entries {
		r.retire(e, 0)
		delete(r.entries, name)
	}
}

func (r *Providers) retire(e *remoteEntry, after time.Duration) {
	if e == nil {
		return
	}
	time.AfterFunc(after, func() {
		if err := e.provider.Close(); err != nil {
			klog.ErrorS(err, "Closing the connection to a provider process")
		}
	})
}
