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
// (resourceNames) is enough. A watch starts when the first PushSecret names
// its Secret and stops when the last one stops naming it.
//
// The watches are metadata-only and keep only name, UID and resourceVersion:
// they exist to notice changes. Values are read with a get when a PushSecret
// is synced, and dropped after it.
type sourceWatches struct {
	ctx  context.Context
	meta metadata.Interface
	// changed is called with the Secret's resourceVersion when it is
	// listed, created or changed, and with "" when it is deleted.
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

// use records that the PushSecret user names src, starting a watch of src
// if none runs, and releasing the Secret it named before.
func (s *sourceWatches) use(user string, src types.NamespacedName) {
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
		w = s.start(src)
		s.watches[src] = w
	}
	w.users++
}

// release records that the PushSecret user is gone.
func (s *sourceWatches) release(user string) {
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

func (s *sourceWatches) start(src types.NamespacedName) *sourceWatch {
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
	_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			// The namespace has not granted the syncer its Secret: the
			// PushSecret's status says so and how to grant it. The
			// reflector keeps trying, with backoff, so a grant is noticed.
			logger.V(2).Info("Not permitted to watch a source Secret", "err", err)
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
	ctx, stop := context.WithCancel(s.ctx)
	go inf.RunWithContext(ctx)
	logger.V(4).Info("Watching a source Secret")
	return &sourceWatch{stop: stop}
}
