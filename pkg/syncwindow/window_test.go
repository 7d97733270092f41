package syncwindow

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestParseRefuses(t *testing.T) {
	for spec, want := range map[string]string{
		"":                       "want 5",
		"* * * *":                "want 5",
		"* * * * * *":            "want 5",
		"60 * * * *":             "minute",
		"* 24 * * *":             "hour",
		"* * 0 * *":              "day of month",
		"* * * 13 *":             "month",
		"* * * * 7":              "day of week",
		"5-1 * * * *":            "range starts after",
		"*/0 * * * *":            "step",
		"*/61 * * * *":           "step",
		"a * * * *":              "minute",
		"@every 1h":              "no fixed start",
		"@often":                 "unknown descriptor",
		"001 * * * *":            "minute",
		strings.Repeat("1", 200): "longer than",
	} {
		_, err := Parse(spec)
		if err == nil || !strings.Contains(err.Error(), want) && !(want == "longer than" && strings.Contains(err.Error(), "more than")) {
			t.Errorf("Parse(%q) = %v, want an error about %s", spec, err, want)
		}
	}
}

func TestNext(t *testing.T) {
	for _, c := range []struct {
		spec, from, want string
	}{
		{"0 9 * * 1-5", "2026-12-03T06:00:00Z", "2026-12-03T09:00:00Z"}, // a Thursday
		{"0 9 * * 1-5", "2026-12-04T09:00:30Z", "2026-12-07T09:00:00Z"}, // Friday after 9:00 -> Monday
		{"0 9 * * mon-fri", "2026-12-05T00:00:00Z", "2026-12-07T09:00:00Z"},
		{"*/15 * * * *", "2026-12-03T06:16:00Z", "2026-12-03T06:30:00Z"},
		{"5/20 * * * *", "2026-12-03T06:00:00Z", "2026-12-03T06:05:00Z"},
		{"0 0 1 jan *", "2026-12-03T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"@daily", "2026-12-03T00:00:01Z", "2026-12-04T00:00:00Z"},
		{"@hourly", "2026-12-03T06:00:00Z", "2026-12-03T06:00:00Z"},
		{"@weekly", "2026-12-03T00:00:00Z", "2026-12-06T00:00:00Z"}, // Sunday
		{"@monthly", "2026-12-03T00:00:00Z", "2027-01-01T00:00:00Z"},
		{"@yearly", "2026-12-03T00:00:00Z", "2027-01-01T00:00:00Z"},
		// Both day fields restricted: either matches (the 13th, or a Friday).
		{"0 0 13 * 5", "2026-12-01T00:00:00Z", "2026-12-04T00:00:00Z"},
		// One a star: both must match (a Friday the 13th... any Friday here).
		{"0 0 * * 5", "2026-12-05T00:00:00Z", "2026-12-11T00:00:00Z"},
		{"0 0 13 * *", "2026-12-05T00:00:00Z", "2026-12-13T00:00:00Z"},
		{"30 2 29 2 *", "2026-12-03T00:00:00Z", "2028-02-29T02:30:00Z"},
		{"0,30 1 * * *", "2026-12-03T01:10:00Z", "2026-12-03T01:30:00Z"},
	} {
		s, err := Parse(c.spec)
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.spec, err)
		}
		got, ok := s.Next(at(c.from), at(c.from).Add(5*366*24*time.Hour))
		if !ok || !got.Equal(at(c.want)) {
			t.Errorf("%q from %s: %v %v, want %s", c.spec, c.from, got, ok, c.want)
		}
	}
	// A schedule that never fires costs only the span searched.
	s, _ := Parse("0 0 31 2 *")
	if got, ok := s.Next(at("2026-01-01T00:00:00Z"), at("2036-01-01T00:00:00Z")); ok {
		t.Errorf("February 31st fired at %v", got)
	}
}

func windows(kind configv1alpha1.SyncWindowKind, ws ...configv1alpha1.SyncWindow) *configv1alpha1.SyncWindows {
	return &configv1alpha1.SyncWindows{Kind: kind, Windows: ws}
}

func win(schedule string, d time.Duration) configv1alpha1.SyncWindow {
	return configv1alpha1.SyncWindow{Schedule: schedule, Duration: metav1.Duration{Duration: d}}
}

func TestDecide(t *testing.T) {
	office := win("0 9 * * 1-5", 8*time.Hour) // weekdays 09:00-17:00 UTC
	for _, c := range []struct {
		name    string
		w       *configv1alpha1.SyncWindows
		now     string
		allowed bool
		until   string
		reason  string
	}{
		{"none", nil, "2026-12-03T10:00:00Z", true, "", ""},
		{"allow, inside", windows(configv1alpha1.SyncWindowAllow, office), "2026-12-03T10:00:00Z", true, "", ""},
		{"allow, at the opening", windows(configv1alpha1.SyncWindowAllow, office), "2026-12-03T09:00:00Z", true, "", ""},
		{"allow, before", windows(configv1alpha1.SyncWindowAllow, office), "2026-12-03T06:00:00Z", false, "2026-12-03T09:00:00Z", "opens at 2026-12-03T09:00:00Z"},
		{"allow, after closing", windows(configv1alpha1.SyncWindowAllow, office), "2026-12-03T17:00:00Z", false, "2026-12-04T09:00:00Z", "window 0"},
		{"allow, weekend", windows(configv1alpha1.SyncWindowAllow, office), "2026-12-05T12:00:00Z", false, "2026-12-07T09:00:00Z", ""},
		{"deny, inside", windows(configv1alpha1.SyncWindowDeny, office), "2026-12-03T10:00:00Z", false, "2026-12-03T17:00:00Z", "deny window 0"},
		{"deny, outside", windows(configv1alpha1.SyncWindowDeny, office), "2026-12-03T18:00:00Z", true, "", ""},
		{"deny, at the closing", windows(configv1alpha1.SyncWindowDeny, office), "2026-12-03T17:00:00Z", true, "", ""},
		{"deny, two open: the first to close", windows(configv1alpha1.SyncWindowDeny, office, win("0 10 * * *", time.Hour)), "2026-12-03T10:30:00Z", false, "2026-12-03T11:00:00Z", "window 1"},
		{"allow, a window spanning midnight", windows(configv1alpha1.SyncWindowAllow, win("0 22 * * *", 4*time.Hour)), "2026-12-04T01:00:00Z", true, "", ""},
		{"allow, none valid", windows(configv1alpha1.SyncWindowAllow, win("@every 1h", time.Hour)), "2026-12-04T01:00:00Z", false, "2026-12-05T01:00:00Z", "no allow window"},
		{"deny, none valid", windows(configv1alpha1.SyncWindowDeny, win("0 0 * * *", 0)), "2026-12-04T00:00:00Z", true, "", ""},
	} {
		d := Decide(c.w, at(c.now))
		if d.Allowed != c.allowed || (c.until != "" && !d.Until.Equal(at(c.until))) || !strings.Contains(d.Reason, c.reason) {
			t.Errorf("%s: %+v, want allowed %v until %s, reason with %q", c.name, d, c.allowed, c.until, c.reason)
		}
	}
	d := Decide(windows(configv1alpha1.SyncWindowDeny, win("61 * * * *", time.Hour), win("0 0 * * *", 800*time.Hour)), at("2026-12-04T00:00:00Z"))
	if !d.Allowed || len(d.Invalid) != 2 || !strings.Contains(d.Invalid[0], "windows[0]") || !strings.Contains(d.Invalid[1], "windows[1]") {
		t.Errorf("invalid windows: %+v, want both ignored and named", d)
	}
}

// A window the whole duration long is open for exactly that long: looking
// again at Until always makes progress.
func TestDecideProgresses(t *testing.T) {
	w := windows(configv1alpha1.SyncWindowDeny, win("* * * * *", time.Minute))
	d := Decide(w, at("2026-12-03T10:00:30Z"))
	if d.Allowed || !d.Until.After(at("2026-12-03T10:00:30Z")) {
		t.Fatalf("%+v, want held until later", d)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 9 * * 1-5", "*/5 1,2,3 ? jan-mar sun", "@daily", "1-2/3 * * * *"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec)
		if err != nil {
			return
		}
		from := at("2026-12-03T10:00:30Z")
		if got, ok := s.Next(from, from.Add(2*366*24*time.Hour)); ok && got.Before(from) {
			t.Fatalf("%q: next %v before %v", spec, got, from)
		}
	})
}
