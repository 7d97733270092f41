package syncer

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// writtenStatuses remembers, per object, the status this process last
// wrote. The informer's copy lags behind our own writes, and deciding from
// it would redo what was just done (restart workloads twice for one change,
// push data just pushed). Only the leader writes status, so ours is the
// newest.
type writtenStatuses[S any] struct {
	mu sync.Mutex
	m  map[string]writtenStatus[S]
}

type writtenStatus[S any] struct {
	uid    types.UID
	status S
}

func newWrittenStatuses[S any]() *writtenStatuses[S] {
	return &writtenStatuses[S]{m: map[string]writtenStatus[S]{}}
}

// get returns the status last written for key, if it was written for the
// object with this uid (not for one of the same name deleted since).
func (w *writtenStatuses[S]) get(key string, uid types.UID) (S, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.m[key]
	if !ok || s.uid != uid {
		var zero S
		return zero, false
	}
	return s.status, true
}

func (w *writtenStatuses[S]) remember(key string, uid types.UID, status S) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.m[key] = writtenStatus[S]{uid: uid, status: status}
}

func (w *writtenStatuses[S]) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, key)
}
