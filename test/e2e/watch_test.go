package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	informers "github.com/veil-dev/veil/pkg/generated/informers/externalversions"
)

// kubectlLines runs kubectl (a watch) as the user of kubeconfig and sends
// its output line by line until the test ends.
func kubectlLines(t *testing.T, kubeconfig string, args ...string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxFor(t))
	cmd := exec.CommandContext(ctx, cluster.Kubectl(), append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	var done sync.WaitGroup
	done.Go(func() {
		defer close(lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
	})
	t.Cleanup(func() {
		cancel()
		done.Wait()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("kubectl %v said: %s", args, stderr.String())
		}
	})
	return lines
}

// nextLine returns the next line of lines, failing the test after 30 s.
func nextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("kubectl stopped watching")
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl printed nothing for 30s")
	}
	return ""
}

// nextEvent returns the next event of w, failing the test after 30 s.
func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("the watch ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event for 30s")
	}
	return watch.Event{}
}

// updateSpec changes an ExternalSecret's spec with f, retrying conflicts.
func updateSpec(t *testing.T, ns, name string, f func(*configv1alpha1.ExternalSecret)) *configv1alpha1.ExternalSecret {
	t.Helper()
	var out *configv1alpha1.ExternalSecret
	eventually(t, func() error {
		es, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		f(es)
		out, err = cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Update(ctxFor(t), es, metav1.UpdateOptions{})
		return err
	})
	return out
}

// TestKubectlWatchesValues: kubectl get esv -w, as a user who may read
// values, sees a value added, changed and deleted, and never a value.
func TestKubectlWatchesValues(t *testing.T) {
	canary := unique("watch-canary-")
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: canary})
	user := "watcher-" + ns
	bind(t, ns, user, "veil:values-reader")
	kubeconfig, err := cluster.UserKubeconfig(user)
	if err != nil {
		t.Fatal(err)
	}
	lines := kubectlLines(t, kubeconfig, "get", "esv", "-n", ns, "-w", "--output-watch-events")
	createExternalSecret(t, ns, "db", storeRef("store"), nil, dataRef("one", "k", ""))

	expect := func(event, keys string) {
		t.Helper()
		for {
			l := nextLine(t, lines)
			if strings.Contains(l, canary) {
				t.Fatalf("kubectl printed a value: %q", l)
			}
			f := strings.Fields(l)
			if len(f) >= 4 && f[0] == event && f[1] == "db" {
				if f[3] != keys {
					t.Fatalf("%s db shows %s keys, want %s: %q", event, f[3], keys, l)
				}
				return
			}
			if len(f) > 0 && f[0] != "EVENT" {
				t.Fatalf("unexpected line while waiting for %s db: %q", event, l)
			}
		}
	}
	expect("ADDED", "1")
	updateSpec(t, ns, "db", func(es *configv1alpha1.ExternalSecret) {
		es.Spec.Data = append(es.Spec.Data, dataRef("two", "k", ""))
	})
	expect("MODIFIED", "2")
	if err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Delete(ctxFor(t), "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A deletion carries no values.
	expect("DELETED", "0")
}

// TestValueResourceVersionsAreEtcds: a value's resource version is its
// ExternalSecret's, an integer; a list's lets a watch resume from it; a
// resume from a version long gone is 410 Gone; WatchList's initial events
// end with kube-apiserver's bookmark.
func TestValueResourceVersionsAreEtcds(t *testing.T) {
	ctx := ctxFor(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	es := createExternalSecret(t, ns, "db", storeRef("store"), nil, dataRef("v", "k", ""))
	values := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns)
	var v *esv1alpha1.ExternalSecretValue
	eventually(t, func() (err error) { v, err = values.Get(ctx, "db", metav1.GetOptions{}); return err })
	if v.ResourceVersion != es.ResourceVersion || v.UID != es.UID {
		t.Errorf("value db has resourceVersion %q uid %q, its ExternalSecret %q %q", v.ResourceVersion, v.UID, es.ResourceVersion, es.UID)
	}
	if _, err := strconv.ParseUint(v.ResourceVersion, 10, 64); err != nil {
		t.Errorf("resourceVersion %q is not an integer", v.ResourceVersion)
	}

	// Once the list has db, its version is no older than db's.
	var list *esv1alpha1.ExternalSecretValueList
	eventually(t, func() (err error) {
		if list, err = values.List(ctx, metav1.ListOptions{}); err == nil && len(list.Items) != 1 {
			err = fmt.Errorf("the list has %d values, want db", len(list.Items))
		}
		return err
	})
	if mustUint(t, list.ResourceVersion) < mustUint(t, es.ResourceVersion) {
		t.Fatalf("list resourceVersion %s is older than db's %s", list.ResourceVersion, es.ResourceVersion)
	}
	w, err := values.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	changed := updateSpec(t, ns, "db", func(es *configv1alpha1.ExternalSecret) {
		es.Spec.Data = append(es.Spec.Data, dataRef("w", "k", ""))
	})
	for {
		ev := nextEvent(t, w)
		got, ok := ev.Object.(*esv1alpha1.ExternalSecretValue)
		if !ok {
			t.Fatalf("%s event with %#v", ev.Type, ev.Object)
		}
		if ev.Type == watch.Modified && got.ResourceVersion == changed.ResourceVersion {
			if string(got.Data["w"]) != "v" {
				t.Errorf("the change came without its value")
			}
			break
		}
	}

	// Version 1 is long compacted out of kube-apiserver's window.
	gone, err := values.Watch(ctx, metav1.ListOptions{ResourceVersion: "1"})
	if err == nil {
		ev := nextEvent(t, gone)
		gone.Stop()
		if st, ok := ev.Object.(*metav1.Status); ev.Type != watch.Error || !ok || st.Code != 410 {
			t.Fatalf("a watch from resourceVersion 1 got %s %#v, want 410 Gone", ev.Type, ev.Object)
		}
	} else if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("a watch from resourceVersion 1: %v, want 410 Gone", err)
	}

	// WatchList: the current values, then a bookmark that says so.
	wl, err := values.Watch(ctx, metav1.ListOptions{
		SendInitialEvents: ptr.To(true), AllowWatchBookmarks: true,
		ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer wl.Stop()
	if ev := nextEvent(t, wl); ev.Type != watch.Added || ev.Object.(*esv1alpha1.ExternalSecretValue).Name != "db" {
		t.Fatalf("WatchList began with %s %#v", ev.Type, ev.Object)
	}
	ev := nextEvent(t, wl)
	bm, ok := ev.Object.(*esv1alpha1.ExternalSecretValue)
	if ev.Type != watch.Bookmark || !ok || bm.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("after the initial events: %s %#v, want the bookmark that ends them", ev.Type, ev.Object)
	}
	if len(bm.Data) != 0 || mustUint(t, bm.ResourceVersion) < mustUint(t, changed.ResourceVersion) {
		t.Errorf("bookmark: data %d, resourceVersion %s (want none and at least %s)", len(bm.Data), bm.ResourceVersion, changed.ResourceVersion)
	}
}

func mustUint(t *testing.T, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q is not an integer", s)
	}
	return n
}

// valueInformer runs an informer of the values of ns as client, and
// returns its lister's view of name once the informer has synced.
func valueInformer(t *testing.T, client versioned.Interface, ns string) (get func(name string) (*esv1alpha1.ExternalSecretValue, error)) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxFor(t))
	t.Cleanup(cancel)
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	inf := f.Externalsecrets().V1alpha1().ExternalSecretValues()
	lister := inf.Lister()
	f.Start(ctx.Done())
	synced := make(chan bool)
	go func() { synced <- cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) }()
	select {
	case ok := <-synced:
		if !ok {
			t.Fatal("the informer of values never synced")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the informer of values did not sync in 30s")
	}
	return func(name string) (*esv1alpha1.ExternalSecretValue, error) {
		return lister.ExternalSecretValues(ns).Get(name)
	}
}

// TestValueInformers: client-go informers follow values, by WatchList
// when veil-apiserver serves it (client-go's default), and by list and
// watch when it refuses it.
func TestValueInformers(t *testing.T) {
	run := func(t *testing.T) {
		ns := newNamespace(t, nil)
		createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "a", Value: "first"}, configv1alpha1.FakeProviderData{Key: "b", Value: "second"})
		createExternalSecret(t, ns, "db", storeRef("store"), nil, dataRef("v", "a", ""))
		user := "informer-" + ns
		bind(t, ns, user, "veil:values-reader")
		get := valueInformer(t, userClient(t, user), ns)
		eventually(t, func() error {
			v, err := get("db")
			if err == nil && string(v.Data["v"]) != "first" {
				return fmt.Errorf("db has %d bytes, want the first value", len(v.Data["v"]))
			}
			return err
		})
		updateSpec(t, ns, "db", func(es *configv1alpha1.ExternalSecret) { es.Spec.Data[0].RemoteRef.Key = "b" })
		eventually(t, func() error {
			v, err := get("db")
			if err == nil && string(v.Data["v"]) != "second" {
				return fmt.Errorf("db still has the first value")
			}
			return err
		})
		if err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Delete(ctxFor(t), "db", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() error {
			if _, err := get("db"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("db is still in the informer (%v)", err)
			}
			return nil
		})
	}
	t.Run("WatchList", func(t *testing.T) {
		// Served: a WatchList request gets its initial events.
		w, err := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues("default").Watch(ctxFor(t), metav1.ListOptions{
			SendInitialEvents: ptr.To(true), AllowWatchBookmarks: true, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
		if err != nil {
			t.Fatalf("veil-apiserver refused a WatchList request: %v", err)
		}
		w.Stop()
		run(t)
	})
	t.Run("ListAndWatch", func(t *testing.T) {
		restartVeil(t, append(append([]string(nil), veilArgs...), "--feature-gates=WatchList=false")...)
		// Refused, so that client-go falls back to list and watch.
		_, err := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues("default").Watch(ctxFor(t), metav1.ListOptions{
			SendInitialEvents: ptr.To(true), AllowWatchBookmarks: true, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
		if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
			t.Fatalf("with WatchList off, a WatchList request got %v, want it refused", err)
		}
		run(t)
	})
}

// TestWatchersSeeOnlyWhatTheyMayGet: a watch is sent only the values its
// user may get, and a user granted one value by resourceNames can watch
// that one by name.
func TestWatchersSeeOnlyWhatTheyMayGet(t *testing.T) {
	ctx := ctxFor(t)
	canary := unique("watch-other-canary-")
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "mine", Value: "mine"}, configv1alpha1.FakeProviderData{Key: "other", Value: canary})
	grant := func(user string, rules ...rbacv1.PolicyRule) versioned.Interface {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns}, Rules: rules}
		if _, err := cluster.KubeClient.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: user},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
		}
		if _, err := cluster.KubeClient.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return userClient(t, user)
	}
	esv := func(verbs []string, names ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{APIGroups: []string{"externalsecrets.veil.dev"}, Resources: []string{"externalsecretvalues"}, Verbs: verbs, ResourceNames: names}
	}
	// wide may watch every value but get only db.
	wide := grant("wide-"+ns, esv([]string{"watch"}), esv([]string{"get"}, "db"))
	// narrow may get and watch db only.
	narrow := grant("narrow-"+ns, esv([]string{"get", "list", "watch"}, "db"))

	// RBAC reaches kube-apiserver's authorizer a moment after it is written.
	var wideWatch, narrowWatch watch.Interface
	eventually(t, func() (err error) {
		wideWatch, err = wide.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Watch(ctx, metav1.ListOptions{})
		return err
	})
	defer wideWatch.Stop()
	eventually(t, func() (err error) {
		narrowWatch, err = narrow.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=db"})
		return err
	})
	defer narrowWatch.Stop()
	// narrow cannot watch the namespace, only db by name.
	if _, err := narrow.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Watch(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("narrow watched every value of the namespace: %v", err)
	}

	createExternalSecret(t, ns, "other", storeRef("store"), nil, dataRef("v", "other", ""))
	createExternalSecret(t, ns, "db", storeRef("store"), nil, dataRef("v", "mine", ""))
	updateSpec(t, ns, "other", func(es *configv1alpha1.ExternalSecret) { es.Spec.Data[0].SecretKey = "w" })
	updateSpec(t, ns, "db", func(es *configv1alpha1.ExternalSecret) { es.Spec.Data[0].SecretKey = "w" })
	for name, w := range map[string]watch.Interface{"wide": wideWatch, "narrow": narrowWatch} {
		// Events come in the order of the writes: other's never come.
		for _, want := range []watch.EventType{watch.Added, watch.Modified} {
			ev := nextEvent(t, w)
			v, ok := ev.Object.(*esv1alpha1.ExternalSecretValue)
			if !ok || ev.Type != want || v.Name != "db" {
				t.Fatalf("%s was sent %s %#v, want %s db", name, ev.Type, ev.Object, want)
			}
		}
	}
}
