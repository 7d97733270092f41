package externalsecretvalue

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/metrics/testutil"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

// rbac allows "admin" every value and "narrow" only the value named db,
// as a Role with resourceNames would.
var rbac = authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if a.GetVerb() != "get" || a.GetResource() != "externalsecretvalues" || a.GetAPIGroup() != externalsecrets.GroupName {
		return authorizer.DecisionNoOpinion, "", nil
	}
	switch {
	case a.GetUser().GetName() == "admin":
		return authorizer.DecisionAllow, "", nil
	case a.GetUser().GetName() == "narrow" && a.GetName() == "db":
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
})

// watchREST serves watches from upstreams the test drives: each watch the
// REST makes in "kube-apiserver" is the next fake watcher sent on the
// returned channel, with the options it was made with.
func watchREST(t *testing.T, r resolver, maxWatches int) (*REST, chan *watch.FakeWatcher, chan metav1.ListOptions) {
	t.Helper()
	client := fake.NewSimpleClientset()
	upstreams, options := make(chan *watch.FakeWatcher, 10), make(chan metav1.ListOptions, 10)
	client.PrependWatchReactor("externalsecrets", func(action clienttesting.Action) (bool, watch.Interface, error) {
		w := watch.NewFakeWithChanSize(10, false)
		upstreams <- w
		options <- action.(clienttesting.WatchActionImpl).ListOptions
		return true, w, nil
	})
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	return NewREST(configlisters.NewExternalSecretLister(idx), client.ConfigV1alpha1(), r, Options{Authorizer: rbac, MaxWatchesPerNamespace: maxWatches}),
		upstreams, options
}

func as(ctx context.Context, name string) context.Context {
	return genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: name})
}

func esAt(name, rv string, lbls map[string]string) *configv1alpha1.ExternalSecret {
	e := es("app", name, lbls)
	e.ResourceVersion, e.UID = rv, k8stypes.UID("uid-"+name)
	return e
}

// closeWhenDone stops w when the test ends and waits until it has let go
// of its place (it does before closing its channel), so the next test
// reads veil_value_watches without it.
func closeWhenDone(t *testing.T, w watch.Interface) {
	t.Cleanup(func() {
		w.Stop()
		for range w.ResultChan() {
		}
	})
}

func next(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	ev, ok := <-w.ResultChan()
	if !ok {
		t.Fatal("the watch ended")
	}
	return ev
}

func value(t *testing.T, ev watch.Event) *externalsecrets.ExternalSecretValue {
	t.Helper()
	v, ok := ev.Object.(*externalsecrets.ExternalSecretValue)
	if !ok {
		t.Fatalf("%s event carries %T, not an ExternalSecretValue", ev.Type, ev.Object)
	}
	return v
}

func counter(t *testing.T, event string) float64 {
	t.Helper()
	metrics.Register()
	n, err := testutil.GetCounterMetricValue(metrics.ValueWatchEvents.WithLabelValues(event))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWatchTranslatesExternalSecretEvents(t *testing.T) {
	r, upstreams, options := watchREST(t, resolver{}, 0)
	yes := true
	w, err := r.Watch(as(inNamespace("app"), "admin"), &metainternalversion.ListOptions{ResourceVersion: "4", AllowWatchBookmarks: true, SendInitialEvents: &yes})
	if err != nil {
		t.Fatal(err)
	}
	closeWhenDone(t, w)
	up, lo := <-upstreams, <-options
	if !lo.Watch || lo.ResourceVersion != "4" || !lo.AllowWatchBookmarks || lo.SendInitialEvents == nil || !*lo.SendInitialEvents {
		t.Errorf("the watch of ExternalSecrets was not made with the watcher's options: %+v", lo)
	}

	up.Add(esAt("db", "5", nil))
	ev := next(t, w)
	if v := value(t, ev); ev.Type != watch.Added || v.Name != "db" || v.ResourceVersion != "5" || v.UID != "uid-db" || string(v.Data["password"]) != secretValue {
		t.Fatalf("ADDED: got %s %+v", ev.Type, v.ObjectMeta)
	}

	// A status write by veil-syncer changes nothing a watcher sees: not
	// sent. The next change is what comes next.
	unchanged := counter(t, "skipped_unchanged")
	up.Modify(esAt("db", "6", nil))
	up.Modify(esAt("db", "7", map[string]string{"team": "a"}))
	ev = next(t, w)
	if v := value(t, ev); ev.Type != watch.Modified || v.ResourceVersion != "7" || v.Labels["team"] != "a" {
		t.Fatalf("MODIFIED: got %s %+v", ev.Type, v.ObjectMeta)
	}
	if got := counter(t, "skipped_unchanged"); got != unchanged+1 {
		t.Errorf("skipped_unchanged went from %v to %v, want one more", unchanged, got)
	}

	// Bookmarks keep the version and the annotation that ends a
	// WatchList's initial events, and carry no value.
	bm := &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "8", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
	up.Action(watch.Bookmark, bm)
	ev = next(t, w)
	if v := value(t, ev); ev.Type != watch.Bookmark || v.ResourceVersion != "8" || v.Annotations[metav1.InitialEventsAnnotationKey] != "true" || v.Data != nil || v.Name != "" {
		t.Fatalf("BOOKMARK: got %s %+v data %d", ev.Type, v.ObjectMeta, len(v.Data))
	}

	up.Delete(esAt("db", "9", nil))
	ev = next(t, w)
	if v := value(t, ev); ev.Type != watch.Deleted || v.Name != "db" || v.ResourceVersion != "9" || v.Data != nil {
		t.Fatalf("DELETED: got %s %+v", ev.Type, v.ObjectMeta)
	}

	// kube-apiserver's 410 Gone is the watcher's to see.
	gone := apierrors.NewResourceExpired("too old resource version: 1 (9)").Status()
	up.Error(&gone)
	ev = next(t, w)
	if s, ok := ev.Object.(*metav1.Status); ev.Type != watch.Error || !ok || s.Code != 410 {
		t.Fatalf("ERROR: got %s %#v", ev.Type, ev.Object)
	}

	// Stopping the watch stops the one it made.
	w.Stop()
	if _, ok := <-w.ResultChan(); ok {
		t.Error("the watch still sends after Stop")
	}
	if !up.IsStopped() {
		t.Error("the watch of ExternalSecrets was left open")
	}
}

func TestWatchSendsOnlyWhatTheWatcherMayGet(t *testing.T) {
	r, upstreams, _ := watchREST(t, resolver{fail: map[string]error{"broken": providers.Errorf(providers.NotFound, "no such key")}}, 0)
	w, err := r.Watch(as(inNamespace("app"), "narrow"), &metainternalversion.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	closeWhenDone(t, w)
	up := <-upstreams
	forbidden := counter(t, "skipped_forbidden")
	up.Add(esAt("web", "5", nil))
	up.Modify(esAt("web", "6", nil))
	up.Delete(esAt("web", "7", nil))
	up.Add(esAt("db", "8", nil))
	ev := next(t, w)
	if v := value(t, ev); ev.Type != watch.Added || v.Name != "db" {
		t.Fatalf("narrow, who may get only db, was sent %s %s", ev.Type, v.Name)
	}
	if got := counter(t, "skipped_forbidden"); got != forbidden+3 {
		t.Errorf("skipped_forbidden went from %v to %v, want 3 more", forbidden, got)
	}

	// A value that cannot be resolved is not sent; the next one is.
	r2, upstreams2, _ := watchREST(t, resolver{fail: map[string]error{"broken": providers.Errorf(providers.NotFound, "no such key")}}, 0)
	w2, err := r2.Watch(as(inNamespace("app"), "admin"), &metainternalversion.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	closeWhenDone(t, w2)
	up2 := <-upstreams2
	unresolvable := counter(t, "skipped_unresolvable")
	up2.Add(esAt("broken", "5", nil))
	up2.Add(esAt("db", "6", nil))
	if v := value(t, next(t, w2)); v.Name != "db" {
		t.Fatalf("got %s first, want db", v.Name)
	}
	if got := counter(t, "skipped_unresolvable"); got != unresolvable+1 {
		t.Errorf("skipped_unresolvable went from %v to %v, want one more", unresolvable, got)
	}
}

func TestWatchesPerNamespaceAreBounded(t *testing.T) {
	metrics.Register()
	r, _, _ := watchREST(t, resolver{}, 2)
	open := func(ns string) (watch.Interface, error) {
		w, err := r.Watch(as(inNamespace(ns), "admin"), &metainternalversion.ListOptions{})
		if err == nil {
			closeWhenDone(t, w)
		}
		return w, err
	}
	before, err := testutil.GetGaugeMetricValue(metrics.ValueWatches)
	if err != nil {
		t.Fatal(err)
	}
	first, err := open("app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open("app"); err != nil {
		t.Fatal(err)
	}
	_, err = open("app")
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("a third watch in a namespace allowed two: %v, want 429", err)
	}
	if d, ok := apierrors.SuggestsClientDelay(err); !ok || d <= 0 {
		t.Errorf("the 429 has no Retry-After: %v", err)
	}
	if got, _ := testutil.GetGaugeMetricValue(metrics.ValueWatches); got != before+2 {
		t.Errorf("veil_value_watches is %v, want %v", got, before+2)
	}
	// Other namespaces are not held up.
	if _, err := open("other"); err != nil {
		t.Fatalf("another namespace's watch: %v", err)
	}
	// A watch closed gives its place back (before its channel closes).
	first.Stop()
	for range first.ResultChan() {
	}
	if _, err := open("app"); err != nil {
		t.Fatalf("a watch after one was closed: %v", err)
	}
}

func TestWatchRefusesUnknownFields(t *testing.T) {
	r, _, _ := watchREST(t, resolver{}, 0)
	sel, err := fields.ParseSelector("spec.secretStoreRef.name=x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Watch(as(inNamespace("app"), "admin"), &metainternalversion.ListOptions{FieldSelector: sel}); !apierrors.IsBadRequest(err) {
		t.Fatalf("watch with an unsupported field selector: %v, want 400", err)
	}
}

func TestWatchNeedsAnAuthorizer(t *testing.T) {
	r := newREST(t, resolver{}, nil)
	_, err := r.Watch(as(inNamespace("app"), "admin"), &metainternalversion.ListOptions{})
	if !apierrors.IsMethodNotSupported(err) {
		t.Fatalf("a REST without an authorizer opened a watch whose events it could not check; err = %v", err)
	}
}
