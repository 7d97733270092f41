package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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

// singleBackend are the binaries that link one backend, the ones the
// images run; a kind without one runs cmd/veil-provider, which links all.
var singleBackend = map[string]string{"vault": "./cmd/veil-provider-vault", "aws": "./cmd/veil-provider-aws"}

var providerBuild sync.Mutex

// providerBinary is the binary serving kind: for vault and aws the
// image's (built on first use, so clusters that start no provider do not
// pay for it), else veil-provider.
func (c *Cluster) providerBinary(ctx context.Context, kind string) (string, error) {
	pkg, ok := singleBackend[kind]
	if !ok {
		return c.bins.provider, nil
	}
	providerBuild.Lock()
	defer providerBuild.Unlock()
	out := filepath.Join(c.Dir, "bin", "veil-provider-"+kind)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	c.progress("go build %s", pkg)
	build := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	build.Dir = c.Root
	if b, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// StartProvider starts veil-provider --provider=kind as its own process
// (veil-provider-vault or veil-provider-aws for those kinds: what their
// images run),
// serving the stores of config (YAML, as docs/veil-provider.md describes;
// "{{dir}}" in it is replaced by Provider.Dir, for credentialsDir), with a
// serving certificate of name.veil-providers.svc from the provider CA and
// only veil-apiserver's client identity accepted. prepare, if set, runs
// before the process starts, to write credential files under Dir; args
// are added to its flags. Its log is logs/name.log, which FindCanary
// searches.
func (c *Cluster) StartProvider(ctx context.Context, name, kind, config string, prepare func(dir string) error, args ...string) (*Provider, error) {
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
	bin, err := c.providerBinary(ctx, kind)
	if err != nil {
		return nil, err
	}
	c.progress("starting %s (%s --provider=%s) on %s", name, filepath.Base(bin), kind, p.Address)
	proc, err := startProcess(name, filepath.Join(c.Dir, "logs"), bin, append([]string{
		"--provider=" + kind,
		"--listen=" + p.Address,
		"--tls-cert-file=" + serving.CertFile, "--tls-private-key-file=" + serving.KeyFile,
		"--client-ca-file=" + c.ProviderCA.CertFile,
		"--allowed-client=" + VeilProviderClientID,
		"--config=" + configFile,
		"--metrics-listen=" + p.MetricsAddress,
		"--v=2",
	}, args...), nil)
	if err != nil {
		return nil, err
	}
	if err := p.listening(ctx, name, proc); err != nil {
		return nil, err
	}
	return p, nil
}

// listening waits until proc, a provider process, accepts connections on
// p.Address: it listens once its configuration and certificates are
// loaded. On success p.Process is proc; otherwise proc is stopped.
func (p *Provider) listening(ctx context.Context, name string, proc *Process) error {
	if err := proc.waitFor(ctx, time.Minute, func(ctx context.Context) error {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.Address)
		if err != nil {
			return err
		}
		return conn.Close()
	}); err != nil {
		proc.Stop()
		return fmt.Errorf("%s did not listen on %s: %w", name, p.Address, err)
	}
	p.Process = proc
	return nil
}

func replaceDir(s, dir string) string { return strings.ReplaceAll(s, "{{dir}}", dir) }
