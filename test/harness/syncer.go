package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
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

func (c *Cluster) buildSyncer(ctx context.Context) error {
	c.progress("go build ./cmd/syncer")
	c.bins.syncer = filepath.Join(c.Dir, "bin", "veil-syncer")
	build := exec.CommandContext(ctx, "go", "build", "-o", c.bins.syncer, "./cmd/syncer")
	build.Dir = c.Root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building veil-syncer: %w\n%s", err, out)
	}
	return nil
}

// SyncerBinary is the path of the veil-syncer binary.
func (c *Cluster) SyncerBinary() string { return c.bins.syncer }

// StartSyncer starts a veil-syncer as its ServiceAccount, so it runs with
// exactly the RBAC artifacts/ ships. name is its log file (logs/<name>.log,
// searched by FindCanary) and its identity in the leader election Lease;
// args come after the harness's flags. It returns once /readyz answers,
// which does not mean it leads.
func (c *Cluster) StartSyncer(ctx context.Context, name string, args ...string) (*Syncer, error) {
	exp := int64(48 * 3600)
	tr, err := c.KubeClient.CoreV1().ServiceAccounts(VeilNamespace).CreateToken(ctx, SyncerServiceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for %s/%s: %w", VeilNamespace, SyncerServiceAccount, err)
	}
	kubeconfig := filepath.Join(c.Dir, name+".kubeconfig")
	if err := c.writeKubeconfig(kubeconfig, SyncerServiceAccount, &clientcmdapi.AuthInfo{Token: tr.Status.Token}); err != nil {
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.MetricsURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s: %s", s.MetricsURL, resp.Status, body)
	}
	return parseMetrics(body)
}
