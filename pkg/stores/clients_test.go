package stores

import (
	"context"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/credentials"
	"github.com/veil-dev/veil/pkg/providers"
)

// countingProvider builds clients that read a token from the store's
// credential Secret, counting builds and closes.
type countingProvider struct {
	builds, closes atomic.Int32
	// gate, when set, holds builds until closed.
	gate chan struct{}
}

func (p *countingProvider) Name() string                                   { return "counting" }
func (p *countingProvider) Endpoints(*providers.Store) ([]*url.URL, error) { return nil, nil }

func (p *countingProvider) NewClient(ctx context.Context, _ *providers.Store, creds providers.Credentials, _ providers.Env) (providers.Client, error) {
	if p.gate != nil {
		<-p.gate
	}
	if _, err := creds.SecretKey(ctx, configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"}); err != nil {
		return nil, err
	}
	p.builds.Add(1)
	return &countingClient{p: p}, nil
}

type countingClient struct {
	providers.Client
	p *countingProvider
}

func (c *countingClient) Close(context.Context) error { c.p.closes.Add(1); return nil }

func usable(p providers.Provider, generation int64) *Store {
	return &Store{
		Store:    providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "app", Name: "vault", Generation: generation, Spec: &configv1alpha1.SecretStoreSpec{}},
		UID:      "uid-1",
		Provider: p,
	}
}

func newClients(t *testing.T) (*Clients, *fake.Clientset) {
	t.Helper()
	kube := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "creds"}, Data: map[string][]byte{"token": []byte("one")}})
	c := NewClients(credentials.NewReader(kube, 0), providers.Env{})
	c.closeDelay = 0
	return c, kube
}

func eventuallyEqual(t *testing.T, what string, got func() int32, want int32) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); got() != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", what, got(), want)
		}
	}
}

func TestOneClientPerStoreIdentity(t *testing.T) {
	ctx := context.Background()
	p := &countingProvider{}
	c, kube := newClients(t)

	first, id1, err := c.For(ctx, usable(p, 1), "app")
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		again, id, err := c.For(ctx, usable(p, 1), "app")
		if err != nil || again != first || id != id1 {
			t.Fatalf("read of an unchanged store got another client or identity: %v", err)
		}
	}
	if p.builds.Load() != 1 || id1.Fingerprint == "" || id1.UID != "uid-1" || id1.Generation != 1 {
		t.Fatalf("builds %d, identity %+v", p.builds.Load(), id1)
	}

	// A new generation of the spec: a new client, the old one closed.
	second, id2, err := c.For(ctx, usable(p, 2), "app")
	if err != nil || second == first || id2 == id1 {
		t.Fatalf("after a spec change: same client or identity (%v)", err)
	}
	eventuallyEqual(t, "closes after a spec change", p.closes.Load, 1)

	// A rotated credential: a new identity and client.
	if _, err := kube.CoreV1().Secrets("app").Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "creds"}, Data: map[string][]byte{"token": []byte("two")}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	third, id3, err := c.For(ctx, usable(p, 2), "app")
	if err != nil || third == second || id3.Fingerprint == id2.Fingerprint || id3.Generation != id2.Generation {
		t.Fatalf("after credential rotation: %+v vs %+v (%v)", id3, id2, err)
	}
	eventuallyEqual(t, "closes after rotation", p.closes.Load, 2)

	c.Forget(string(configv1alpha1.SecretStoreKind), "app", "vault")
	eventuallyEqual(t, "closes after the store was deleted", p.closes.Load, 3)
	if p.builds.Load() != 3 {
		t.Errorf("builds = %d, want 3", p.builds.Load())
	}
}

func TestConcurrentFirstReadsBuildOnce(t *testing.T) {
	p := &countingProvider{gate: make(chan struct{})}
	c, _ := newClients(t)
	var wg sync.WaitGroup
	clients := make([]providers.Client, 50)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, _, err := c.For(context.Background(), usable(p, 1), "app")
			if err != nil {
				t.Error(err)
			}
			clients[i] = cl
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the readers pile up behind the first build
	close(p.gate)
	wg.Wait()
	if p.builds.Load() != 1 {
		t.Errorf("50 concurrent first reads built %d clients, want 1", p.builds.Load())
	}
	for _, cl := range clients {
		if cl != clients[0] {
			t.Fatal("concurrent readers got different clients")
		}
	}
}

func TestAFailedBuildIsNotCached(t *testing.T) {
	ctx := context.Background()
	p := &countingProvider{}
	kube := fake.NewClientset()
	c := NewClients(credentials.NewReader(kube, 0), providers.Env{})
	if _, _, err := c.For(ctx, usable(p, 1), "app"); providers.ReasonOf(err) != providers.Invalid {
		t.Fatalf("missing credential: %v, want Invalid", err)
	}
	if _, err := kube.CoreV1().Secrets("app").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "creds"}, Data: map[string][]byte{"token": []byte("x")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.For(ctx, usable(p, 1), "app"); err != nil {
		t.Errorf("once the credential exists: %v", err)
	}
}

func TestAWriteMakesANewIdentity(t *testing.T) {
	ctx := context.Background()
	p := &countingProvider{}
	c, _ := newClients(t)
	client, before, err := c.For(ctx, usable(p, 1), "app")
	if err != nil {
		t.Fatal(err)
	}
	c.Invalidate(before)
	again, after, err := c.For(ctx, usable(p, 1), "app")
	if err != nil || again != client || after == before || after.Writes != before.Writes+1 {
		t.Fatalf("after a write: same client %v, identity %+v -> %+v (%v)", again == client, before, after, err)
	}
	if after.ValueKey(providers.Ref{Key: "k"}) == before.ValueKey(providers.Ref{Key: "k"}) {
		t.Error("a write does not change the cache key of a value")
	}
	if p.builds.Load() != 1 {
		t.Errorf("a write rebuilt the client: %d builds", p.builds.Load())
	}
}

// TestAWriteSurvivesARebuild: credentials rotated away and back give the
// fingerprint of before a write again, but never its identity, so a value
// cached before the write is not served after it.
func TestAWriteSurvivesARebuild(t *testing.T) {
	ctx := context.Background()
	p := &countingProvider{}
	c, kube := newClients(t)
	_, before, err := c.For(ctx, usable(p, 1), "app")
	if err != nil {
		t.Fatal(err)
	}
	c.Invalidate(before)
	for _, token := range []string{"two", "one"} {
		if _, err := kube.CoreV1().Secrets("app").Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "creds"}, Data: map[string][]byte{"token": []byte(token)}}, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.For(ctx, usable(p, 1), "app"); err != nil {
			t.Fatal(err)
		}
	}
	_, after, err := c.For(ctx, usable(p, 1), "app")
	if err != nil {
		t.Fatal(err)
	}
	if after.Fingerprint != before.Fingerprint {
		t.Fatalf("the credentials rotated back give another fingerprint: %+v vs %+v", after, before)
	}
	if after.Writes <= before.Writes || after.ValueKey(providers.Ref{Key: "k"}) == before.ValueKey(providers.Ref{Key: "k"}) {
		t.Errorf("after a write and a rebuild, identity %+v is that of before the write %+v", after, before)
	}
}

// versionedClient answers Versions, one key a call.
type versionedClient struct {
	countingClient
	calls atomic.Int32
}

func (c *versionedClient) VersionsPerCall() int { return 1 }
func (c *versionedClient) Versions(_ context.Context, keys []string) (map[string]providers.KeyVersion, error) {
	c.calls.Add(1)
	out := map[string]providers.KeyVersion{}
	for _, k := range keys {
		out[k] = providers.KeyVersion{ID: "1"}
	}
	return out, nil
}

type versionedProvider struct {
	countingProvider
	client *versionedClient
}

func (p *versionedProvider) NewClient(ctx context.Context, s *providers.Store, creds providers.Credentials, env providers.Env) (providers.Client, error) {
	if _, err := p.countingProvider.NewClient(ctx, s, creds, env); err != nil {
		return nil, err
	}
	return p.client, nil
}

// TestVersionsUseOnlyAClientAReadBuilt: detection never builds a client
// (no login, no credential read) and stops at maxCalls.
func TestVersionsUseOnlyAClientAReadBuilt(t *testing.T) {
	ctx := context.Background()
	p := &versionedProvider{}
	p.client = &versionedClient{countingClient: countingClient{p: &p.countingProvider}}
	c, _ := newClients(t)
	if _, _, ok, err := c.Versions(ctx, usable(p, 1), "app", []string{"a"}, 0); ok || err != nil || p.builds.Load() != 0 {
		t.Fatalf("before any read: ok %v, err %v, builds %d; want no client built and nothing asked", ok, err, p.builds.Load())
	}
	if _, _, err := c.For(ctx, usable(p, 1), "app"); err != nil {
		t.Fatal(err)
	}
	got, looked, ok, err := c.Versions(ctx, usable(p, 1), "app", []string{"a", "b", "c"}, 2)
	if !ok || err != nil || looked != 2 || len(got) != 2 || p.client.calls.Load() != 2 {
		t.Fatalf("after a read: %v looked %d ok %v err %v calls %d; want two keys in two calls", got, looked, ok, err, p.client.calls.Load())
	}
	if _, _, ok, _ := c.Versions(ctx, usable(p, 2), "app", []string{"a"}, 0); ok || p.builds.Load() != 1 {
		t.Errorf("a new spec no read has built a client for was asked (ok %v), or a client was built (%d)", ok, p.builds.Load())
	}
}

// watchingClient detects changes itself.
type watchingClient struct {
	countingClient
	watches atomic.Int32
}

func (c *watchingClient) WatchChanges(_ context.Context, keys []string, changed func(providers.KeyChange) error) error {
	c.watches.Add(1)
	for _, k := range keys {
		if err := changed(providers.KeyChange{Key: k}); err != nil {
			return err
		}
	}
	return nil
}

type watchingProvider struct {
	countingProvider
	client *watchingClient
}

func (p *watchingProvider) NewClient(ctx context.Context, s *providers.Store, creds providers.Credentials, env providers.Env) (providers.Client, error) {
	if _, err := p.countingProvider.NewClient(ctx, s, creds, env); err != nil {
		return nil, err
	}
	return p.client, nil
}

// TestWatcherUsesOnlyAClientAReadBuilt: like Versions, a watch never
// builds a client, and only a store's client as it is now is watched.
func TestWatcherUsesOnlyAClientAReadBuilt(t *testing.T) {
	ctx := context.Background()
	p := &watchingProvider{}
	p.client = &watchingClient{countingClient: countingClient{p: &p.countingProvider}}
	c, _ := newClients(t)
	if _, ok := c.Watcher(usable(p, 1), "app"); ok || p.builds.Load() != 0 {
		t.Fatalf("before any read: ok %v, builds %d; want no watcher and no client built", ok, p.builds.Load())
	}
	if _, _, err := c.For(ctx, usable(p, 1), "app"); err != nil {
		t.Fatal(err)
	}
	cw, ok := c.Watcher(usable(p, 1), "app")
	if !ok {
		t.Fatal("no watcher for a store whose client detects changes, after a read built it")
	}
	var got []string
	if err := cw.WatchChanges(ctx, []string{"a", "b"}, func(kc providers.KeyChange) error { got = append(got, kc.Key); return nil }); err != nil || len(got) != 2 || p.client.watches.Load() != 1 {
		t.Fatalf("watching: %v, %v, %d watches", got, err, p.client.watches.Load())
	}
	if _, ok := c.Watcher(usable(p, 2), "app"); ok || p.builds.Load() != 1 {
		t.Errorf("a new spec no read has built a client for was watched (ok %v), or a client was built (%d)", ok, p.builds.Load())
	}
	vp := &versionedProvider{}
	vp.client = &versionedClient{countingClient: countingClient{p: &vp.countingProvider}}
	vc, _ := newClients(t)
	if _, _, err := vc.For(ctx, usable(vp, 1), "app"); err != nil {
		t.Fatal(err)
	}
	if _, ok := vc.Watcher(usable(vp, 1), "app"); ok {
		t.Error("a client that only lists versions was offered as a watcher")
	}
}
