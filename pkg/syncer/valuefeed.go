package syncer

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
)

// valueFeed follows the values veil-syncer materialises with one watch of
// externalsecretvalues, so that a sync finds the values it needs already
// sent instead of asking veil-apiserver for them (a proxied GET and an
// access review in kube-apiserver for each ExternalSecret).
//
// The ExternalSecret informer still decides what is synced and when; the
// feed only holds values until a sync takes them. A sync that finds none
// new enough reads them with a GET, as before, so the feed can lag, stop
// or drop values without changing what is written:
//
//   - A value is held only if it is newer than the last one a sync read for
//     that ExternalSecret, and is taken only by a sync of an ExternalSecret
//     no newer than it (same UID; values and ExternalSecrets share resource
//     versions). It is never used twice.
//   - Held values are bounded in bytes (--held-values-max-bytes; 0 turns
//     the watch off) and in time (heldFor): past either they are dropped,
//     and the sync reads by GET.
//   - The watch asks only for ExternalSecrets with a target the syncer
//     writes (spec.target.creationPolicy neither empty nor None) outside
//     --excluded-namespaces, so veil-apiserver resolves no value for the
//     syncer that it would not read anyway.
//   - It starts at the informer's resource version, never from an initial
//     list: the syncs of what the informer lists read by GET.
//
// Held values are secret values in memory, as a sync holds them, for at
// most heldFor; nothing here logs or reports one.
type valueFeed struct {
	veil     versioned.Interface
	since    func() string
	excluded []string
	maxBytes int
	clock    clock.WithDelayedExecution

	// changed is called, outside mu, with the key of values the watch
	// sent as MODIFIED and held: the controller queues their sync.
	changed func(key string)
	// grace is how long a sync for a recorded value change waits for the
	// watch to send the values (awaits), firstGrace how long a new
	// ExternalSecret's first sync does (awaitsFirst).
	grace, firstGrace time.Duration

	mu sync.Mutex
	// watching: a watch is open, so a recorded value change will be sent.
	watching bool
	held     map[string]heldValue
	bytes    int
	// expired is when held values were last looked through for expiry.
	expired time.Time
	// read is, per ExternalSecret, the resource version of the newest
	// values a sync read: older events are not held.
	read map[string]uint64
	// waiting are the first syncs of new ExternalSecrets, queued when the
	// watch sends their values, when it ends, or after grace (awaitsFirst).
	waiting map[string]waiter
	seq     uint64
}

type waiter struct {
	seq     uint64
	enqueue func()
}

// heldFor is how long a value waits for the sync that takes it. The sync
// of a new or changed ExternalSecret is urgent, so one not taken by then
// waits behind a backlog that its GET will not slow down.
const heldFor = time.Minute

// valueGrace bounds how long a sync for a recorded value change waits
// for the watch's event (which veil-apiserver sends once it has read the
// new value, usually within tens of milliseconds) before it reads by GET.
const valueGrace = 2 * time.Second

// firstGrace bounds how long a new ExternalSecret's first sync waits for
// the watch's event. It is shorter than valueGrace: the watch sends every
// namespace's values in one stream, so under another tenant's burst of new
// ExternalSecrets the wait is what this tenant's first sync would lose.
const firstGrace = 500 * time.Millisecond

type heldValue struct {
	rv    uint64
	uid   types.UID
	value *esv1alpha1.ExternalSecretValue
	size  int
	at    time.Time
}

func newValueFeed(veil versioned.Interface, since func() string, excluded []string, maxBytes int) *valueFeed {
	return &valueFeed{veil: veil, since: since, excluded: excluded, maxBytes: maxBytes, clock: clock.RealClock{},
		grace: valueGrace, firstGrace: firstGrace, changed: func(string) {}, held: map[string]heldValue{}, read: map[string]uint64{}, waiting: map[string]waiter{}}
}

// sends says whether the watch sends the values of es: those its
// selector matches.
func (f *valueFeed) sends(es *configv1alpha1.ExternalSecret) bool {
	if es.Spec.Target == nil {
		return false
	}
	p := es.Spec.Target.CreationPolicy
	return p != "" && p != configv1alpha1.CreatePolicyNone && !slices.Contains(f.excluded, es.Namespace)
}

// selector is the field selector of the watch.
func (f *valueFeed) selector() string {
	const policy = esv1alpha1.TargetCreationPolicyField
	parts := []string{policy + "!=", policy + "!=" + string(configv1alpha1.CreatePolicyNone)}
	for _, ns := range f.excluded {
		parts = append(parts, "metadata.namespace!="+ns)
	}
	return strings.Join(parts, ",")
}

// run watches values until ctx is done, watching again after a failure
// (with backoff) from the informer's resource version. Held values are
// dropped when it returns: a replica that no longer leads syncs nothing.
func (f *valueFeed) run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithName("value-watch")
	defer f.clear()
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 8, Cap: time.Minute}
	delay := backoff
	for ctx.Err() == nil {
		rv := f.since()
		if rv == "" {
			// The informer has not listed yet.
			if !f.sleep(ctx, time.Second) {
				return
			}
			continue
		}
		w, err := f.veil.ExternalsecretsV1alpha1().ExternalSecretValues(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{
			ResourceVersion: rv, FieldSelector: f.selector(), AllowWatchBookmarks: true,
		})
		if err == nil {
			valueWatchStarts.WithLabelValues("opened").Inc()
			f.setWatching(true)
			if f.follow(ctx, w) {
				delay = backoff
			}
			f.setWatching(false)
			w.Stop()
		} else {
			valueWatchStarts.WithLabelValues("failed").Inc()
			// Only the status: the watch asks for no value by name.
			logger.V(2).Info("Watching values failed; syncs read values by GET meanwhile", "reason", apierrors.ReasonForError(err))
		}
		if !f.sleep(ctx, delay.Step()) {
			return
		}
	}
}

// follow offers a watch's values until it ends; it says whether any
// event came, so a watch that works resets the backoff.
func (f *valueFeed) follow(ctx context.Context, w watch.Interface) bool {
	seen := false
	for {
		select {
		case <-ctx.Done():
			return seen
		case ev, ok := <-w.ResultChan():
			if !ok {
				return seen
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if v, ok := ev.Object.(*esv1alpha1.ExternalSecretValue); ok {
					if f.offer(v) && ev.Type == watch.Modified {
						// New values of a synced ExternalSecret: its sync
						// need not wait for the informer (awaits).
						f.changed(keyOf(v))
					}
					// Held or not, a first sync waits no longer.
					f.release(keyOf(v))
				}
			case watch.Deleted:
				if v, ok := ev.Object.(*esv1alpha1.ExternalSecretValue); ok {
					f.forget(keyOf(v))
				}
			case watch.Error:
				// 410 Gone among them: watched again from the informer's
				// version; what happened meanwhile is read by GET.
				return seen
			}
			seen = true
		}
	}
}

func (f *valueFeed) sleep(ctx context.Context, d time.Duration) bool {
	t := f.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// setWatching records whether a watch is open; when it ends, the first
// syncs waiting for it are queued at once, to read by GET.
func (f *valueFeed) setWatching(on bool) {
	f.mu.Lock()
	f.watching = on
	var release []func()
	if !on {
		release = f.takeWaiting()
	}
	f.mu.Unlock()
	for _, enqueue := range release {
		enqueue()
	}
}

// takeWaiting empties waiting, with mu held, and returns what to queue.
func (f *valueFeed) takeWaiting() []func() {
	var out []func()
	for _, w := range f.waiting {
		out = append(out, w.enqueue)
	}
	clear(f.waiting)
	return out
}

// awaitsFirst is asked when the informer sees es created (not listed)
// and never synced. It says false at once if the watch does not send
// es's values (sends). Otherwise it says true when its first sync is not to be queued now: the
// watch will send its values (ADDED, once veil-apiserver has read them),
// and their arrival queues the sync (enqueue), so that the sync takes
// them instead of reading them again by GET — a proxied read and an
// access review in kube-apiserver for each new ExternalSecret. If the
// watch sends nothing within firstGrace (veil-apiserver could not
// resolve the values, say), or ends, enqueue is called then, and that
// sync reads by GET and reports what went wrong. enqueue is called once
// at most.
func (f *valueFeed) awaitsFirst(es *configv1alpha1.ExternalSecret, enqueue func()) bool {
	v, ok := f.version(es.ResourceVersion)
	if !ok || !f.sends(es) {
		return false
	}
	key := keyOf(es)
	f.mu.Lock()
	defer f.mu.Unlock()
	if h, held := f.held[key]; !f.watching || held && h.rv >= v || f.read[key] >= v {
		return false
	}
	f.seq++
	seq := f.seq
	f.waiting[key] = waiter{seq: seq, enqueue: enqueue}
	f.clock.AfterFunc(f.firstGrace, func() {
		f.mu.Lock()
		w, ok := f.waiting[key]
		mine := ok && w.seq == seq
		if mine {
			delete(f.waiting, key)
		}
		f.mu.Unlock()
		if mine {
			firstSyncWaits.WithLabelValues("timed_out").Inc()
			enqueue()
		}
	})
	firstSyncWaits.WithLabelValues("waiting").Inc()
	return true
}

// release queues the first sync of key if it waits for the watch.
func (f *valueFeed) release(key string) {
	f.mu.Lock()
	w, ok := f.waiting[key]
	delete(f.waiting, key)
	f.mu.Unlock()
	if ok {
		w.enqueue()
	}
}

// awaits is asked when the informer sees a value change recorded on the
// ExternalSecret key at resource version rv, and nothing else changed.
// It says true when the sync is not to be queued now: a sync already
// read values as new, or the watch will send them, in which case their
// event queues the sync (changed). If no sync has read them within grace
// (veil-apiserver could not resolve them, say), enqueue is called then,
// and that sync reads by GET and reports what went wrong.
func (f *valueFeed) awaits(key, rv string, enqueue func()) bool {
	v, ok := f.version(rv)
	if !ok {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.read[key] >= v {
		return true
	}
	if h, held := f.held[key]; !f.watching || held && h.rv >= v {
		return false
	}
	f.clock.AfterFunc(f.grace, func() {
		if !f.readSince(key, v) {
			valueWaits.WithLabelValues("timed_out").Inc()
			enqueue()
		}
	})
	valueWaits.WithLabelValues("waiting").Inc()
	return true
}

// version parses the resource version rv of a sync that may wait; false
// when there is no feed (the watch is off) or rv is not a number.
func (f *valueFeed) version(rv string) (uint64, bool) {
	if f == nil {
		return 0, false
	}
	return parseVersion(rv)
}

// readSince says whether a sync of key read values of version v or newer.
func (f *valueFeed) readSince(key string, v uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.read[key] >= v
}

// offer holds v for the sync of its ExternalSecret, unless a sync already
// read values as new, or holding it would pass the bound; it says whether
// v is held.
func (f *valueFeed) offer(v *esv1alpha1.ExternalSecretValue) bool {
	rv, ok := parseVersion(v.ResourceVersion)
	if !ok {
		heldValues.WithLabelValues("unversioned").Inc()
		return false
	}
	key := keyOf(v)
	size := valueSize(v)
	f.mu.Lock()
	defer f.mu.Unlock()
	if rv <= f.read[key] {
		heldValues.WithLabelValues("stale").Inc()
		return false
	}
	f.expire()
	f.drop(key)
	if f.bytes+size > f.maxBytes {
		heldValues.WithLabelValues("over_budget").Inc()
		return false
	}
	f.held[key] = heldValue{rv: rv, uid: v.UID, value: v, size: size, at: f.clock.Now()}
	f.bytes += size
	heldBytes.Set(float64(f.bytes))
	heldValues.WithLabelValues("held").Inc()
	return true
}

// take returns the held values of es if they are at least as new as es,
// and forgets them either way: a sync that does not use them reads newer.
func (f *valueFeed) take(es *configv1alpha1.ExternalSecret) *esv1alpha1.ExternalSecretValue {
	if f == nil {
		return nil
	}
	want, ok := parseVersion(es.ResourceVersion)
	key := keyOf(es)
	f.mu.Lock()
	defer f.mu.Unlock()
	h, held := f.held[key]
	if !held {
		return nil
	}
	f.drop(key)
	if !ok || h.uid != es.UID || h.rv < want || f.clock.Since(h.at) > heldFor {
		heldValues.WithLabelValues("unused").Inc()
		return nil
	}
	return h.value
}

// noteRead records that a sync of key read values of resource version rv.
func (f *valueFeed) noteRead(key, rv string) {
	if f == nil {
		return
	}
	v, ok := parseVersion(rv)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if v > f.read[key] {
		f.read[key] = v
	}
	if h, held := f.held[key]; held && h.rv <= v {
		f.drop(key)
		heldValues.WithLabelValues("unused").Inc()
	}
}

// forget drops what is known of a deleted ExternalSecret.
func (f *valueFeed) forget(key string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drop(key)
	delete(f.read, key)
	delete(f.waiting, key)
}

func (f *valueFeed) clear() {
	f.mu.Lock()
	f.held = map[string]heldValue{}
	f.read = map[string]uint64{}
	f.bytes = 0
	f.watching = false
	release := f.takeWaiting()
	heldBytes.Set(0)
	f.mu.Unlock()
	for _, enqueue := range release {
		enqueue()
	}
}

// drop and expire are called with mu held.
func (f *valueFeed) drop(key string) {
	if h, ok := f.held[key]; ok {
		delete(f.held, key)
		f.bytes -= h.size
		heldBytes.Set(float64(f.bytes))
	}
}

func (f *valueFeed) expire() {
	now := f.clock.Now()
	if now.Sub(f.expired) < heldFor/10 {
		return
	}
	f.expired = now
	for key, h := range f.held {
		if f.clock.Since(h.at) > heldFor {
			f.drop(key)
			heldValues.WithLabelValues("expired").Inc()
		}
	}
}

// valueSize is what a held value costs: its data, with a little for keys.
func valueSize(v *esv1alpha1.ExternalSecretValue) int {
	n := 256
	for k, d := range v.Data {
		n += len(k) + len(d)
	}
	return n
}

func parseVersion(rv string) (uint64, bool) {
	v, err := strconv.ParseUint(rv, 10, 64)
	return v, err == nil && v > 0
}
