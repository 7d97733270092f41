package resolve

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	"github.com/veil-dev/veil/pkg/cache"
	"github.com/veil-dev/veil/pkg/changes"
	"github.com/veil-dev/veil/pkg/credentials"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/registry"
	"github.com/veil-dev/veil/pkg/stores"
	"github.com/veil-dev/veil/pkg/throttle"
)

// remoteSystem stands in for one provider server that several tenants
// reach with their own tokens: it serves values to the tokens it allows and
// counts reads by token.
type remoteSystem struct {
	mu      sync.Mutex
	values  map[string]string
	allowed map[string]bool
	down    bool
	gets    map[string]int
	finds   int
}

func newRemoteSystem(values map[string]string, tokens ...string) *remoteSystem {
	r := &remoteSystem{values: values, allowed: map[string]bool{}, gets: map[string]int{}}
	for _, t := range tokens {
		r.allowed[t] = true
	}
	return r
}

func (r *remoteSystem) update(f func(r *remoteSystem)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *remoteSystem) getsBy(token string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gets[token]
}

// tenantProvider builds clients that authenticate to the remote system
// with the token in the store's credential Secret "creds".
type tenantProvider struct{ remote *remoteSystem }

func (tenantProvider) Name() string                                   { return "tenant" }
func (tenantProvider) Endpoints(*providers.Store) ([]*url.URL, error) { return nil, nil }

func (p tenantProvider) NewClient(ctx context.Context, _ *providers.Store, creds providers.Credentials, _ providers.Env) (providers.Client, error) {
	token, err := creds.SecretKey(ctx, configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"})
	if err != nil {
		return nil, err
	}
	return &tenantClient{remote: p.remote, token: string(token)}, nil
}

type tenantClient struct {
	providers.Client
	remote *remoteSystem
	token  string
}

func (c *tenantClient) Get(_ context.Context, ref providers.Ref) (providers.Value, error) {
	r := c.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gets[c.token]++
	switch v, ok := r.values[ref.Key]; {
	case r.down:
		return providers.Value{}, providers.Errorf(providers.Unavailable, "remote system: connection refused")
	case !r.allowed[c.token]:
		return providers.Value{}, providers.Errorf(providers.Forbidden, "remote system refused the store's token for key %q", ref.Key)
	case !ok:
		return providers.Value{}, providers.Errorf(providers.NotFound, "key %q does not exist", ref.Key)
	default:
		return providers.Value{Data: []byte(v), Version: "1"}, nil
	}
}

func (c *tenantClient) Find(_ context.Context, f providers.Find) (map[string]providers.Value, error) {
	r := c.remote
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finds++
	out := map[string]providers.Value{}
	for k, v := range r.values {
		if strings.HasPrefix(k, f.Path) {
			out[k] = providers.Value{Data: []byte(v)}
		}
	}
	return out, nil
}

func (c *tenantClient) Close(context.Context) error { return nil }

// tenantWorld is a resolver with a real cache and credential reader over
// a fake kube-apiserver holding one credential Secret per namespace.
type tenantWorld struct {
	remote   *remoteSystem
	kube     *fake.Clientset
	clock    *clocktesting.FakeClock
	resolver *Resolver
}

func newTenantWorld(t *testing.T, remote *remoteSystem, cfg cache.Config, tokens map[string]string) *tenantWorld {
	t.Helper()
	kube := fake.NewClientset()
	for ns, token := range tokens {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, Data: map[string][]byte{"token": []byte(token)}}
		if _, err := kube.CoreV1().Secrets(ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	clk := clocktesting.NewFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	cfg.Clock = clk
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 20
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = 24 * time.Hour
	}
	values, err := cache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &tenantWorld{remote: remote, kube: kube, clock: clk, resolver: &Resolver{
		// A credential TTL of 0 re-reads credentials on every request, as
		// the end of --credential-cache-ttl would.
		Clients:                stores.NewClients(credentials.NewReader(kube, 0), providers.Env{}),
		Clock:                  clk,
		Cache:                  values,
		DefaultRefreshInterval: time.Hour,
	}}
}

// storeIn is the SecretStore "vault" of a namespace, through the remote system.
func (w *tenantWorld) storeIn(ns string) *stores.Store {
	return &stores.Store{
		Store:    providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: ns, Name: "vault", Generation: 1, Spec: &configv1alpha1.SecretStoreSpec{}},
		UID:      types.UID("uid-vault-" + ns),
		Provider: tenantProvider{w.remote},
	}
}

func (w *tenantWorld) setToken(t *testing.T, ns, token string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, Data: map[string][]byte{"token": []byte(token)}}
	if _, err := w.kube.CoreV1().Secrets(ns).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (w *tenantWorld) read(ctx context.Context, es *configv1alpha1.ExternalSecret, store *stores.Store) (*externalsecrets.ExternalSecretValue, error) {
	return w.resolver.read(ctx, es, store)
}

func (w *tenantWorld) mustRead(t *testing.T, es *configv1alpha1.ExternalSecret, store *stores.Store) *externalsecrets.ExternalSecretValue {
	t.Helper()
	v, err := w.read(context.Background(), es, store)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func externalSecretOf(ns, name string, refresh *time.Duration, data ...configv1alpha1.ExternalSecretData) *configv1alpha1.ExternalSecret {
	es := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(configv1alpha1.SecretStoreRef{Name: "vault"}), Data: data},
	}
	if refresh != nil {
		es.Spec.RefreshInterval = &metav1.Duration{Duration: *refresh}
	}
	return es
}

func remoteRef(secretKey, key, property string) configv1alpha1.ExternalSecretData {
	return configv1alpha1.ExternalSecretData{SecretKey: secretKey, RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: key, Property: property}}
}

func ptrTo[T any](v T) *T { return &v }

// TestTenantsNeverShareEntries: two stores in two namespaces reach the same
// remote key with different credentials. Each has its own entry, read with
// its own token, and each reads it once however often it is read.
func TestTenantsNeverShareEntries(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"shared/db": "value"}, "token-a", "token-b")
	w := newTenantWorld(t, remote, cache.Config{}, map[string]string{"team-a": "token-a", "team-b": "token-b"})
	a, b := w.storeIn("team-a"), w.storeIn("team-b")
	esA := externalSecretOf("team-a", "db", nil, remoteRef("password", "shared/db", ""))
	esB := externalSecretOf("team-b", "db", nil, remoteRef("password", "shared/db", ""))

	for range 3 {
		if v := w.mustRead(t, esA, a); string(v.Data["password"]) != "value" {
			t.Fatalf("team-a read %q", v.Data["password"])
		}
	}
	if n := remote.getsBy("token-b"); n != 0 {
		t.Fatalf("team-b's token was used %d times before team-b read anything", n)
	}
	for range 3 {
		if v := w.mustRead(t, esB, b); string(v.Data["password"]) != "value" {
			t.Fatalf("team-b read %q", v.Data["password"])
		}
	}
	if ga, gb := remote.getsBy("token-a"), remote.getsBy("token-b"); ga != 1 || gb != 1 {
		t.Errorf("reads by token: team-a %d, team-b %d; want one entry each, read once each", ga, gb)
	}
}

// TestCredentialChangeEndsCachedAccess: once a store's credential changes,
// its old entries are unreachable — a credential that lost access gets the
// provider's refusal, and no credential gets the old value in place of an
// unavailable provider.
func TestCredentialChangeEndsCachedAccess(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"app/db": "old-value"}, "token-a", "token-a2")
	w := newTenantWorld(t, remote, cache.Config{MaxStale: 24 * time.Hour}, map[string]string{"team-a": "token-a"})
	store := w.storeIn("team-a")
	es := externalSecretOf("team-a", "db", ptrTo(time.Hour), remoteRef("password", "app/db", ""))
	w.mustRead(t, es, store)

	w.setToken(t, "team-a", "token-revoked")
	v, err := w.read(context.Background(), es, store)
	if providers.ReasonOf(err) != providers.Forbidden || v != nil {
		t.Fatalf("after the credential lost access: value served %v, error %v; want Forbidden and no value", v != nil, err)
	}
	if remote.getsBy("token-revoked") != 1 {
		t.Errorf("the new credential was not tried against the provider")
	}

	w.setToken(t, "team-a", "token-a2")
	remote.update(func(r *remoteSystem) { r.down = true })
	v, err = w.read(context.Background(), es, store)
	if providers.ReasonOf(err) != providers.Unavailable || v != nil {
		t.Fatalf("new credential, provider down: value served %v, error %v; want Unavailable and not the value cached under the old credential", v != nil, err)
	}
}

// TestPropertiesOfOneSecretCostOneRead: the cache key leaves out the
// property, so every property of one remote value, in any ExternalSecret
// reading through the store, comes from one provider call.
func TestPropertiesOfOneSecretCostOneRead(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"app/db": `{"user":"app","pass":"pw"}`}, "t")
	w := newTenantWorld(t, remote, cache.Config{}, map[string]string{"app": "t"})
	store := w.storeIn("app")
	both := externalSecretOf("app", "both", nil, remoteRef("user", "app/db", "user"), remoteRef("pass", "app/db", "pass"))
	whole := externalSecretOf("app", "whole", nil, remoteRef("json", "app/db", ""))
	extract := externalSecretOf("app", "extract", nil)
	extract.Spec.DataFrom = []configv1alpha1.ExternalSecretDataFromRemoteRef{{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: "app/db"}}}

	if v := w.mustRead(t, both, store); string(v.Data["user"]) != "app" || string(v.Data["pass"]) != "pw" {
		t.Errorf("properties: %q %q", v.Data["user"], v.Data["pass"])
	}
	if v := w.mustRead(t, whole, store); string(v.Data["json"]) != `{"user":"app","pass":"pw"}` {
		t.Errorf("whole value: %q", v.Data["json"])
	}
	if v := w.mustRead(t, extract, store); string(v.Data["user"]) != "app" || string(v.Data["pass"]) != "pw" {
		t.Errorf("extract: %v keys", len(v.Data))
	}
	if n := remote.getsBy("t"); n != 1 {
		t.Errorf("%d provider reads, want 1", n)
	}
}

func TestFindResultsAreCached(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"app/a": "A", "app/b": "B", "other/c": "C"}, "t")
	w := newTenantWorld(t, remote, cache.Config{}, map[string]string{"app": "t"})
	store := w.storeIn("app")
	find := func(path string) *configv1alpha1.ExternalSecret {
		es := externalSecretOf("app", "found", nil)
		es.Spec.DataFrom = []configv1alpha1.ExternalSecretDataFromRemoteRef{{Find: &configv1alpha1.ExternalSecretFind{Path: &path}}}
		return es
	}
	for range 3 {
		if v := w.mustRead(t, find("app/"), store); len(v.Data) != 2 || string(v.Data["app_a"]) != "A" || string(v.Data["app_b"]) != "B" {
			t.Fatalf("find app/: %d keys", len(v.Data))
		}
	}
	if v := w.mustRead(t, find("other/"), store); len(v.Data) != 1 || string(v.Data["other_c"]) != "C" {
		t.Fatalf("find other/: %d keys", len(v.Data))
	}
	remote.mu.Lock()
	defer remote.mu.Unlock()
	if remote.finds != 2 {
		t.Errorf("%d provider finds for two distinct finds read four times, want 2", remote.finds)
	}
}

// TestFetchTimeIsTheOldestValueServed: FETCHED in the table shows how old
// the answer's oldest value is.
func TestFetchTimeIsTheOldestValueServed(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"a": "A", "b": "B"}, "t")
	w := newTenantWorld(t, remote, cache.Config{}, map[string]string{"app": "t"})
	store := w.storeIn("app")
	start := w.clock.Now()
	w.mustRead(t, externalSecretOf("app", "one", nil, remoteRef("a", "a", "")), store)

	w.clock.Step(10 * time.Minute)
	v := w.mustRead(t, externalSecretOf("app", "two", nil, remoteRef("a", "a", ""), remoteRef("b", "b", "")), store)
	if !v.Source.FetchTime.Time.Equal(start) {
		t.Errorf("fetchTime %v, want the oldest value's %v", v.Source.FetchTime.Time, start)
	}
	if n := remote.getsBy("t"); n != 2 {
		t.Errorf("%d provider reads, want 2 (b only on the second read)", n)
	}
}

func TestRefreshIntervalPrecedence(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"a": "A"}, "t")
	w := newTenantWorld(t, remote, cache.Config{}, map[string]string{"app": "t"})
	store := w.storeIn("app")
	plain := externalSecretOf("app", "plain", nil, remoteRef("a", "a", ""))

	// --default-refresh-interval (1h) applies when nothing else is set.
	w.mustRead(t, plain, store)
	w.clock.Step(15 * time.Minute)
	w.mustRead(t, plain, store)
	if n := remote.getsBy("t"); n != 1 {
		t.Fatalf("with the 1h default, a 15m-old value was refetched (%d reads)", n)
	}
	// The store's defaultRefreshInterval wins over the flag.
	store.Spec.DefaultRefreshInterval = &metav1.Duration{Duration: 10 * time.Minute}
	w.mustRead(t, plain, store)
	if n := remote.getsBy("t"); n != 2 {
		t.Fatalf("with the store's 10m, a 15m-old value was served (%d reads)", n)
	}
	// The ExternalSecret's refreshInterval wins over the store's.
	w.clock.Step(5 * time.Minute)
	w.mustRead(t, externalSecretOf("app", "strict", ptrTo(time.Minute), remoteRef("a", "a", "")), store)
	if n := remote.getsBy("t"); n != 3 {
		t.Fatalf("with the ExternalSecret's 1m, a 5m-old value was served (%d reads)", n)
	}
}

type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) AddWarning(_, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

// TestStaleValueIsServedWithAWarning, within --max-stale, and after it the
// read fails with 503 saying why.
func TestStaleValueIsServedWithAWarning(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"app/db": "v1"}, "t")
	w := newTenantWorld(t, remote, cache.Config{MaxStale: time.Hour}, map[string]string{"app": "t"})
	store := w.storeIn("app")
	es := externalSecretOf("app", "db", ptrTo(time.Minute), remoteRef("password", "app/db", ""))
	start := w.clock.Now()
	w.mustRead(t, es, store)

	remote.update(func(r *remoteSystem) { r.down = true })
	w.clock.Step(5 * time.Minute)
	rec := &warnings{}
	v, err := w.read(warning.WithWarningRecorder(context.Background(), rec), es, store)
	if err != nil || string(v.Data["password"]) != "v1" || !v.Source.FetchTime.Time.Equal(start) {
		t.Fatalf("within --max-stale: %v; want the value read at %v", err, start)
	}
	if len(rec.list) != 1 || !strings.Contains(rec.list[0], `ExternalSecret app/db: remote key "app/db" is served as read 5m0s ago`) ||
		!strings.Contains(rec.list[0], "connection refused") || strings.Contains(rec.list[0], "v1") {
		t.Errorf("warnings %q, want one naming the key, the age and the failure, and no value", rec.list)
	}

	w.clock.Step(time.Hour)
	_, err = w.read(context.Background(), es, store)
	apiErr := registry.APIError(externalsecrets.Resource("externalsecretvalues"), "db", err)
	if !apierrors.IsServiceUnavailable(apiErr) || !strings.Contains(apiErr.Error(), "is older than veil-apiserver's --max-stale (1h0m0s)") {
		t.Errorf("beyond --max-stale: %v, want 503 naming --max-stale", apiErr)
	}
}

// TestRefreshIntervalZeroAndFloor: refreshInterval 0 reads once and serves
// that value for as long as the cache keeps it (ESO's meaning), and no
// refreshInterval reads more often than --min-refresh-interval.
func TestRefreshIntervalZeroAndFloor(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"a": "A"}, "t")
	w := newTenantWorld(t, remote, cache.Config{MaxTTL: 6 * time.Hour}, map[string]string{"app": "t"})
	w.resolver.MinRefreshInterval = 10 * time.Second
	store := w.storeIn("app")

	once := externalSecretOf("app", "once", ptrTo(time.Duration(0)), remoteRef("a", "a", ""))
	w.mustRead(t, once, store)
	w.clock.Step(5 * time.Hour)
	w.mustRead(t, once, store)
	if n := remote.getsBy("t"); n != 1 {
		t.Fatalf("refreshInterval 0 read the provider %d times in 5h, want once", n)
	}
	// Up to --cache-max-ttl, and no longer.
	w.clock.Step(time.Hour)
	w.mustRead(t, once, store)
	if n := remote.getsBy("t"); n != 2 {
		t.Fatalf("refreshInterval 0 read %d times after --cache-max-ttl, want 2", n)
	}
	// A store's defaultRefreshInterval of 0 means the same.
	store.Spec.DefaultRefreshInterval = &metav1.Duration{}
	w.clock.Step(time.Hour)
	w.mustRead(t, externalSecretOf("app", "plain", nil, remoteRef("a", "a", "")), store)
	if n := remote.getsBy("t"); n != 2 {
		t.Fatalf("the store's defaultRefreshInterval 0 refreshed (%d reads)", n)
	}

	// 1ms is raised to the 10s floor.
	eager := externalSecretOf("app", "eager", ptrTo(time.Millisecond), remoteRef("a", "a", ""))
	w.mustRead(t, eager, store) // the value is an hour old: read again
	w.clock.Step(9 * time.Second)
	w.mustRead(t, eager, store)
	if n := remote.getsBy("t"); n != 3 {
		t.Fatalf("a 9s-old value was refetched for a 1ms refreshInterval under a 10s floor (%d reads)", n)
	}
	w.clock.Step(time.Second)
	w.mustRead(t, eager, store)
	if n := remote.getsBy("t"); n != 4 {
		t.Fatalf("a 10s-old value was served at the 10s floor (%d reads)", n)
	}
}

// TestThrottledReadsServeTheLastValue: a read the limiter refuses is
// answered with the cached value when it is younger than --max-stale, with
// a warning, and otherwise fails as Throttled with a retry delay; the
// provider is not called either way.
func TestThrottledReadsServeTheLastValue(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"a": "A"}, "t")
	w := newTenantWorld(t, remote, cache.Config{MaxStale: time.Hour}, map[string]string{"app": "t"})
	w.resolver.Clients.Limiter = throttle.New(throttle.Limits{QPS: 1e-9, Burst: 1, NamespaceShare: 1}, w.clock)
	store := w.storeIn("app")
	es := externalSecretOf("app", "es", ptrTo(time.Minute), remoteRef("a", "a", ""))
	w.mustRead(t, es, store)

	w.clock.Step(10 * time.Minute)
	var warned warnings
	ctx := warning.WithWarningRecorder(context.Background(), &warned)
	v, err := w.read(ctx, es, store)
	if err != nil {
		t.Fatalf("a throttled read with a 10m-old value and --max-stale 1h: %v", err)
	}
	if string(v.Data["a"]) != "A" || len(warned.list) != 1 || !strings.Contains(warned.list[0], "could not be read") {
		t.Errorf("served %q with warnings %q", v.Data["a"], warned.list)
	}

	w.clock.Step(time.Hour)
	_, err = w.read(context.Background(), es, store)
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Reason != providers.Throttled || pe.RetryAfter < time.Second {
		t.Fatalf("a throttled read with a value older than --max-stale: %v, want Throttled with a delay", err)
	}
	if se := registry.APIError(schema.GroupResource{Resource: "externalsecretvalues"}, "es", err); !apierrors.IsTooManyRequests(se) {
		t.Errorf("as an API error: %v, want 429", se)
	} else if s, ok := apierrors.SuggestsClientDelay(se); !ok || s < 1 {
		t.Errorf("the 429 suggests no delay")
	}
	if n := remote.getsBy("t"); n != 1 {
		t.Errorf("the provider saw %d reads, want 1: throttled reads must not reach it", n)
	}
}

// TestRecordedChangeIsReadAgain: a value change recorded in an
// ExternalSecret's status (by another replica, a push or detection) makes
// this process read again what it cached before it saw the change, once,
// however long the refresh interval; values read after are served from
// the cache again.
func TestRecordedChangeIsReadAgain(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"a": "A1"}, "t")
	w := newTenantWorld(t, remote, cache.Config{}, map[string]string{"app": "t"})
	w.resolver.Changes = changes.NewSeen(w.clock, 24*time.Hour)
	store := w.storeIn("app")
	es := externalSecretOf("app", "es", ptrTo(time.Hour), remoteRef("a", "a", ""))
	es.UID = "uid-es"
	if v := w.mustRead(t, es, store); string(v.Data["a"]) != "A1" {
		t.Fatalf("first read: %q", v.Data["a"])
	}

	remote.update(func(r *remoteSystem) { r.values["a"] = "A2" })
	w.clock.Step(time.Second)
	if v := w.mustRead(t, es, store); string(v.Data["a"]) != "A1" {
		t.Fatalf("with no change recorded the cached value is served within the refresh interval; got %q", v.Data["a"])
	}

	es.Status.LastValueChange = &configv1alpha1.ValueChange{ID: "c1", Cause: configv1alpha1.ValueChangeDetected}
	w.clock.Step(time.Second)
	if v := w.mustRead(t, es, store); string(v.Data["a"]) != "A2" {
		t.Fatalf("after a recorded change: %q, want the provider's new value", v.Data["a"])
	}
	w.clock.Step(time.Second)
	w.mustRead(t, es, store)
	if n := remote.getsBy("t"); n != 2 {
		t.Errorf("the provider was read %d times, want 2: once first, once after the change, and the cache after", n)
	}

	// Another ExternalSecret reading the same key, marked with the same
	// change (one Mark gives all its readers one ID), is served the value
	// read after the change: a change costs one read a key, not one a
	// reader.
	other := externalSecretOf("app", "other", ptrTo(time.Hour), remoteRef("a", "a", ""))
	other.UID = "uid-other"
	other.Status.LastValueChange = es.Status.LastValueChange
	if v := w.mustRead(t, other, store); string(v.Data["a"]) != "A2" {
		t.Fatalf("other: %q", v.Data["a"])
	}
	if n := remote.getsBy("t"); n != 2 {
		t.Errorf("the provider was read %d times, want still 2", n)
	}
}

// TestReadOnceIgnoresRecordedChanges: refreshInterval 0 means read once;
// a change recorded in the status does not make it read again.
func TestReadOnceIgnoresRecordedChanges(t *testing.T) {
	remote := newRemoteSystem(map[string]string{"a": "A1"}, "t")
	w := newTenantWorld(t, remote, cache.Config{}, map[string]string{"app": "t"})
	w.resolver.Changes = changes.NewSeen(w.clock, 24*time.Hour)
	store := w.storeIn("app")
	es := externalSecretOf("app", "once", ptrTo(time.Duration(0)), remoteRef("a", "a", ""))
	w.mustRead(t, es, store)
	remote.update(func(r *remoteSystem) { r.values["a"] = "A2" })
	es.Status.LastValueChange = &configv1alpha1.ValueChange{ID: "c1", Cause: configv1alpha1.ValueChangeDetected}
	w.clock.Step(time.Minute)
	if v := w.mustRead(t, es, store); string(v.Data["a"]) != "A1" {
		t.Errorf("refreshInterval 0 with a recorded change read %q, want the value read once", v.Data["a"])
	}
	if n := remote.getsBy("t"); n != 1 {
		t.Errorf("%d provider reads, want 1", n)
	}
}

// read reads the values of es, every entry through store, as the tests
// here did before entries could name their own stores.
func (r *Resolver) read(ctx context.Context, es *configv1alpha1.ExternalSecret, store *stores.Store) (*externalsecrets.ExternalSecretValue, error) {
	ref := configv1alpha1.SecretStoreRef{Kind: store.Kind, Name: store.Name}
	es = es.DeepCopy()
	es.Spec.SecretStoreRef = &ref
	for i := range es.Spec.Data {
		es.Spec.Data[i].SourceRef = nil
	}
	for i := range es.Spec.DataFrom {
		es.Spec.DataFrom[i].SourceRef = nil
	}
	return r.readFrom(ctx, es, []storeRead{{ref: ref.Normalized(), store: store}})
}
