package syncwindow

import (
	"fmt"
	"time"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// Decision says whether a refresh may happen now, and until when that holds.
type Decision struct {
	// Allowed: a refresh may happen now.
	Allowed bool
	// Until is when to look again: when the window that holds the refresh
	// closes (deny) or the next window opens (allow). Zero when no
	// window will change the decision within the span searched.
	Until time.Time
	// Reason says why, naming the window; it carries no value.
	Reason string
	// Invalid lists windows that were not understood, and ignored.
	Invalid []string
}

// horizon bounds how far ahead the next opening of an allow window is
// looked for: a schedule with no firing within it is looked at again then.
const horizon = 366 * 24 * time.Hour

// Decide applies w at now. Windows whose schedule does not parse, or whose
// duration is out of bounds, are ignored and listed, as External Secrets
// Operator ignores them (the CRD refuses most); so an allow list with
// none valid holds every refresh.
func Decide(w *configv1alpha1.SyncWindows, now time.Time) Decision {
	if w == nil || len(w.Windows) == 0 {
		return Decision{Allowed: true}
	}
	now = now.UTC()
	var d Decision
	type open struct {
		i     int
		start time.Time
		end   time.Time
	}
	var active []open
	var nextOpen time.Time
	nextOpenIdx := -1
	for i, win := range w.Windows {
		if i >= configv1alpha1.MaxSyncWindows {
			d.Invalid = append(d.Invalid, fmt.Sprintf("windows[%d]: more than %d windows", i, configv1alpha1.MaxSyncWindows))
			continue
		}
		dur := win.Duration.Duration
		if dur <= 0 || dur > configv1alpha1.MaxSyncWindowDuration {
			d.Invalid = append(d.Invalid, fmt.Sprintf("windows[%d]: duration %s is not within (0, %s]", i, dur, configv1alpha1.MaxSyncWindowDuration))
			continue
		}
		s, err := Parse(win.Schedule)
		if err != nil {
			d.Invalid = append(d.Invalid, fmt.Sprintf("windows[%d]: %v", i, err))
			continue
		}
		// Open now: it fired at some time in (now-dur, now]. (A window is
		// closed at its end, so looking again then makes progress.)
		if start, ok := s.Next(now.Add(-dur).Add(time.Nanosecond), now); ok {
			active = append(active, open{i: i, start: start, end: start.Add(dur)})
			continue
		}
		if next, ok := s.Next(now, now.Add(horizon)); ok && (nextOpen.IsZero() || next.Before(nextOpen)) {
			nextOpen, nextOpenIdx = next, i
		}
	}
	switch w.Kind {
	case configv1alpha1.SyncWindowDeny:
		if len(active) == 0 {
			d.Allowed = true
			return d
		}
		// Held at least until the first of the open windows closes; looked
		// at again then (a later firing may keep it held).
		first := active[0]
		for _, a := range active[1:] {
			if a.end.Before(first.end) {
				first = a
			}
		}
		d.Until = first.end
		d.Reason = fmt.Sprintf("deny window %d (schedule %q, duration %s) is open from %s to %s UTC",
			first.i, w.Windows[first.i].Schedule, w.Windows[first.i].Duration.Duration, first.start.Format(time.RFC3339), first.end.Format(time.RFC3339))
	default: // allow
		if len(active) > 0 {
			d.Allowed = true
			return d
		}
		if nextOpenIdx < 0 {
			d.Reason = "no allow window opens within a year"
			d.Until = now.Add(24 * time.Hour)
			return d
		}
		d.Until = nextOpen
		d.Reason = fmt.Sprintf("no allow window is open; the next, window %d (schedule %q), opens at %s UTC",
			nextOpenIdx, w.Windows[nextOpenIdx].Schedule, nextOpen.Format(time.RFC3339))
	}
	return d
}
