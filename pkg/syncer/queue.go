package syncer

import (
	"context"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// priorityQueue orders the items of a workqueue: keys marked urgent (new or
// changed ExternalSecrets) are handed out before any other (periodic
// refreshes and retries), so a new ExternalSecret never waits behind a
// backlog of refreshes. Within each priority the namespaces take turns, so
// one namespace's 10,000 ExternalSecrets do not delay another's first sync
// by more than one turn. The workqueue around it keeps its guarantees: a
// key is queued once, and never processed by two workers at a time.
type priorityQueue struct {
	// mu guards marked only: the workqueue calls Push, Touch, Pop and Len
	// under its own lock, while Urgent is called from event handlers.
	mu     sync.Mutex
	marked map[string]bool

	urgent, refresh fairList
	// queued says which list a key is in.
	queued map[string]bool

	onDepth func(urgent, refresh int)
}

var _ workqueue.Queue[string] = &priorityQueue{}

func newPriorityQueue(onDepth func(urgent, refresh int)) *priorityQueue {
	return &priorityQueue{marked: map[string]bool{}, queued: map[string]bool{}, onDepth: onDepth,
		urgent: newFairList(), refresh: newFairList()}
}

// mark makes the next Push or Touch of key urgent. Call it before adding key
// to the workqueue.
func (q *priorityQueue) mark(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.marked[key] = true
}

func (q *priorityQueue) isMarked(key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.marked[key]
}

func (q *priorityQueue) Push(key string) {
	urgent := q.isMarked(key)
	if urgent {
		q.urgent.push(key)
	} else {
		q.refresh.push(key)
	}
	q.queued[key] = urgent
	q.report()
}

// Touch is called when a queued key is added again: a refresh that becomes
// urgent moves to the urgent list.
func (q *priorityQueue) Touch(key string) {
	if urgent, ok := q.queued[key]; !ok || urgent || !q.isMarked(key) {
		return
	}
	q.refresh.remove(key)
	q.urgent.push(key)
	q.queued[key] = true
	q.report()
}

func (q *priorityQueue) Len() int { return q.urgent.len + q.refresh.len }

func (q *priorityQueue) Pop() string {
	var key string
	if q.urgent.len > 0 {
		key = q.urgent.pop()
	} else {
		key = q.refresh.pop()
	}
	delete(q.queued, key)
	q.mu.Lock()
	delete(q.marked, key)
	q.mu.Unlock()
	q.report()
	return key
}

func (q *priorityQueue) report() {
	if q.onDepth != nil {
		q.onDepth(q.urgent.len, q.refresh.len)
	}
}

// fairList is a FIFO list per namespace, served in turns: each pop takes
// the oldest key of the next namespace that has one.
type fairList struct {
	keys map[string][]string // by namespace
	// turns are the namespaces with keys, in the order they are served;
	// next is the one whose turn it is.
	turns []string
	next  int
	len   int
}

func newFairList() fairList { return fairList{keys: map[string][]string{}} }

func namespaceOf(key string) string {
	ns, _, _ := cache.SplitMetaNamespaceKey(key)
	return ns
}

func (l *fairList) push(key string) {
	ns := namespaceOf(key)
	if len(l.keys[ns]) == 0 {
		// A namespace joining takes its turn last in the round.
		l.turns = append(l.turns, "")
		copy(l.turns[l.next+1:], l.turns[l.next:])
		l.turns[l.next] = ns
		l.next++
	}
	l.keys[ns] = append(l.keys[ns], key)
	l.len++
}

func (l *fairList) pop() string {
	if l.next >= len(l.turns) {
		l.next = 0
	}
	ns := l.turns[l.next]
	keys := l.keys[ns]
	key := keys[0]
	keys[0] = ""
	if keys = keys[1:]; len(keys) == 0 {
		delete(l.keys, ns)
		l.turns = append(l.turns[:l.next], l.turns[l.next+1:]...)
	} else {
		l.keys[ns] = keys
		l.next++
	}
	l.len--
	return key
}

func (l *fairList) remove(key string) {
	ns := namespaceOf(key)
	keys := l.keys[ns]
	i := slices.Index(keys, key)
	if i < 0 {
		return
	}
	keys = append(keys[:i], keys[i+1:]...)
	l.len--
	if len(keys) > 0 {
		l.keys[ns] = keys
		return
	}
	delete(l.keys, ns)
	t := slices.Index(l.turns, ns)
	l.turns = append(l.turns[:t], l.turns[t+1:]...)
	if t < l.next {
		l.next--
	}
}

// workQueue is a rate-limited, delaying workqueue of the syncer with its
// priority order: one for ExternalSecrets, one for PushSecrets.
type workQueue struct {
	workqueue.TypedRateLimitingInterface[string]
	order *priorityQueue
}

// maxRetryDelay bounds the backoff of a failing ExternalSecret or PushSecret.
const maxRetryDelay = 5 * time.Minute

// newWorkQueue returns a queue; name labels client-go's workqueue metrics,
// so each queue must have its own.
func newWorkQueue(name string, onDepth func(urgent, refresh int)) *workQueue {
	order := newPriorityQueue(onDepth)
	// Backoff per key only: a cluster-wide retry budget would make 1,000
	// ExternalSecrets that failed together during an outage recover slowly.
	limiter := workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, maxRetryDelay)
	q := workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{
		Name: name,
		DelayingQueue: workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[string]{
			Name:  name,
			Queue: workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[string]{Name: name, Queue: order}),
		}),
	})
	return &workQueue{TypedRateLimitingInterface: q, order: order}
}

// AddUrgent queues key ahead of every refresh.
func (q *workQueue) AddUrgent(key string) {
	q.order.mark(key)
	q.Add(key)
}

// runWorkers hands the keys of q to workers calling next until ctx is done,
// once the informer has synced, then waits for the syncs in progress to end.
func runWorkers(ctx context.Context, what string, synced cache.InformerSynced, q *workQueue, workers int, next func(context.Context) bool) {
	if !cache.WaitForNamedCacheSyncWithContext(ctx, synced) {
		return
	}
	klog.FromContext(ctx).Info("Syncing "+what, "workers", workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			wait.UntilWithContext(ctx, func(ctx context.Context) {
				for next(ctx) {
				}
			}, time.Second)
		})
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
}
