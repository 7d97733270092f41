package syncer

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
)

func feedValue(name, rv string, uid types.UID, data string) *esv1alpha1.ExternalSecretValue {
	return &esv1alpha1.ExternalSecretValue{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, ResourceVersion: rv, UID: uid},
		Data:       map[string][]byte{"v": []byte(data)},
	}
}

func feedES(name, rv string, uid types.UID) *configv1alpha1.ExternalSecret {
	return &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, ResourceVersion: rv, UID: uid}}
}

// newES is a new ExternalSecret whose values the watch sends.
func newES(name, rv string) *configv1alpha1.ExternalSecret {
	es := feedES(name, rv, types.UID("uid-"+name))
	es.Spec.Target = &configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyOwner}
	return es
}

func newTestFeed(maxBytes int) (*valueFeed, *clocktesting.FakeClock) {
	f := newValueFeed(nil, nil, nil, maxBytes)
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f.clock = clk
	return f, clk
}

// TestValueFeedTake: a held value is taken only by a sync of the same
// ExternalSecret no newer than it, once, and within heldFor.
func TestValueFeedTake(t *testing.T) {
	f, clk := newTestFeed(1 << 20)

	f.offer(feedValue("a", "10", "uid-a", "ten"))
	if v := f.take(feedES("a", "11", "uid-a")); v != nil {
		t.Error("values of version 10 were taken by a sync of version 11")
	}
	if f.bytes != 0 {
		t.Errorf("%d bytes still held after a sync that needed newer", f.bytes)
	}

	f.offer(feedValue("a", "12", "uid-a", "twelve"))
	if v := f.take(feedES("a", "12", "uid-b")); v != nil {
		t.Error("values of one ExternalSecret were taken for another of the same name (another UID)")
	}

	f.offer(feedValue("a", "13", "uid-a", "thirteen"))
	v := f.take(feedES("a", "12", "uid-a"))
	if v == nil || string(v.Data["v"]) != "thirteen" {
		t.Fatalf("a sync of version 12 did not take the values of version 13: %v", v)
	}
	if f.take(feedES("a", "12", "uid-a")) != nil {
		t.Error("held values were taken twice")
	}

	f.offer(feedValue("a", "14", "uid-a", "fourteen"))
	clk.Step(heldFor + time.Second)
	if f.take(feedES("a", "14", "uid-a")) != nil {
		t.Error("values held longer than heldFor were taken")
	}
}

// TestValueFeedStale: a value no newer than what a sync read is not held,
// and a read drops what it makes stale.
func TestValueFeedStale(t *testing.T) {
	f, _ := newTestFeed(1 << 20)
	f.noteRead("team/a", "20")
	f.offer(feedValue("a", "20", "uid-a", "old"))
	f.offer(feedValue("a", "19", "uid-a", "older"))
	if len(f.held) != 0 {
		t.Errorf("values no newer than the last read were held: %d", len(f.held))
	}
	f.offer(feedValue("a", "21", "uid-a", "new"))
	if len(f.held) != 1 {
		t.Fatal("newer values were not held")
	}
	f.noteRead("team/a", "22")
	if len(f.held) != 0 || f.bytes != 0 {
		t.Errorf("a read of version 22 left %d values (%d bytes) of version 21 held", len(f.held), f.bytes)
	}
	f.forget("team/a")
	if _, ok := f.read["team/a"]; ok {
		t.Error("a deleted ExternalSecret's last read is remembered")
	}
	f.offer(feedValue("a", "5", "uid-new", "recreated"))
	if len(f.held) != 1 {
		t.Error("after a delete, the values of a new ExternalSecret of the same name were not held")
	}
}

// TestValueFeedBudget: held values never add up to more than maxBytes;
// past it new ones are dropped (their syncs read by GET), and a value
// replaced or expired gives its bytes back.
func TestValueFeedBudget(t *testing.T) {
	big := strings.Repeat("x", 1000)
	size := valueSize(feedValue("a", "1", "u", big))
	f, clk := newTestFeed(3 * size)
	for i, name := range []string{"a", "b", "c", "d"} {
		f.offer(feedValue(name, "1"+strings.Repeat("0", i), types.UID(name), big))
	}
	if len(f.held) != 3 || f.bytes != 3*size {
		t.Fatalf("held %d values, %d bytes; want 3 and %d", len(f.held), f.bytes, 3*size)
	}
	if _, ok := f.held["team/d"]; ok {
		t.Error("a value over the budget was held")
	}
	// Replacing a held value does not count it twice.
	f.offer(feedValue("a", "50", "a", big))
	if f.bytes != 3*size {
		t.Errorf("%d bytes after replacing a held value, want %d", f.bytes, 3*size)
	}
	clk.Step(heldFor + time.Second)
	f.offer(feedValue("d", "60", "d", big))
	if len(f.held) != 1 || f.bytes != size {
		t.Errorf("after expiry: %d values, %d bytes held; want 1 and %d", len(f.held), f.bytes, size)
	}
	f.clear()
	if len(f.held) != 0 || f.bytes != 0 || len(f.read) != 0 {
		t.Error("clear left values or reads")
	}
}

// TestValueFeedAwaits: a sync for a recorded value change waits for the
// watch while one is open, and is queued after the grace period only if
// no sync read values as new by then.
func TestValueFeedAwaits(t *testing.T) {
	f, clk := newTestFeed(1 << 20)
	queued := map[string]int{}
	enqueue := func(key string) func() { return func() { queued[key]++ } }

	if f.awaits("team/a", "30", enqueue("team/a")) {
		t.Error("a sync waited for a watch that is not open")
	}
	f.setWatching(true)

	// The watch sends the values and a sync takes them: nothing more.
	if !f.awaits("team/a", "30", enqueue("team/a")) {
		t.Fatal("a sync for a value change did not wait for the watch")
	}
	f.offer(feedValue("a", "30", "uid-a", "new"))
	if v := f.take(feedES("a", "29", "uid-a")); v == nil {
		t.Fatal("the values sent were not taken")
	}
	f.noteRead("team/a", "30")
	// Never sent: the sync is queued after the grace period.
	if !f.awaits("team/b", "40", enqueue("team/b")) {
		t.Fatal("a sync for a value change did not wait for the watch")
	}
	clk.Step(f.grace - time.Millisecond)
	if queued["team/b"] != 0 {
		t.Error("queued before the grace period ended")
	}
	clk.Step(time.Millisecond)
	if queued["team/a"] != 0 || queued["team/b"] != 1 {
		t.Errorf("queued after the grace period: %v, want only team/b, once", queued)
	}

	// Values already read, or already held: no wait.
	if !f.awaits("team/a", "30", enqueue("team/a")) {
		t.Error("a sync was queued for values already read")
	}
	f.offer(feedValue("c", "50", "uid-c", "held"))
	if f.awaits("team/c", "50", enqueue("team/c")) {
		t.Error("a sync waited for values already held")
	}
	clk.Step(f.grace)
	if queued["team/a"] != 0 || queued["team/c"] != 0 {
		t.Errorf("queued %v, want nothing more", queued)
	}
}

// TestValueFeedAwaitsFirst: a new ExternalSecret's first sync is queued
// once, when the watch sends its values, when the watch ends, or after
// firstGrace; never when no watch is open or its values are already held.
func TestValueFeedAwaitsFirst(t *testing.T) {
	f, clk := newTestFeed(1 << 20)
	queued := map[string]int{}
	enqueue := func(key string) func() { return func() { queued[key]++ } }

	if f.awaitsFirst(newES("a", "10"), enqueue("team/a")) {
		t.Error("a first sync waited for a watch that is not open")
	}
	f.setWatching(true)

	// Values the watch does not send: nothing to wait for.
	none := newES("n", "5")
	none.Spec.Target.CreationPolicy = configv1alpha1.CreatePolicyNone
	if f.awaitsFirst(none, enqueue("team/n")) {
		t.Error("a first sync waited for values of creationPolicy None, which the watch does not send")
	}
	f.excluded = []string{"team"}
	if f.awaitsFirst(newES("x", "6"), enqueue("team/x")) {
		t.Error("a first sync waited for values of an excluded namespace, which the watch does not send")
	}
	f.excluded = nil

	// Sent: queued at once, and not again after the grace period.
	if !f.awaitsFirst(newES("a", "10"), enqueue("team/a")) {
		t.Fatal("a first sync did not wait for the watch")
	}
	if queued["team/a"] != 0 {
		t.Fatal("queued before the watch sent anything")
	}
	f.offer(feedValue("a", "10", "uid-a", "one"))
	f.release("team/a")
	if queued["team/a"] != 1 {
		t.Fatalf("queued %d times when the values came, want once", queued["team/a"])
	}
	if v := f.take(feedES("a", "10", "uid-a")); v == nil {
		t.Error("the sync queued by the values' arrival found none held")
	}
	clk.Step(f.firstGrace)
	if queued["team/a"] != 1 {
		t.Errorf("queued %d times, want once", queued["team/a"])
	}

	// Never sent: queued after firstGrace, once.
	if !f.awaitsFirst(newES("b", "20"), enqueue("team/b")) {
		t.Fatal("a first sync did not wait for the watch")
	}
	clk.Step(f.firstGrace - time.Millisecond)
	if queued["team/b"] != 0 {
		t.Error("queued before the grace period ended")
	}
	clk.Step(time.Millisecond)
	f.release("team/b")
	if queued["team/b"] != 1 {
		t.Errorf("queued %d times after the grace period, want once", queued["team/b"])
	}

	// Held already: no wait.
	f.offer(feedValue("c", "30", "uid-c", "three"))
	if f.awaitsFirst(newES("c", "30"), enqueue("team/c")) {
		t.Error("a first sync waited for values already held")
	}

	// Deleted while waiting: never queued.
	if !f.awaitsFirst(newES("d", "40"), enqueue("team/d")) {
		t.Fatal("a first sync did not wait for the watch")
	}
	f.forget("team/d")
	clk.Step(f.firstGrace)
	if queued["team/d"] != 0 {
		t.Error("the first sync of a deleted ExternalSecret was queued")
	}

	// The watch ends: every waiting sync is queued at once, to read by GET.
	if !f.awaitsFirst(newES("e", "50"), enqueue("team/e")) {
		t.Fatal("a first sync did not wait for the watch")
	}
	f.setWatching(false)
	if queued["team/e"] != 1 {
		t.Errorf("queued %d times when the watch ended, want once", queued["team/e"])
	}
	clk.Step(f.firstGrace)
	if queued["team/e"] != 1 {
		t.Errorf("queued %d times, want once", queued["team/e"])
	}
}

// TestValueFeedWatch: the leader watches values from the informer's
// version, only of ExternalSecrets with a target it writes outside the
// excluded namespaces, holds what the watch sends, drops a deleted
// ExternalSecret's, and watches again after the watch ends.
func TestValueFeedWatch(t *testing.T) {
	client := fake.NewSimpleClientset()
	watches := make(chan *watch.FakeWatcher, 2)
	var opts []metav1.ListOptions
	client.PrependWatchReactor("externalsecretvalues", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w := watch.NewFake()
		opts = append(opts, a.(k8stesting.WatchActionImpl).ListOptions)
		watches <- w
		return true, w, nil
	})
	f := newValueFeed(client, func() string { return "100" }, []string{"kube-system"}, 1<<20)
	var changed []string
	f.changed = func(key string) { changed = append(changed, key) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.run(ctx) }()

	w := <-watches
	// Once the feed has taken an event, it has recorded its watch as open.
	w.Action(watch.Bookmark, &esv1alpha1.ExternalSecretValue{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "100"}})
	released := make(chan struct{}, 2)
	if !f.awaitsFirst(newES("a", "101"), func() { released <- struct{}{} }) {
		t.Fatal("a first sync did not wait for the open watch")
	}
	w.Add(feedValue("a", "101", "uid-a", "one"))
	w.Add(feedValue("b", "102", "uid-b", "two"))
	w.Delete(feedValue("b", "103", "uid-b", ""))
	w.Modify(feedValue("a", "104", "uid-a", "four"))
	// The fake watcher's channel is unbuffered: once the next event is
	// sent, the ones before it were handled.
	w.Action(watch.Bookmark, &esv1alpha1.ExternalSecretValue{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "105"}})
	if v := f.take(feedES("a", "104", "uid-a")); v == nil || string(v.Data["v"]) != "four" {
		t.Errorf("the newest values sent were not held: %v", v)
	}
	if f.take(feedES("b", "102", "uid-b")) != nil {
		t.Error("the values of a deleted ExternalSecret were kept")
	}
	if len(changed) != 1 || changed[0] != "team/a" {
		t.Errorf("syncs queued for %v, want only team/a's MODIFIED values", changed)
	}
	if len(released) != 1 {
		t.Errorf("team/a's first sync was queued %d times by the watch, want once, by its ADDED values", len(released))
	}
	w.Error(&metav1.Status{Code: 410, Reason: metav1.StatusReasonGone})
	select {
	case <-watches:
	case <-time.After(30 * time.Second):
		t.Fatal("no new watch after the first ended")
	}
	cancel()
	<-done

	if len(opts) != 2 {
		t.Fatalf("%d watches, want 2", len(opts))
	}
	o := opts[0]
	if o.ResourceVersion != "100" || !o.AllowWatchBookmarks {
		t.Errorf("the watch started at %q (bookmarks %v), want the informer's version 100", o.ResourceVersion, o.AllowWatchBookmarks)
	}
	for _, want := range []string{"spec.target.creationPolicy!=", "spec.target.creationPolicy!=None", "metadata.namespace!=kube-system"} {
		if !strings.Contains(","+o.FieldSelector+",", ","+want+",") {
			t.Errorf("field selector %q does not say %q", o.FieldSelector, want)
		}
	}
	if len(f.held) != 0 {
		t.Error("values are still held after the leader stopped")
	}
}
