package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is a scrape of veil-apiserver's /metrics.
type Metrics struct {
	Raw      string
	families map[string]*dto.MetricFamily
}

// VeilMetrics scrapes veil-apiserver's /metrics directly, as the front
// proxy for a cluster admin (the path is authorised like any other).
func (c *Cluster) VeilMetrics(ctx context.Context) (*Metrics, error) {
	return c.VeilReplicaMetrics(ctx, 0)
}

// VeilReplicaMetrics scrapes replica i (0 is the first, or only, one).
func (c *Cluster) VeilReplicaMetrics(ctx context.Context, i int) (*Metrics, error) {
	cert, err := c.FrontProxyCertificate()
	if err != nil {
		return nil, err
	}
	return scrape(ctx, c.VeilHTTPClient(&cert), c.VeilReplicaURL(i)+"/metrics",
		map[string]string{"X-Remote-User": "admin", "X-Remote-Group": "system:masters"})
}

// scrape reads and parses a Prometheus text endpoint.
func scrape(ctx context.Context, client *http.Client, url string, headers map[string]string) (*Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	return parseMetrics(body)
}

func parseMetrics(body []byte) (*Metrics, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics: %w", err)
	}
	return &Metrics{Raw: string(body), families: families}, nil
}

// Has says whether the scrape has the metric name at all: a counter that
// has never been incremented, or a metric that was renamed, has none.
func (m *Metrics) Has(name string) bool {
	_, ok := m.families[name]
	return ok
}

// Value is Sum for an assertion: it fails the test when the scrape has no
// metric of that name. Sum reads an absent metric as 0, so a check that
// nothing happened would pass after the metric was renamed or dropped;
// Value makes that check fail instead.
func (m *Metrics) Value(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	if !m.Has(name) {
		t.Fatalf("/metrics has no %s: was it renamed, or has nothing recorded it yet?", name)
	}
	return m.Sum(name, labels)
}

// Baseline is a scrape taken at one point of a test. Servers outlive
// tests, so their counters hold every earlier test's work; a test asks
// its Baseline how far a metric moved since then, which is its own work.
type Baseline struct {
	t      testing.TB
	scrape func() (*Metrics, error)
	base   *Metrics
}

// MetricsSince takes a baseline scrape now with scrape, which wraps
// Cluster.VeilMetrics or Syncer.Metrics with a fresh context each call.
func MetricsSince(t testing.TB, scrape func() (*Metrics, error)) *Baseline {
	t.Helper()
	base, err := scrape()
	if err != nil {
		t.Fatal(err)
	}
	return &Baseline{t: t, scrape: scrape, base: base}
}

// Delta scrapes again and returns how far the metric (summed as Sum does)
// moved since the baseline. It fails the test when the new scrape has no
// metric of that name, so that a delta of 0 means nothing happened rather
// than that the metric is gone. The baseline may lack it: a counter
// nothing has incremented yet is not exposed at all.
func (b *Baseline) Delta(name string, labels map[string]string) float64 {
	b.t.Helper()
	now, err := b.scrape()
	if err != nil {
		b.t.Fatal(err)
	}
	return now.Value(b.t, name, labels) - b.base.Sum(name, labels)
}

// Sum adds up the samples of a counter or gauge (or the counts of a
// histogram) whose labels include every given label.
func (m *Metrics) Sum(name string, labels map[string]string) float64 {
	f, ok := m.families[name]
	if !ok {
		return 0
	}
	var total float64
next:
	for _, metric := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range metric.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case metric.Counter != nil:
			total += metric.GetCounter().GetValue()
		case metric.Gauge != nil:
			total += metric.GetGauge().GetValue()
		case metric.Histogram != nil:
			total += float64(metric.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// ParseMetrics parses a Prometheus text exposition, such as
// kube-apiserver's /metrics.
func ParseMetrics(body []byte) (*Metrics, error) { return parseMetrics(body) }

// HistogramSeries is one labelled series of a histogram.
type HistogramSeries struct {
	Labels map[string]string
	Count  float64
	Sum    float64
}

// Histograms returns every series of the histogram name.
func (m *Metrics) Histograms(name string) []HistogramSeries {
	f, ok := m.families[name]
	if !ok {
		return nil
	}
	var out []HistogramSeries
	for _, metric := range f.GetMetric() {
		if metric.Histogram == nil {
			continue
		}
		s := HistogramSeries{Labels: map[string]string{}, Count: float64(metric.GetHistogram().GetSampleCount()), Sum: metric.GetHistogram().GetSampleSum()}
		for _, l := range metric.GetLabel() {
			s.Labels[l.GetName()] = l.GetValue()
		}
		out = append(out, s)
	}
	return out
}
