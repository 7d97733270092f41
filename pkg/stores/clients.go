package stores

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/klog/v2"

	"github.com/veil-dev/veil/pkg/allowlist"
	"github.com/veil-dev/veil/pkg/credentials"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/throttle"
)

// Clients builds one client per store identity and reuses it, so a Vault
// login or an AWS credential exchange happens once, not once per read.
type Clients struct {
	creds *credentials.Reader
	env   providers.Env
	// Endpoints is --allowed-provider-endpoints: every connection of a
	// store's client is checked against it, with the trust of the store's
	// kind. Without a list, the address rules alone apply.
	Endpoints *allowlist.List
	// Limiter admits every call a client returned by For makes, on behalf
	// of the namespace For names; nil admits all.
	Limiter *throttle.Limiter
	// closeDelay lets requests that still hold a replaced client finish.
	closeDelay time.Duration

	mu      sync.Mutex
	entries map[storeName]*clientEntry
	builds  singleflight.Group
}

type storeName struct{ kind, namespace, name string }

type clientEntry struct {
	id       Identity
	client   providers.Client
	recorder *credentials.Recorder
}

// NewClients returns an empty client cache.
func NewClients(creds *credentials.Reader, env providers.Env) *Clients {
	return &Clients{creds: creds, env: env, closeDelay: time.Minute, entries: map[storeName]*clientEntry{}}
}

// For returns the client of a store for calls on behalf of namespace,
// building it when the store is new, its spec changed, or the credentials it
// was built with changed. Every call of the client is admitted by Limiter.
func (c *Clients) For(ctx context.Context, store *Store, namespace string) (providers.Client, Identity, error) {
	client, id, err := c.shared(ctx, store)
	if err != nil {
		return nil, id, err
	}
	return c.Limiter.Client(client, throttle.Store{Kind: id.Kind, Namespace: id.Namespace, Name: id.Name}, namespace), id, nil
}

// shared returns the one client of a store.
func (c *Clients) shared(ctx context.Context, store *Store) (providers.Client, Identity, error) {
	key := storeName{string(store.Kind), store.Namespace, store.Name}
	c.mu.Lock()
	e := c.entries[key]
	var id Identity
	if e != nil {
		id = e.id
	}
	c.mu.Unlock()
	if e != nil && id.UID == store.UID && id.Generation == store.Generation && id.Registration == store.Registration {
		fp, err := e.recorder.Fingerprint(ctx)
		if err != nil {
			return nil, Identity{}, err
		}
		if fp == id.Fingerprint {
			return e.client, id, nil
		}
	}

	// One build per store at a time; it outlives the request that started
	// it, because the others waiting for it share the result.
	v, err, _ := c.builds.Do(key.kind+"/"+key.namespace+"/"+key.name, func() (any, error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		rec := c.creds.ForStore(&store.Store)
		env := c.env
		env.DialContext = c.Endpoints.Dialer(trustOf(store.Kind), c.env.DialContext)
		client, err := store.Provider.NewClient(bctx, &store.Store, rec, env)
		if err != nil {
			return nil, err
		}
		fp, err := rec.Fingerprint(bctx)
		if err != nil {
			_ = client.Close(bctx)
			return nil, err
		}
		ne := &clientEntry{
			id: Identity{Kind: key.kind, Namespace: key.namespace, Name: key.name,
				UID: store.UID, Generation: store.Generation, Fingerprint: fp, Registration: store.Registration},
			client:   client,
			recorder: rec,
		}
		c.mu.Lock()
		old := c.entries[key]
		if old != nil {
			// Writes only ever grows for a store: credentials rotated
			// back give the fingerprint of before, and with the count
			// starting again the identity (and cache keys) of before a
			// push would come back too.
			ne.id.Writes = old.id.Writes
		}
		c.entries[key] = ne
		c.mu.Unlock()
		c.retire(old)
		return ne, nil
	})
	if err != nil {
		return nil, Identity{}, err
	}
	ne := v.(*clientEntry)
	c.mu.Lock()
	id = ne.id
	c.mu.Unlock()
	return ne.client, id, nil
}

// Invalidate is the one way a write reaches the value cache: call it after
// every write through the store of id that changed something (a value
// pushed, a key deleted). It gives the store a new Identity (Writes+1), so
// reads after it build new cache keys and never see a value cached before
// the write; the client itself is kept. An id of a store that has changed
// since (another UID or generation) already has a new identity, and is
// left alone.
func (c *Clients) Invalidate(id Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[storeName{id.Kind, id.Namespace, id.Name}]; e != nil && e.id.UID == id.UID && e.id.Generation == id.Generation {
		e.id.Writes++
	}
}

// Forget closes the client of a store that was deleted at once: what it
// holds (a Vault token) is revoked, and a read still using it fails, as
// it should for a store that no longer exists.
func (c *Clients) Forget(kind, namespace, name string) {
	key := storeName{kind, namespace, name}
	c.mu.Lock()
	old := c.entries[key]
	delete(c.entries, key)
	c.mu.Unlock()
	c.Limiter.Forget(throttle.Store{Kind: kind, Namespace: namespace, Name: name})
	if old != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			closeClient(ctx, old)
		}()
	}
}

// Close closes every client, at shutdown.
func (c *Clients) Close(ctx context.Context) {
	c.mu.Lock()
	entries := c.entries
	c.entries = map[storeName]*clientEntry{}
	c.mu.Unlock()
	for _, e := range entries {
		closeClient(ctx, e)
	}
}

func (c *Clients) retire(e *clientEntry) {
	if e == nil {
		return
	}
	time.AfterFunc(c.closeDelay, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closeClient(ctx, e)
	})
}

func closeClient(ctx context.Context, e *clientEntry) {
	if err := e.client.Close(ctx); err != nil {
		klog.ErrorS(err, "Closing provider client", "kind", e.id.Kind, "store", klog.KRef(e.id.Namespace, e.id.Name))
	}
}

// Versions asks store's client which version of each of keys is current
// (providers.VersionLister), in chunks of what one provider call answers,
// each admitted by Limiter on behalf of namespace like any read: detection
// spends the store's budget, never more. It returns the versions of
// keys[:looked]; when the budget runs out, looked < len(keys) and err is
// the Throttled error. It makes at most maxCalls provider calls (0: no
// bound), and then returns with looked < len(keys) and no error. ok is
// false when the store's provider cannot tell, or no client is built.
//
// It uses only a client that a read has already built for the store as it
// is now (same UID and generation): detection never logs in, never reads
// credentials, and never reaches a store nobody has read through — a
// store whose credentials fail is not tried again every cycle.
func (c *Clients) Versions(ctx context.Context, store *Store, namespace string, keys []string, maxCalls int) (_ map[string]providers.KeyVersion, looked int, ok bool, _ error) {
	c.mu.Lock()
	e := c.entries[storeName{string(store.Kind), store.Namespace, store.Name}]
	var (
		client providers.Client
		id     Identity
	)
	if e != nil {
		client, id = e.client, e.id
	}
	c.mu.Unlock()
	if e == nil || id.UID != store.UID || id.Generation != store.Generation || id.Registration != store.Registration {
		return nil, 0, false, nil
	}
	var err error
	vl, ok := client.(providers.VersionLister)
	if !ok {
		return nil, 0, false, nil
	}
	per := max(vl.VersionsPerCall(), 1)
	out := make(map[string]providers.KeyVersion, len(keys))
	for calls := 0; looked < len(keys) && (maxCalls <= 0 || calls < maxCalls); calls++ {
		chunk := keys[looked:min(looked+per, len(keys))]
		done := func() {}
		if c.Limiter != nil {
			if done, err = c.Limiter.Admit(throttle.Store{Kind: id.Kind, Namespace: id.Namespace, Name: id.Name}, namespace); err != nil {
				return out, looked, true, err
			}
		}
		v, err := vl.Versions(ctx, chunk)
		done()
		if err != nil {
			return out, looked, true, err
		}
		for k, kv := range v {
			out[k] = kv
		}
		looked += len(chunk)
	}
	return out, looked, true, nil
}

// Watcher returns the providers.ChangeWatcher of store's client, when its
// provider detects changes itself; ok is false otherwise, or when no
// client is built. Like Versions, it uses only a client a read has built
// for the store as it is now (same UID, generation and registration).
// Opening the watch is admitted by Limiter as one call on behalf of
// namespace; what the watch reports after costs the store nothing more.
func (c *Clients) Watcher(store *Store, namespace string) (_ providers.ChangeWatcher, ok bool) {
	c.mu.Lock()
	e := c.entries[storeName{string(store.Kind), store.Namespace, store.Name}]
	var id Identity
	if e != nil {
		id = e.id
	}
	c.mu.Unlock()
	if e == nil || id.UID != store.UID || id.Generation != store.Generation || id.Registration != store.Registration {
		return nil, false
	}
	cw, ok := e.client.(providers.ChangeWatcher)
	if !ok {
		return nil, false
	}
	return &admittedWatcher{cw: cw, limiter: c.Limiter, store: throttle.Store{Kind: id.Kind, Namespace: id.Namespace, Name: id.Name}, namespace: namespace}, true
}

// admittedWatcher admits the opening of each watch.
type admittedWatcher struct {
	cw        providers.ChangeWatcher
	limiter   *throttle.Limiter
	store     throttle.Store
	namespace string
}

func (w *admittedWatcher) WatchChanges(ctx context.Context, keys []string, changed func(providers.KeyChange) error) error {
	if w.limiter != nil {
		done, err := w.limiter.Admit(w.store, w.namespace)
		if err != nil {
			return err
		}
		done()
		// The watch's own calls go through the same budget, after any
		// pace its caller set; over the budget, they wait for it rather
		// than end the watch, so readers keep their share.
		outer := providers.AdmitFrom(ctx)
		ctx = providers.WithAdmit(ctx, func() (func(), error) {
			if outer != nil {
				done, err := outer()
				if err != nil {
					return nil, err
				}
				done()
			}
			return providers.Waiting(ctx, func() (func(), error) { return w.limiter.Admit(w.store, w.namespace) })()
		})
	}
	return w.cw.WatchChanges(ctx, keys, changed)
}
