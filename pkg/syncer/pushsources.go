package syncer

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// sourceWatches watches the source Secrets of PushSecrets, each by name, and
// nothing else: the syncer may not list or watch Secrets across a namespace,
// let alone the cluster. A watch of one Secret is a list and watch with the
// field selector metadata.name=<name>, which kube-apiserver authorises like
// a request for that name, so a Role that grants the Secret by name
// (resourceNames) is enough.
//
// A watch starts only where the syncer may act: once a sync of a PushSecret
// has been allowed to get its Secret (or to learn that it does not exist
// yet). A PushSecret whose namespace has not granted the Secret gets no
// watch, and a watch that kube-apiserver starts refusing (the grant was
// taken back) is stopped rather than retried for ever: its PushSecrets are
// synced, say so in their status, and retry with backoff. A watch stops
// when the last PushSecret stops naming its Secret.
//
// The watches are metadata-only and keep only name, UID and resourceVersion:
// they exist to notice changes. Values are read with a get when a PushSecret
// is synced, and dropped after it.
type sourceWatches struct {
	ctx  context.Context
	meta metadata.Interface
	// changed is called with the Secret's resourceVersion when it is
	// listed, created or changed, and with "" when it is deleted or its
	// watch is refused.
	changed func(src types.NamespacedName, resourceVersion string)

	mu      sync.Mutex
	watches map[types.NamespacedName]*sourceWatch
	// users maps each PushSecret (namespace/name) to the Secret it names.
	users map[string]types.NamespacedName
}

type sourceWatch struct {
	users int
	stop  context.CancelFunc
}

// refused stops the watch of src, which kube-apiserver refuses, and
// forgets its users, so that each starts it again only after a sync that
// was allowed to read the Secret.
func (s *sourceWatches) refused(src types.NamespacedName, w *sourceWatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.watches[src] != w {
		return
	}
	w.stop()
	delete(s.watches, src)
	for user, u := range s.users {
		if u == src {
			delete(s.users, user)
		}
	}
}

// newSourceWatches returns watches that run until ctx is done.
func newSourceWatches(ctx context.Context, meta metadata.Interface, changed func(types.NamespacedName, string)) *sourceWatches {
	return &sourceWatches{
		ctx:     ctx,
		meta:    meta,
		changed: changed,
		watches: map[types.NamespacedName]*sourceWatch{},
		users:   map[string]types.NamespacedName{},
	}
}

// use records that the PushSecret user names src, which the syncer was just
// allowed to read at resourceVersion ("" when it does not exist), starting
// a watch of src if none runs, and releasing the Secret it named before.
func (s *sourceWatches) use(user string, src types.NamespacedName, resourceVersion string) {
	if s == nil { // a controller that watches nothing (unit tests)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.users[user]; ok {
		if old == src {
			return
		}
		s.releaseLocked(old)
	}
	s.users[user] = src
	w := s.watches[src]
	if w == nil {
		w = s.start(src, resourceVersion)
		s.watches[src] = w
	}
	w.users++
}

// release records that the PushSecret user is gone.
func (s *sourceWatches) release(user string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if src, ok := s.users[user]; ok {
		delete(s.users, user)
		s.releaseLocked(src)
	}
}

func (s *sourceWatches) releaseLocked(src types.NamespacedName) {
	w := s.watches[src]
	if w == nil {
		return
	}
	if w.users--; w.users == 0 {
		w.stop()
		delete(s.watches, src)
	}
}

func (s *sourceWatches) start(src types.NamespacedName, known string) *sourceWatch {
	logger := klog.FromContext(s.ctx).WithValues("secret", src)
	byName := fields.OneTermEqualSelector("metadata.name", src.Name).String()
	inf := metadatainformer.NewFilteredMetadataInformer(s.meta, secretsResource, src.Namespace, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.FieldSelector = byName }).Informer()
	// Annotations can hold a Secret's data (kubectl's last-applied
	// configuration does), and nothing but the resourceVersion is needed.
	_ = inf.SetTransform(func(obj any) (any, error) {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return obj, nil
		}
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		}}, nil
	})
	ctx, stop := context.WithCancel(s.ctx)
	w := &sourceWatch{stop: stop}
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			// The namespace took back the syncer's grant of its Secret.
			// Stop here; the PushSecrets' next syncs report it in their
			// status and retry with backoff, and the first allowed one
			// starts the watch again.
			logger.V(2).Info("Not permitted to watch a source Secret; stopping its watch", "err", err)
			s.refused(src, w)
			s.changed(src, "")
			return
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	})
	notify := func(obj any, deleted bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		m, ok := obj.(*metav1.PartialObjectMetadata)
		// The name check guards against a server that ignored the field
		// selector: no other Secret may trigger a push.
		if !ok || m.Name != src.Name {
			return
		}
		rv := m.ResourceVersion
		if deleted {
			rv = ""
		} else if rv == known {
			// The version the sync that started the watch just read.
			return
		}
		s.changed(src, rv)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { notify(obj, false) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*metav1.PartialObjectMetadata)
			n, ok2 := newObj.(*metav1.PartialObjectMetadata)
			if ok1 && ok2 && o.ResourceVersion != n.ResourceVersion {
				notify(newObj, false)
			}
		},
		DeleteFunc: func(obj any) { notify(obj, true) },
	})
	go inf.RunWithContext(ctx)
	logger.V(4).Info("Watching a source Secret")
	return w
}
