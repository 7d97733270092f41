package syncer

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// fakeReconciler syncs PushSecrets by name: "retry" fails with a retry,
// "skip" is skipped, "gone" is not in the cache.
type fakeReconciler struct {
	synced []string
	after  time.Duration
}

func (r *fakeReconciler) get(ns, name string) (*configv1alpha1.PushSecret, error) {
	if name == "gone" {
		return nil, apierrors.NewNotFound(configv1alpha1.Resource("pushsecrets"), name)
	}
	return &configv1alpha1.PushSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, nil
}

func (r *fakeReconciler) skip(ps *configv1alpha1.PushSecret) bool { return ps.Name == "skip" }

func (r *fakeReconciler) sync(_ context.Context, ps *configv1alpha1.PushSecret) result {
	r.synced = append(r.synced, ps.Name)
	return result{result: "Test", retry: ps.Name == "retry"}
}

func (r *fakeReconciler) requeueAfter(*configv1alpha1.PushSecret) (time.Duration, bool) {
	return r.after, r.after >= 0
}

// TestSkeletonNext: a key gone or skipped is dropped, a failure is retried
// with backoff, and a success waits for its refresh.
func TestSkeletonNext(t *testing.T) {
	r := &fakeReconciler{after: -1}
	s := newPushSecretSkeleton(nil, nil)
	s.r = r
	s.queue = newWorkQueue("test_skeleton", nil)
	defer s.queue.ShutDown()
	ctx := context.Background()

	for _, name := range []string{"gone", "skip", "retry", "once"} {
		s.queue.Add("a/" + name)
	}
	for range 4 {
		if !s.next(ctx) {
			t.Fatal("the queue shut down")
		}
	}
	if len(r.synced) != 2 || r.synced[0] != "retry" || r.synced[1] != "once" {
		t.Errorf("synced %v, want retry and once", r.synced)
	}
	if s.queue.NumRequeues("a/retry") != 1 || s.queue.NumRequeues("a/once") != 0 || s.queue.NumRequeues("a/gone") != 0 {
		t.Errorf("requeues: retry %d, once %d, gone %d", s.queue.NumRequeues("a/retry"), s.queue.NumRequeues("a/once"), s.queue.NumRequeues("a/gone"))
	}

	// A success with a refresh due now is queued again at once.
	s.queue.ShutDown()
	s.queue = newWorkQueue("test_skeleton_refresh", nil)
	defer s.queue.ShutDown()
	r.after = 0
	s.queue.Add("a/refreshed")
	s.next(ctx)
	if s.queue.Len() != 1 {
		t.Errorf("queue length %d after a success due for refresh, want 1", s.queue.Len())
	}
}
