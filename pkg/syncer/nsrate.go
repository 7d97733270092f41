package syncer

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// namespaceRate bounds the syncs veil-syncer does for each namespace: a
// token bucket per namespace, shared by its ExternalSecrets and
// PushSecrets, first syncs, changes, refreshes and retries alike. The fair
// queue already makes namespaces take turns for the workers, but that is
// work-conserving: a namespace alone in the queue gets every worker, and
// each sync costs kube-apiserver several requests (read the values, write
// the Secret, the status, an Event). A namespace that creates or edits
// ExternalSecrets in a loop would keep kube-apiserver busy for everyone; its
// bucket makes it wait instead. The burst lets a namespace's first sync of
// many ExternalSecrets go at full speed.
//
// A key over its namespace's rate holds a reservation: it is queued again
// for when that comes, and not charged a second time then.
type namespaceRate struct {
	limit rate.Limit
	burst int

	mu       sync.Mutex
	buckets  map[string]*rate.Limiter
	reserved map[string]time.Time // key -> when its reserved sync is due
	calls    int
}

// newNamespaceRate returns nil (no bound) for a qps of 0.
func newNamespaceRate(qps float64, burst int) *namespaceRate {
	if qps <= 0 {
		return nil
	}
	return &namespaceRate{limit: rate.Limit(qps), burst: burst, buckets: map[string]*rate.Limiter{}, reserved: map[string]time.Time{}}
}

// wait says how long the sync of key (in namespace ns) must wait; 0 means
// now, and the sync is charged to ns.
func (r *namespaceRate) wait(ns, key string, now time.Time) time.Duration {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if due, ok := r.reserved[key]; ok {
		if now.Before(due) {
			return due.Sub(now)
		}
		delete(r.reserved, key)
		return 0
	}
	r.calls++
	if r.calls%1024 == 0 {
		r.sweep(now)
	}
	b, ok := r.buckets[ns]
	if !ok {
		b = rate.NewLimiter(r.limit, r.burst)
		r.buckets[ns] = b
	}
	d := b.ReserveN(now, 1).DelayFrom(now)
	if d > 0 {
		r.reserved[key] = now.Add(d)
		namespaceSyncsDelayed.Inc()
	}
	return d
}

// forget drops the reservation of a key that no longer needs a sync.
func (r *namespaceRate) forget(key string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.reserved, key)
}

// sweep drops full buckets (a new one is the same) and reservations long
// past due (their key was deleted), so memory follows the namespaces in
// use, not every namespace ever seen.
func (r *namespaceRate) sweep(now time.Time) {
	for ns, b := range r.buckets {
		if b.TokensAt(now) >= float64(r.burst) {
			delete(r.buckets, ns)
		}
	}
	for key, due := range r.reserved {
		if now.Sub(due) > time.Minute {
			delete(r.reserved, key)
		}
	}
}
