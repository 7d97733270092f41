// Package syncwindow decides whether an ExternalSecret's spec.syncWindows
// let veil-syncer refresh its target now, with the meaning External
// Secrets Operator gives them: cron schedules in UTC, each opening a window
// for a duration; kind allow refreshes only while a window is open, kind
// deny never while one is.
package syncwindow

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxScheduleLength bounds a schedule (the CRD's maxLength).
const MaxScheduleLength = 128

// Schedule is a parsed five-field cron schedule (minute, hour, day of
// month, month, day of week), to the minute.
type Schedule struct {
	minute, hour, dom, month, dow uint64
	// domStar, dowStar: the field was "*" or "?". As in cron, a day
	// matches both day fields when either is a star, and either one when
	// neither is.
	domStar, dowStar bool
}

type field struct {
	min, max int
	names    map[string]int
}

var (
	minuteField = field{0, 59, nil}
	hourField   = field{0, 23, nil}
	domField    = field{1, 31, nil}
	monthField  = field{1, 12, map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}}
	dowField    = field{0, 6, map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}}
)

var descriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// Parse reads a schedule: five fields, each "*", "?" (day fields), a
// number or name, a range "a-b", any of these with a step "/n", or a list
// of them separated by commas; or one of @yearly, @annually, @monthly,
// @weekly, @daily, @midnight, @hourly.
func Parse(spec string) (*Schedule, error) {
	if len(spec) > MaxScheduleLength {
		return nil, fmt.Errorf("schedule is %d bytes long, more than %d", len(spec), MaxScheduleLength)
	}
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "@") {
		if strings.HasPrefix(spec, "@every") {
			return nil, fmt.Errorf("schedule %q: @every has no fixed start, so it opens no window; use five cron fields", spec)
		}
		d, ok := descriptors[spec]
		if !ok {
			return nil, fmt.Errorf("schedule %q: unknown descriptor; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly", spec)
		}
		spec = d
	}
	fs := strings.Fields(spec)
	if len(fs) != 5 {
		return nil, fmt.Errorf("schedule %q has %d fields, want 5 (minute hour day-of-month month day-of-week)", spec, len(fs))
	}
	s := &Schedule{}
	var err error
	if s.minute, _, err = parseField(fs[0], minuteField); err != nil {
		return nil, fmt.Errorf("schedule %q: minute: %w", spec, err)
	}
	if s.hour, _, err = parseField(fs[1], hourField); err != nil {
		return nil, fmt.Errorf("schedule %q: hour: %w", spec, err)
	}
	if s.dom, s.domStar, err = parseField(fs[2], domField); err != nil {
		return nil, fmt.Errorf("schedule %q: day of month: %w", spec, err)
	}
	if s.month, _, err = parseField(fs[3], monthField); err != nil {
		return nil, fmt.Errorf("schedule %q: month: %w", spec, err)
	}
	if s.dow, s.dowStar, err = parseField(fs[4], dowField); err != nil {
		return nil, fmt.Errorf("schedule %q: day of week: %w", spec, err)
	}
	return s, nil
}

// parseField returns the set of values of one field as bits, and whether
// it was a star.
func parseField(s string, f field) (uint64, bool, error) {
	var bits uint64
	star := false
	for _, part := range strings.Split(s, ",") {
		b, isStar, err := parsePart(part, f)
		if err != nil {
			return 0, false, err
		}
		bits |= b
		star = star || isStar
	}
	return bits, star, nil
}

func parsePart(part string, f field) (uint64, bool, error) {
	rng, stepText, hasStep := strings.Cut(part, "/")
	lo, hi, step := f.min, f.max, 1
	var star bool
	isStar := rng == "*" || rng == "?"
	switch {
	case isStar:
	default:
		a, b, isRange := strings.Cut(rng, "-")
		var err error
		if lo, err = value(a, f); err != nil {
			return 0, false, err
		}
		hi = lo
		if isRange {
			if hi, err = value(b, f); err != nil {
				return 0, false, err
			}
		} else if hasStep {
			hi = f.max // "a/n": from a to the end, as cron
		}
	}
	if hasStep {
		n, err := strconv.Atoi(stepText)
		if err != nil || n <= 0 || n > f.max-f.min+1 {
			return 0, false, fmt.Errorf("%q: step must be a number from 1 to %d", part, f.max-f.min+1)
		}
		step = n
	}
	// "*" or "*/1" is a star, "*/2" is not (as cron).
	star = isStar && step == 1
	if lo > hi {
		return 0, false, fmt.Errorf("%q: range starts after it ends", part)
	}
	var bits uint64
	for v := lo; v <= hi; v += step {
		bits |= 1 << uint(v)
	}
	return bits, star, nil
}

func value(s string, f field) (int, error) {
	if v, ok := f.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < f.min || v > f.max || len(s) > 2 {
		return 0, fmt.Errorf("%q is not a number from %d to %d", s, f.min, f.max)
	}
	return v, nil
}

func (s *Schedule) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}

// Next is the first time the schedule fires at or after from (in UTC, to
// the minute), if one is at or before until; searches are bounded by
// until, so a schedule that never fires ("30 2 31 2 *") costs no more than
// the span searched.
func (s *Schedule) Next(from, until time.Time) (time.Time, bool) {
	t := from.UTC()
	if t.Truncate(time.Minute) != t {
		t = t.Truncate(time.Minute).Add(time.Minute)
	}
	for !t.After(until) {
		switch {
		case s.month&(1<<uint(t.Month())) == 0:
			t = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		case !s.dayMatches(t):
			t = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
		case s.hour&(1<<uint(t.Hour())) == 0:
			t = t.Truncate(time.Hour).Add(time.Hour)
		case s.minute&(1<<uint(t.Minute())) == 0:
			t = t.Add(time.Minute)
		default:
			return t, true
		}
	}
	return time.Time{}, false
}
