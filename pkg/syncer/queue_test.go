package syncer

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// get takes the next key and marks it done, as a worker would.
func get(t *testing.T, q *workQueue) string {
	t.Helper()
	k, quit := q.Get()
	if quit {
		t.Fatal("queue shut down")
	}
	q.Done(k)
	return k
}

func TestUrgentKeysGoBeforeRefreshes(t *testing.T) {
	var depth [2]int
	q := newWorkQueue("test", func(u, r int) { depth = [2]int{u, r} })
	defer q.ShutDown()
	for _, k := range []string{"r1", "r2", "r3"} {
		q.Add(k)
	}
	q.AddUrgent("new")
	if depth != [2]int{1, 3} {
		t.Errorf("depth = %v, want 1 urgent, 3 refresh", depth)
	}
	// A queued refresh that changes becomes urgent, behind the earlier urgent one.
	q.AddUrgent("r3")
	for _, want := range []string{"new", "r3", "r1", "r2"} {
		if got := get(t, q); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	if depth != [2]int{0, 0} {
		t.Errorf("depth = %v after draining", depth)
	}
}

func TestKeyChangedWhileProcessingIsRequeuedUrgent(t *testing.T) {
	q := newWorkQueue("test", nil)
	defer q.ShutDown()
	q.Add("busy")
	k, _ := q.Get()
	q.Add("r1")
	// Changed while a worker holds it: not handed to a second worker now,
	// but ahead of refreshes once the first is done.
	q.AddUrgent("busy")
	if q.Len() != 1 {
		t.Fatalf("len = %d, want only r1 queued while busy is processed", q.Len())
	}
	q.Done(k)
	if got := get(t, q); got != "busy" {
		t.Errorf("got %s, want busy first", got)
	}
	if got := get(t, q); got != "r1" {
		t.Errorf("got %s, want r1", got)
	}
}

func TestUrgentMarkIsClearedOnceServed(t *testing.T) {
	q := newWorkQueue("test", nil)
	defer q.ShutDown()
	q.AddUrgent("a")
	get(t, q)
	// Its periodic refresh later is an ordinary refresh.
	q.Add("r")
	q.Add("a")
	if got := get(t, q); got != "r" {
		t.Errorf("got %s, want r: a refresh of a must not jump the queue", got)
	}
}

// TestNamespacesTakeTurns: a namespace with a backlog of 10,000 keys delays
// another namespace's first key by one turn, not by its backlog; within a
// namespace keys keep their order; a key moved from refresh to urgent
// leaves its namespace's turn behind when it was its last.
func TestNamespacesTakeTurns(t *testing.T) {
	q := newWorkQueue("test", nil)
	defer q.ShutDown()
	for i := range 10000 {
		q.AddUrgent(fmt.Sprintf("big/es-%05d", i))
	}
	q.AddUrgent("small/a")
	q.AddUrgent("small/b")
	q.AddUrgent("other/x")
	var got []string
	for range 7 {
		got = append(got, get(t, q))
	}
	want := []string{"big/es-00000", "small/a", "other/x", "big/es-00001", "small/b", "big/es-00002", "big/es-00003"}
	if !slices.Equal(got, want) {
		t.Errorf("served %v, want %v", got, want)
	}
	for q.Len() > 0 {
		get(t, q)
	}

	// Refreshes take turns too, after every urgent key.
	q.Add("a/r1")
	q.Add("a/r2")
	q.Add("b/r1")
	q.AddUrgent("c/new")
	q.AddUrgent("b/r1") // b's only refresh becomes urgent
	got = nil
	for q.Len() > 0 {
		got = append(got, get(t, q))
	}
	if want := []string{"c/new", "b/r1", "a/r1", "a/r2"}; !slices.Equal(got, want) {
		t.Errorf("served %v, want %v", got, want)
	}
}

func TestJitter(t *testing.T) {
	for range 1000 {
		if d := jitter(10 * time.Second); d < 9*time.Second || d >= 11*time.Second {
			t.Fatalf("jitter(10s) = %s, want within ±10%%", d)
		}
	}
}
