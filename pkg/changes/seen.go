package changes

import (
	"sync"
	"time"

	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// Seen remembers each value change this process has seen in an
// ExternalSecret's status, and when it first saw it, by its own clock:
// values it read before then may predate the change. No clock of another
// machine is compared with this one's. A change is known by its ID, which
// every ExternalSecret reading the changed keys shares, so the first of
// them read after the change reads the value again and the others are
// served that read.
type Seen struct {
	clock clock.PassiveClock
	// forget is how long a sighting is kept: no cached value is older.
	forget time.Duration

	mu      sync.Mutex
	seen    map[string]time.Time // change ID → first seen
	inserts int
}

// NewSeen returns a Seen that forgets a sighting after forget (the value
// cache's longest lifetime: nothing read before is still cached).
func NewSeen(clk clock.PassiveClock, forget time.Duration) *Seen {
	return &Seen{clock: clk, forget: forget, seen: map[string]time.Time{}}
}

// MaxAge bounds how old a value read for es may be: younger than the
// moment this process first saw es's last value change. ok is false when
// es records no change.
func (s *Seen) MaxAge(es *configv1alpha1.ExternalSecret) (_ time.Duration, ok bool) {
	c := es.Status.LastValueChange
	if s == nil || c == nil || c.ID == "" {
		return 0, false
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	at, known := s.seen[c.ID]
	if !known {
		at = now
		s.seen[c.ID] = at
		if s.inserts++; s.inserts >= 1024 {
			s.inserts = 0
			s.sweep(now)
		}
	}
	// A value read by a call that began when the change was first seen
	// began after the change was made (it was recorded only after), so it
	// counts as new: one nanosecond more.
	return now.Sub(at) + time.Nanosecond, true
}

// sweep forgets sightings older than anything cached. One forgotten and
// seen again counts from then, which costs at most one read more.
func (s *Seen) sweep(now time.Time) {
	for id, at := range s.seen {
		if now.Sub(at) > s.forget {
			delete(s.seen, id)
		}
	}
}
