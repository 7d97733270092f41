package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// VeilProviderClientID is the identity of veil-apiserver's client
// certificate towards provider processes (a URI SAN), the one every
// provider the harness starts accepts.
const VeilProviderClientID = "spiffe://cluster.local/ns/" + VeilNamespace + "/sa/" + VeilServiceAccount

// Provider is a running veil-provider.
type Provider struct {
	*Process
	// Address is host:port of its gRPC listener; ServerName the DNS SAN of
	// its certificate, which a ProviderRegistration names.
	Address, ServerName string
	// CAPEM signs its certificate (the registration's caBundle).
	CAPEM []byte
	// Dir is its working directory, outside logs/: its configuration and
	// the credentials its configuration names (credentialsDir) live there.
	Dir string
	// MetricsAddress is host:port of its /metrics (--metrics-listen).
	MetricsAddress string
}

// ConfigFile is the configuration file it reads (again when it changes).
func (p *Provider) ConfigFile() string { return filepath.Join(p.Dir, "config.yaml") }

// WriteConfig replaces its configuration, as a ConfigMap volume's update
// would (a rename), with "{{dir}}" replaced by Dir.
func (p *Provider) WriteConfig(config string) error {
	tmp := p.ConfigFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(replaceDir(config, p.Dir)), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.ConfigFile())
}

// Metrics scrapes its /metrics.
func (p *Provider) Metrics(ctx context.Context) (*Metrics, error) {
	return scrape(ctx, http.DefaultClient, "http://"+p.MetricsAddress+"/metrics", nil)
}

// ProviderBinary is the path of the veil-provider binary.
func (c *Cluster) ProviderBinary() string { return c.bins.provider }

// StartProvider starts veil-provider --provider=kind as its own process,
// serving the stores of config (YAML, as docs/veil-provider.md describes;
// "{{dir}}" in it is replaced by Provider.Dir, for credentialsDir), with a
// serving certificate of name.veil-providers.svc from the provider CA and
// only veil-apiserver's client identity accepted. prepare, if set, runs
// before the process starts, to write credential files under Dir. Its log
// is logs/name.log, which FindCanary searches.
func (c *Cluster) StartProvider(ctx context.Context, name, kind, config string, prepare func(dir string) error) (*Provider, error) {
	dir := filepath.Join(c.Dir, "providers", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &Provider{ServerName: name + ".veil-providers.svc", CAPEM: c.ProviderCA.CertPEM, Dir: dir}
	serving, err := c.ProviderCA.Issue(dir, "serving", name, nil, []string{p.ServerName})
	if err != nil {
		return nil, err
	}
	if prepare != nil {
		if err := prepare(dir); err != nil {
			return nil, err
		}
	}
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, []byte(replaceDir(config, dir)), 0o600); err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	p.Address, p.MetricsAddress = hostPort(ports[0]), hostPort(ports[1])
	c.progress("starting %s (veil-provider --provider=%s) on %s", name, kind, p.Address)
	proc, err := startProcess(name, filepath.Join(c.Dir, "logs"), c.bins.provider, []string{
		"--provider=" + kind,
		"--listen=" + p.Address,
		"--tls-cert-file=" + serving.CertFile, "--tls-private-key-file=" + serving.KeyFile,
		"--client-ca-file=" + c.ProviderCA.CertFile,
		"--allowed-client=" + VeilProviderClientID,
		"--config=" + configFile,
		"--metrics-listen=" + p.MetricsAddress,
		"--v=2",
	}, nil)
	if err != nil {
		return nil, err
	}
	p.Process = proc
	// It listens once its configuration and certificates are loaded.
	if err := proc.waitFor(ctx, time.Minute, func(ctx context.Context) error {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.Address)
		if err != nil {
			return err
		}
		return conn.Close()
	}); err != nil {
		proc.Stop()
		return nil, fmt.Errorf("%s did not listen on %s: %w", name, p.Address, err)
	}
	return p, nil
}

func replaceDir(s, dir string) string { return strings.ReplaceAll(s, "{{dir}}", dir) }
