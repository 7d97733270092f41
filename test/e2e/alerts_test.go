package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

// promqlMetric finds the metric names in PromQL: an identifier followed
// by a selector, a range or the end of an aggregation's argument.
var promqlMetric = regexp.MustCompile(`\b([a-z_:][a-z0-9_:]*)\s*[{\[)]`)

// promqlGrouping is an aggregation's label list, which names labels, not
// metrics.
var promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)

// promqlWords are PromQL's functions and keywords that the pattern above
// also matches.
var promqlWords = []string{"sum", "max", "min", "avg", "count", "rate", "irate", "increase", "by", "without", "on", "ignoring", "histogram_quantile", "abs", "absent", "delta", "deriv", "topk", "bottomk", "clamp_min", "clamp_max", "time", "vector", "scalar"}

// TestAlertsNameExportedMetrics: every metric an expression of the
// shipped PrometheusRule or Grafana dashboard names is exported by a
// running binary —
// veil-apiserver, veil-syncer or kube-apiserver — so no alert silently
// watches a metric that was renamed or never existed.
func TestAlertsNameExportedMetrics(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(cluster.Root, "charts", "veil", "templates", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, line := range strings.Split(string(rules), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(line), "expr:"); ok {
			exprs = append(exprs, strings.TrimSpace(e))
		}
	}
	if len(exprs) < 4 {
		t.Fatalf("found %d alert expressions in the chart's PrometheusRule; the test reads lines starting with expr:", len(exprs))
	}
	var dashboard struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(filepath.Join(cluster.Root, "charts", "veil", "dashboards", "veil.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dashboard); err != nil {
		t.Fatal(err)
	}
	for _, p := range dashboard.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}

	// Make each binary record what the alerts watch: a provider call, a
	// sync, and kube-apiserver's view of the APIService.
	countedProviderCall(t)
	s := startSyncer(t)
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	newTargetES(t, ns, "synced", configv1alpha1.ExternalSecretTarget{}, dataRef("value", "k", ""))
	waitSecret(t, ns, "synced", func(*corev1.Secret) error { return nil })
	waitReady(t, ns, "synced", configv1alpha1.ReasonSynced)
	// A value read twice within its refresh interval: a cache hit.
	createExternalSecret(t, ns, "cached", storeRef("store"), nil, dataRef("value", "k", ""))
	mustValue(t, ns, "cached")
	mustValue(t, ns, "cached")

	veil, err := cluster.VeilMetrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	syncer, err := s.Metrics(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cluster.KubeClient.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	kube, err := harness.ParseMetrics(raw)
	if err != nil {
		t.Fatal(err)
	}
	exported := func(name string) bool {
		for _, m := range []*harness.Metrics{veil, syncer, kube} {
			// A histogram's series are exported under its family name.
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			if m.Has(name) || m.Has(base) {
				return true
			}
		}
		return false
	}
	checked := 0
	for _, e := range exprs {
		for _, m := range promqlMetric.FindAllStringSubmatch(promqlGrouping.ReplaceAllString(e, ""), -1) {
			name := m[1]
			if slices.Contains(promqlWords, name) {
				continue
			}
			checked++
			if !exported(name) {
				t.Errorf("expression %q names %s, which no running binary exports", e, name)
			}
		}
	}
	if checked < len(exprs) {
		t.Fatalf("checked %d metric names in %d expressions: the pattern misses some", checked, len(exprs))
	}
	t.Logf("checked %d metric names in %d alert expressions", checked, len(exprs))
}
