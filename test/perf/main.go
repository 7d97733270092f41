// Command perf measures Veil against the native Kubernetes paths on a real
// control plane, in one run, and prints the ratios (`make bench`). It is a
// measurement, never a pass/fail test.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/veil-dev/veil/test/harness"
)

var (
	only        = flag.String("only", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames(), ","))
	requests    = flag.Int("requests", 3000, "sequential requests per path")
	duration    = flag.Duration("duration", 10*time.Second, "how long each concurrent measurement runs")
	concurrency = flag.Int("concurrency", 8, "concurrent clients")
	valueSize   = flag.Int("value-size", 1024, "bytes of the value read")
	keep        = flag.Bool("keep", false, "keep the cluster's directory (logs) after the run")
	kubeFlags   = flag.String("kube-apiserver-flags", "", "extra flags for kube-apiserver, space-separated (for example its API Priority and Fairness seats: --max-requests-inflight=20 --max-mutating-requests-inflight=10)")
)

// scenario is one measurement on the shared cluster.
type scenario struct {
	name, what string
	run        func(ctx context.Context, c *harness.Cluster) error
}

var scenarios []scenario

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	selected := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n != "" {
			selected[n] = true
		}
	}
	c, err := harness.Start(ctx, harness.Options{Progress: os.Stderr, Keep: *keep, KubeAPIServerArgs: strings.Fields(*kubeFlags)})
	if err != nil {
		return err
	}
	defer c.Stop()
	for _, s := range scenarios {
		if len(selected) > 0 && !selected[s.name] {
			continue
		}
		fmt.Printf("\n## %s: %s\n\n", s.name, s.what)
		if err := s.run(ctx, c); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}
