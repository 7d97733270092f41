package externalsecretvalue

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/klog/v2"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/registry"
)

// A watch of values is a watch of the ExternalSecrets they belong to, made
// by veil-apiserver in kube-apiserver and translated event by event: an
// ExternalSecretValue's resource version is its ExternalSecret's. So
// resource versions are etcd's, the same integers on every replica; a
// resume from a version kube-apiserver no longer has is answered 410 Gone
// by kube-apiserver itself; bookmarks and a WatchList's initial events
// (sendInitialEvents) are kube-apiserver's, passed on. A change of a value
// at the provider reaches watchers as a change of its ExternalSecret.
//
// veil-apiserver watches with its own identity, which may see every
// ExternalSecret, so each event is passed on only if the watcher may get
// that value (an access review, cached by the delegating authorizer).

// DefaultMaxWatchesPerNamespace bounds the watches of values open at once
// in one namespace (those across all namespaces count under ""): each
// holds a watch in kube-apiserver and resolves values on every change.
const DefaultMaxWatchesPerNamespace = 100

// watches counts the open watches of each namespace.
type watches struct {
	mu   sync.Mutex
	max  int
	open map[string]int
}

func (w *watches) acquire(ns string) (release func(), err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open[ns] >= w.max {
		where := fmt.Sprintf("namespace %q", ns)
		if ns == "" {
			where = "all namespaces"
		}
		return nil, apierrors.NewTooManyRequests(fmt.Sprintf("%d watches of externalsecretvalues are open in %s, the most veil-apiserver allows; close one, or share one watch (an informer) between readers", w.max, where), 10)
	}
	w.open[ns]++
	metrics.ValueWatches.Inc()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.open[ns]--; w.open[ns] <= 0 {
				delete(w.open, ns)
			}
			metrics.ValueWatches.Dec()
		})
	}, nil
}

// Watch follows the values of the ExternalSecrets that match opts.
func (r *REST) Watch(ctx context.Context, opts *metainternalversion.ListOptions) (watch.Interface, error) {
	ns := genericapirequest.NamespaceValue(ctx)
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewForbidden(resource, "", fmt.Errorf("the request has no user"))
	}
	// Without an authorizer no event could be checked against what the
	// watcher may get, so no watch is opened.
	if r.authz == nil {
		return nil, apierrors.NewMethodNotSupported(resource, "watch")
	}
	if err := r.reads.Admit(ns, "watch"); err != nil {
		return nil, registry.APIError(resource, "", err)
	}
	lo := metav1.ListOptions{Watch: true}
	if opts != nil {
		if opts.LabelSelector != nil {
			lo.LabelSelector = opts.LabelSelector.String()
		}
		if opts.FieldSelector != nil {
			if err := checkFieldSelector(opts.FieldSelector.Requirements()); err != nil {
				return nil, err
			}
			lo.FieldSelector = opts.FieldSelector.String()
		}
		lo.ResourceVersion, lo.ResourceVersionMatch = opts.ResourceVersion, opts.ResourceVersionMatch
		lo.AllowWatchBookmarks, lo.SendInitialEvents, lo.TimeoutSeconds = opts.AllowWatchBookmarks, opts.SendInitialEvents, opts.TimeoutSeconds
	}
	release, err := r.watches.acquire(ns)
	if err != nil {
		return nil, err
	}
	upstream, err := r.live.ExternalSecrets(ns).Watch(ctx, lo)
	if err != nil {
		release()
		// 410 Gone for a version too old, and the answers to malformed
		// options, are kube-apiserver's to give; anything else means it
		// could not be reached.
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) || apierrors.IsBadRequest(err) || apierrors.IsInvalid(err) {
			return nil, err
		}
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("veil-apiserver could not watch ExternalSecrets in kube-apiserver: %v", err))
	}
	w := &valueWatch{upstream: upstream, out: make(chan watch.Event), done: make(chan struct{})}
	go r.follow(ctx, u, w, release)
	return w, nil
}

// valueWatch is one watch of values: the translation of upstream.
type valueWatch struct {
	upstream watch.Interface
	out      chan watch.Event
	done     chan struct{}
	stop     sync.Once
}

func (w *valueWatch) Stop() {
	w.stop.Do(func() {
		close(w.done)
		w.upstream.Stop()
	})
}

func (w *valueWatch) ResultChan() <-chan watch.Event { return w.out }

// follow translates upstream's events until either side stops. It keeps,
// per value sent, a fingerprint of what the watcher was sent, so a change
// of an ExternalSecret's status alone (veil-syncer writes one on every
// sync) is not sent as a change of its values. The watch's place in its
// namespace's count is released before its channel is closed.
func (r *REST) follow(ctx context.Context, u user.Info, w *valueWatch, release func()) {
	defer close(w.out)
	defer release()
	defer w.upstream.Stop()
	sent := map[string]uint64{}
	for {
		var ev watch.Event
		var ok bool
		select {
		case <-w.done:
			return
		case <-ctx.Done():
			return
		case ev, ok = <-w.upstream.ResultChan():
			if !ok {
				return
			}
		}
		out, send := r.translate(ctx, u, ev, sent)
		if !send {
			continue
		}
		select {
		case w.out <- out:
			metrics.ValueWatchEvents.WithLabelValues(string(out.Type)).Inc()
		case <-w.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (r *REST) translate(ctx context.Context, u user.Info, ev watch.Event, sent map[string]uint64) (watch.Event, bool) {
	if ev.Type == watch.Error {
		// A *metav1.Status, 410 Gone among them: the watcher's to see.
		return ev, true
	}
	es, ok := ev.Object.(*configv1alpha1.ExternalSecret)
	if !ok {
		klog.ErrorS(nil, "A watch of ExternalSecrets sent an object of another type", "type", fmt.Sprintf("%T", ev.Object))
		return watch.Event{}, false
	}
	if ev.Type == watch.Bookmark {
		// Only the resource version, and the annotation that ends a
		// WatchList's initial events.
		return watch.Event{Type: watch.Bookmark, Object: &externalsecrets.ExternalSecretValue{
			ObjectMeta: metav1.ObjectMeta{ResourceVersion: es.ResourceVersion, Annotations: es.Annotations},
		}}, true
	}
	key := es.Namespace + "/" + es.Name
	if !r.mayGet(ctx, u, es.Namespace, es.Name) {
		metrics.ValueWatchEvents.WithLabelValues("skipped_forbidden").Inc()
		return watch.Event{}, false
	}
	if ev.Type == watch.Deleted {
		delete(sent, key)
		// Where the values came from, not the values.
		var ref configv1alpha1.SecretStoreRef
		if refs := es.StoreRefs(); len(refs) > 0 {
			ref = refs[0]
		}
		return watch.Event{Type: watch.Deleted, Object: &externalsecrets.ExternalSecretValue{
			ObjectMeta: meta(es),
			Source:     externalsecrets.ValueSource{StoreRef: externalsecrets.StoreRef{Kind: string(ref.Kind), Name: ref.Name}},
		}}, true
	}
	v, err := r.resolver.Resolve(ctx, es)
	if err != nil {
		// The watcher keeps what it has; a get of the value says why.
		// The error may name keys, never values, but it is logged only at
		// a debugging verbosity.
		klog.V(4).InfoS("A watched value could not be resolved", "namespace", es.Namespace, "name", es.Name, "err", err)
		metrics.ValueWatchEvents.WithLabelValues("skipped_unresolvable").Inc()
		return watch.Event{}, false
	}
	fp := fingerprint(v)
	if last, seen := sent[key]; seen && last == fp && ev.Type == watch.Modified {
		metrics.ValueWatchEvents.WithLabelValues("skipped_unchanged").Inc()
		return watch.Event{}, false
	}
	sent[key] = fp
	return watch.Event{Type: ev.Type, Object: v}, true
}

// meta is the metadata an ExternalSecretValue takes from its
// ExternalSecret (as pkg/resolve sets it): the same name, identity, labels
// and resource version. Only a DELETED event, which resolves nothing,
// builds it here.
func meta(es *configv1alpha1.ExternalSecret) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              es.Name,
		Namespace:         es.Namespace,
		UID:               es.UID,
		ResourceVersion:   es.ResourceVersion,
		Labels:            es.Labels,
		CreationTimestamp: es.CreationTimestamp,
	}
}

// mayGet says whether u may get the value ns/name: a grant over the whole
// namespace is asked first, so a watcher with one gets one access review
// per namespace (per authorizer cache lifetime), not one per value.
func (r *REST) mayGet(ctx context.Context, u user.Info, ns, name string) bool {
	attrs := authorizer.AttributesRecord{
		User: u, Verb: "get", Namespace: ns,
		APIGroup: externalsecrets.GroupName, APIVersion: "v1alpha1", Resource: resource.Resource,
		ResourceRequest: true,
	}
	if d, _, err := r.authz.Authorize(ctx, attrs); err == nil && d == authorizer.DecisionAllow {
		return true
	}
	attrs.Name = name
	d, _, err := r.authz.Authorize(ctx, attrs)
	return err == nil && d == authorizer.DecisionAllow
}

// fingerprint tells whether a watcher was already sent these values: a
// 64-bit hash kept in memory for the watch's life, never sent or logged.
func fingerprint(v *externalsecrets.ExternalSecretValue) uint64 {
	h := fnv.New64a()
	field := func(b []byte) {
		var n [8]byte
		for i, l := 0, uint64(len(b)); i < 8; i++ {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(v.Type))
	for _, k := range slices.Sorted(maps.Keys(v.Labels)) {
		field([]byte(k))
		field([]byte(v.Labels[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(v.Data)) {
		field([]byte(k))
		field(v.Data[k])
	}
	field([]byte(v.Source.StoreRef.Kind + "/" + v.Source.StoreRef.Name))
	return h.Sum64()
}
