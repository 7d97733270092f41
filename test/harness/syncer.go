package harness

import (
	"context"
	"net/http"
	"path/filepath"
	"time"
)

// SyncerServiceAccount is veil-syncer's identity; artifacts/base/syncer
// grants it its RBAC.
const SyncerServiceAccount = "veil-syncer"

// Syncer is a running veil-syncer.
type Syncer struct {
	*Process
	// MetricsURL serves its /metrics, /healthz and /readyz.
	MetricsURL string
}

// SyncerBinary is the path of the veil-syncer binary.
func (c *Cluster) SyncerBinary() string { return c.bins.syncer }

// StartSyncer starts a veil-syncer as its ServiceAccount, so it runs with
// exactly the RBAC artifacts/ ships. name is its log file (logs/<name>.log,
// searched by FindCanary) and its identity in the leader election Lease;
// args come after the harness's flags. It returns once /readyz answers,
// which does not mean it leads.
func (c *Cluster) StartSyncer(ctx context.Context, name string, args ...string) (*Syncer, error) {
	kubeconfig := filepath.Join(c.Dir, name+".kubeconfig")
	if err := c.serviceAccountKubeconfig(ctx, SyncerServiceAccount, kubeconfig); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	c.progress("starting %s", name)
	p, err := startProcess(name, filepath.Join(c.Dir, "logs"), c.bins.syncer, append([]string{
		"--kubeconfig=" + kubeconfig,
		"--namespace=" + VeilNamespace,
		"--metrics-bind-address=" + hostPort(port),
		"--leader-elect-identity=" + name,
		"--v=2",
	}, args...), nil)
	if err != nil {
		return nil, err
	}
	s := &Syncer{Process: p, MetricsURL: "http://" + hostPort(port)}
	client := &http.Client{Timeout: 5 * time.Second}
	if err := p.waitFor(ctx, time.Minute, func(ctx context.Context) error {
		return httpOK(ctx, client, s.MetricsURL+"/readyz")
	}); err != nil {
		p.Stop()
		return nil, err
	}
	return s, nil
}

// Metrics scrapes the syncer's /metrics.
func (s *Syncer) Metrics(ctx context.Context) (*Metrics, error) {
	return scrape(ctx, http.DefaultClient, s.MetricsURL+"/metrics", nil)
}
