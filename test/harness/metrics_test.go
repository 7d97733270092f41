package harness

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// fatalRecorder stands in for a test so that a helper's t.Fatal can be
// observed: it records the message and ends the goroutine as t.Fatal does.
type fatalRecorder struct {
	testing.TB
	failed string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatal(args ...any) {
	r.failed = fmt.Sprint(args...)
	runtime.Goexit()
}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f as a test body would run, in its own goroutine.
func (r *fatalRecorder) run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

func mustParse(t *testing.T, text string) *Metrics {
	t.Helper()
	m, err := parseMetrics([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const callsBefore = `# TYPE veil_provider_calls_total counter
veil_provider_calls_total{provider="vault",operation="kv-get",result="ok"} 3
veil_provider_calls_total{provider="vault",operation="kv-put",result="ok"} 1
`

const callsAfter = `# TYPE veil_provider_calls_total counter
veil_provider_calls_total{provider="vault",operation="kv-get",result="ok"} 5
veil_provider_calls_total{provider="vault",operation="kv-put",result="ok"} 1
`

// TestBaselineDelta: a delta counts only what happened since the baseline,
// per label selection.
func TestBaselineDelta(t *testing.T) {
	scrapes := []string{callsBefore, callsAfter}
	b := MetricsSince(t, func() (*Metrics, error) {
		text := scrapes[0]
		scrapes = scrapes[1:]
		return parseMetrics([]byte(text))
	})
	if d := b.Delta("veil_provider_calls_total", map[string]string{"operation": "kv-get"}); d != 2 {
		t.Errorf("kv-get delta %v, want 2", d)
	}
	scrapes = []string{callsAfter}
	if d := b.Delta("veil_provider_calls_total", map[string]string{"operation": "kv-put"}); d != 0 {
		t.Errorf("kv-put delta %v, want 0", d)
	}
}

// TestBaselineDeltaFailsOnMissingMetric: asking for a metric the scrape
// does not have — renamed, or misspelt in the test — fails the test rather
// than reading as a delta of 0.
func TestBaselineDeltaFailsOnMissingMetric(t *testing.T) {
	r := &fatalRecorder{TB: t}
	reached := false
	r.run(func() {
		b := MetricsSince(r, func() (*Metrics, error) { return parseMetrics([]byte(callsBefore)) })
		b.Delta("veil_provider_call_total", nil)
		reached = true
	})
	if reached {
		t.Fatal("Delta of a metric that does not exist returned")
	}
	if !strings.Contains(r.failed, "veil_provider_call_total") {
		t.Errorf("the failure %q does not name the missing metric", r.failed)
	}
}

// TestBaselineAllowsMetricNewSinceBaseline: a counter nothing had
// incremented is absent from the baseline; its first samples are the delta.
func TestBaselineAllowsMetricNewSinceBaseline(t *testing.T) {
	scrapes := []string{"", callsBefore}
	b := MetricsSince(t, func() (*Metrics, error) {
		text := scrapes[0]
		scrapes = scrapes[1:]
		return parseMetrics([]byte(text))
	})
	if d := b.Delta("veil_provider_calls_total", nil); d != 4 {
		t.Errorf("delta %v, want 4", d)
	}
}

// TestValueFailsOnMissingMetric: Value is Sum that refuses an absent name.
func TestValueFailsOnMissingMetric(t *testing.T) {
	m := mustParse(t, callsBefore)
	if v := m.Value(t, "veil_provider_calls_total", map[string]string{"operation": "kv-get"}); v != 3 {
		t.Errorf("Value %v, want 3", v)
	}
	r := &fatalRecorder{TB: t}
	r.run(func() { m.Value(r, "veil_cache_hits_total", nil) })
	if !strings.Contains(r.failed, "veil_cache_hits_total") {
		t.Errorf("Value of an absent metric did not fail the test (failure %q)", r.failed)
	}
}
