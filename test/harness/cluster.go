// Package harness starts a real local control plane — etcd, kube-apiserver
// with aggregation, optionally kube-controller-manager — and veil-apiserver
// behind an APIService, all on free loopback ports. `make run` and every
// end-to-end test use it, so what is demonstrated is what is tested.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
)

// Where Veil is installed; artifacts/ uses the same names.
const (
	VeilNamespace      = "veil-system"
	VeilServiceAccount = "veil-apiserver"
	VeilService        = "veil-apiserver"
	APIServiceName     = "v1alpha1.externalsecrets.veil.dev"
)

// Options tune a cluster.
type Options struct {
	// Dir holds certificates, data and logs; a temporary directory when empty.
	Dir string
	// Keep leaves Dir in place after Stop.
	Keep bool
	// VeilArgs are extra flags for veil-apiserver.
	VeilArgs []string
	// KubeAPIServerArgs are extra flags for kube-apiserver, after the
	// harness's own (a later flag wins).
	KubeAPIServerArgs []string
	// ControllerManager also runs kube-controller-manager (garbage
	// collector, namespace and clusterrole-aggregation controllers).
	ControllerManager bool
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// VeilReplicas, when 2 or more, runs that many veil-apiserver
	// processes behind one Service with an EndpointSlice for each, and
	// kube-apiserver routes to the endpoints (--enable-aggregator-routing),
	// as it does in a cluster. Kubernetes refuses loopback endpoints, so
	// the replicas listen on this machine's first non-loopback IPv4
	// address (traffic to it stays on the machine).
	VeilReplicas int
	// ControlPlaneOnly starts etcd and kube-apiserver alone: no Veil is
	// built, installed or started (tests of a provider that reads
	// Kubernetes itself, such as providers/kubernetes).
	ControlPlaneOnly bool
	// RemoteOnly installs Veil as artifacts/providers/remote-only does: no
	// ClusterRole or binding veil-apiserver:provider-credentials, and
	// veil-apiserver runs with --in-process-providers=false.
	RemoteOnly bool
	// NodeAddress, when set, is a local address kube-apiserver listens on
	// and advertises instead of 127.0.0.1, for a real node's pods to reach
	// it (test/node: the node's bridge address). It also routes aggregated
	// requests to the Service's endpoints (pod addresses), as a cluster
	// without kube-proxy on its control plane does, and, with
	// ControllerManager, runs the controllers that turn a Deployment into
	// Ready pods behind a Service. With ControlPlaneOnly, Veil is left to
	// the caller to install (test/node installs the Helm chart).
	NodeAddress string
}

// ProviderCredentialsRole is the ClusterRole (and binding) of the rules
// only providers in veil-apiserver's process need; RemoteOnly leaves it out.
const ProviderCredentialsRole = "veil-apiserver:provider-credentials"

// Cluster is a running local control plane with Veil.
type Cluster struct {
	opts Options
	// Root is the repository root; Dir the cluster's working directory.
	Root, Dir string

	bins  binaries
	ports clusterPorts

	Etcd, KubeAPIServer, ControllerManager, Veil *Process

	EtcdURL      string
	APIServerURL string
	VeilPort     int

	ClusterCA, FrontProxyCA, VeilCA *CA
	veilServing                     *Pair
	// ProviderCA signs provider processes' serving certificates and
	// veil-apiserver's client certificate towards them (providerClient),
	// as a deployer's or cert-manager's CA would.
	ProviderCA     *CA
	providerClient *Pair

	// AdminKubeconfig is a system:masters kubeconfig.
	AdminKubeconfig string
	// AuditLog is kube-apiserver's audit log, VeilAuditLog veil-apiserver's;
	// both are written with artifacts/base/audit-policy.yaml.
	AuditLog, VeilAuditLog string

	Admin      *rest.Config
	KubeClient kubernetes.Interface
	VeilClient versioned.Interface

	veilKubeconfig string

	// Replicas mode (Options.VeilReplicas > 1): Veils are the replicas
	// (Veil is Veils[0]), listening on veilHost at veilPorts.
	Veils     []*Process
	veilHost  string
	veilPorts []int
	veilArgs  []string
}

type clusterPorts struct{ etcd, etcdPeer, apiserver, veil int }

type binaries struct {
	etcd, kubeAPIServer, kubeControllerManager, kubectl, veil, syncer, provider string
}

// Start builds or reuses every binary and starts the control plane and Veil.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	c = &Cluster{opts: opts}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	if c.Root, err = repoRoot(); err != nil {
		return c, err
	}
	c.Dir = opts.Dir
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "veil-cluster-"); err != nil {
			return c, err
		}
	}
	for _, d := range []string{"pki", "logs", "etcd"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return c, err
		}
	}
	if err := c.installBinaries(ctx); err != nil {
		return c, err
	}
	replicas := max(opts.VeilReplicas, 1)
	ports, err := freePorts(3 + replicas)
	if err != nil {
		return c, err
	}
	c.ports = clusterPorts{etcd: ports[0], etcdPeer: ports[1], apiserver: ports[2], veil: ports[3]}
	c.veilHost, c.veilPorts = "127.0.0.1", ports[3:]
	if replicas > 1 {
		if c.veilHost, err = hostIPv4(); err != nil {
			return c, err
		}
	}
	c.EtcdURL = "http://" + hostPort(c.ports.etcd)
	c.APIServerURL = "https://" + hostPort(c.ports.apiserver)
	if opts.NodeAddress != "" {
		c.APIServerURL = "https://" + net.JoinHostPort(opts.NodeAddress, strconv.Itoa(c.ports.apiserver))
	}
	c.VeilPort = c.ports.veil
	if err := c.makePKI(); err != nil {
		return c, err
	}
	if err := c.startEtcd(ctx); err != nil {
		return c, err
	}
	if err := c.startKubeAPIServer(ctx); err != nil {
		return c, err
	}
	if opts.ControlPlaneOnly {
		if opts.ControllerManager && opts.NodeAddress != "" {
			if err := c.startControllerManager(); err != nil {
				return c, err
			}
		}
		return c, nil
	}
	if err := c.installVeil(ctx); err != nil {
		return c, err
	}
	if opts.RemoteOnly {
		c.opts.VeilArgs = append(append([]string(nil), opts.VeilArgs...), "--in-process-providers=false")
	}
	if err := c.StartVeil(ctx, c.opts.VeilArgs...); err != nil {
		return c, err
	}
	if opts.ControllerManager {
		if err := c.startControllerManager(); err != nil {
			return c, err
		}
	}
	return c, nil
}

func (c *Cluster) progress(format string, args ...any) {
	fmt.Fprintf(c.opts.Progress, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Stop stops every process, Veil first, and removes the working directory
// unless asked to keep it.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	for _, p := range c.Veils {
		p.Stop()
	}
	for _, p := range []*Process{c.Veil, c.ControllerManager, c.KubeAPIServer, c.Etcd} {
		p.Stop()
	}
	if !c.opts.Keep && c.opts.Dir == "" && c.Dir != "" {
		os.RemoveAll(c.Dir)
	}
}

// CachedBinary returns the path hack/install-TOOL.sh printed for the cached
// build of TOOL (etcd, kube, vault, or node: kubelet and kube-scheduler). It never builds: a build takes
// minutes and would outlast the timeouts of the tests that call this, so a
// missing binary is an error at once, naming the command that builds it.
func CachedBinary(ctx context.Context, root, tool string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "hack", "install-"+tool+".sh"), "--print-path")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s (hack/install-%s.sh --print-path: %v)", strings.TrimSpace(stderr.String()), tool, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("finding the repository: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run from inside the Veil repository")
	}
	return filepath.Dir(mod), nil
}

// installBinaries finds the cached real components (built by `make tools`)
// and builds veil-apiserver and veil-syncer.
func (c *Cluster) installBinaries(ctx context.Context) error {
	var err error
	c.progress("looking up etcd and Kubernetes in the binary cache")
	if c.bins.etcd, err = CachedBinary(ctx, c.Root, "etcd"); err != nil {
		return err
	}
	kubeDir, err := CachedBinary(ctx, c.Root, "kube")
	if err != nil {
		return err
	}
	c.bins.kubeAPIServer = filepath.Join(kubeDir, "kube-apiserver")
	c.bins.kubeControllerManager = filepath.Join(kubeDir, "kube-controller-manager")
	c.bins.kubectl = filepath.Join(kubeDir, "kubectl")
	if c.opts.ControlPlaneOnly {
		return nil
	}

	c.bins.veil = filepath.Join(c.Dir, "bin", "veil-apiserver")
	c.bins.syncer = filepath.Join(c.Dir, "bin", "veil-syncer")
	c.bins.provider = filepath.Join(c.Dir, "bin", "veil-provider")
	for pkg, out := range map[string]string{"./cmd/apiserver": c.bins.veil, "./cmd/syncer": c.bins.syncer, "./cmd/veil-provider": c.bins.provider} {
		c.progress("go build %s", pkg)
		build := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		build.Dir = c.Root
		if b, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %w\n%s", pkg, err, b)
		}
	}
	return nil
}

// Kubectl is the path of the kubectl binary matching kube-apiserver.
func (c *Cluster) Kubectl() string { return c.bins.kubectl }

func (c *Cluster) pki(name string) string { return filepath.Join(c.Dir, "pki", name) }

func (c *Cluster) makePKI() error {
	dir := filepath.Join(c.Dir, "pki")
	var err error
	if c.ClusterCA, err = NewCA(dir, "cluster-ca"); err != nil {
		return err
	}
	if c.FrontProxyCA, err = NewCA(dir, "front-proxy-ca"); err != nil {
		return err
	}
	if c.VeilCA, err = NewCA(dir, "veil-ca"); err != nil {
		return err
	}
	if _, err = c.ClusterCA.Issue(dir, "kube-apiserver", "kube-apiserver", nil,
		append([]string{"127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", KubernetesServiceIP}, c.nodeAddresses()...)); err != nil {
		return err
	}
	// kube-apiserver presents this to Veil when it proxies; Veil trusts it
	// through the front-proxy CA published in extension-apiserver-authentication.
	if _, err = c.FrontProxyCA.Issue(dir, "front-proxy-client", "front-proxy-client", nil, nil); err != nil {
		return err
	}
	// The aggregator verifies Veil as <service>.<namespace>.svc.
	if c.veilServing, err = c.VeilCA.Issue(dir, "veil-apiserver", VeilService, nil,
		[]string{VeilService + "." + VeilNamespace + ".svc", "localhost", "127.0.0.1", c.veilHost}); err != nil {
		return err
	}
	if c.ProviderCA, err = NewCA(dir, "provider-ca"); err != nil {
		return err
	}
	if c.providerClient, err = c.ProviderCA.IssueWorkload(dir, "veil-apiserver-provider-client", VeilProviderClientID); err != nil {
		return err
	}
	if _, _, err = writeSigningKey(dir); err != nil {
		return err
	}
	admin, err := c.ClusterCA.Issue(dir, "admin", "admin", []string{"system:masters"}, nil)
	if err != nil {
		return err
	}
	c.AdminKubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	return c.writeKubeconfig(c.AdminKubeconfig, "admin", &clientcmdapi.AuthInfo{ClientCertificateData: admin.CertPEM, ClientKeyData: admin.KeyPEM})
}

func (c *Cluster) writeKubeconfig(path, user string, auth *clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["veil-local"] = &clientcmdapi.Cluster{Server: c.APIServerURL, CertificateAuthorityData: c.ClusterCA.CertPEM}
	cfg.AuthInfos[user] = auth
	cfg.Contexts["veil-local"] = &clientcmdapi.Context{Cluster: "veil-local", AuthInfo: user}
	cfg.CurrentContext = "veil-local"
	return clientcmd.WriteToFile(*cfg, path)
}

// UserKubeconfig writes a kubeconfig authenticating as user (with groups)
// by a client certificate, and returns its path.
func (c *Cluster) UserKubeconfig(user string, groups ...string) (string, error) {
	p, err := c.ClusterCA.Issue(c.pki(""), "user-"+user, user, groups, nil)
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.Dir, user+".kubeconfig")
	return path, c.writeKubeconfig(path, user, &clientcmdapi.AuthInfo{ClientCertificateData: p.CertPEM, ClientKeyData: p.KeyPEM})
}

// UserConfig returns a client configuration for user, as UserKubeconfig.
func (c *Cluster) UserConfig(user string, groups ...string) (*rest.Config, error) {
	path, err := c.UserKubeconfig(user, groups...)
	if err != nil {
		return nil, err
	}
	return clientcmd.BuildConfigFromFlags("", path)
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	var err error
	peer := "http://" + hostPort(c.ports.etcdPeer)
	c.progress("starting etcd on %s", c.EtcdURL)
	c.Etcd, err = startProcess("etcd", filepath.Join(c.Dir, "logs"), c.bins.etcd, []string{
		"--name=veil-local",
		"--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + c.EtcdURL, "--advertise-client-urls=" + c.EtcdURL,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=veil-local=" + peer,
		"--log-level=warn",
		// A throwaway cluster: durability is not worth the fsyncs.
		"--unsafe-no-fsync",
	}, nil)
	if err != nil {
		return err
	}
	return c.Etcd.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, c.EtcdURL+"/health")
	})
}

func (c *Cluster) startKubeAPIServer(ctx context.Context) error {
	var err error
	c.AuditLog = filepath.Join(c.Dir, "logs", "kube-apiserver-audit.log")
	c.progress("starting kube-apiserver on %s", c.APIServerURL)
	c.KubeAPIServer, err = startProcess("kube-apiserver", filepath.Join(c.Dir, "logs"), c.bins.kubeAPIServer, append([]string{
		"--etcd-servers=" + c.EtcdURL,
		"--bind-address=" + c.listenAddress(), "--advertise-address=" + c.listenAddress(),
		"--secure-port=" + strconv.Itoa(c.ports.apiserver),
		"--cert-dir=" + c.pki("kube-apiserver-certs"),
		"--tls-cert-file=" + c.pki("kube-apiserver.crt"), "--tls-private-key-file=" + c.pki("kube-apiserver.key"),
		"--client-ca-file=" + c.ClusterCA.CertFile,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + c.pki("sa.pub"), "--service-account-signing-key-file=" + c.pki("sa.key"),
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--authorization-mode=RBAC",
		// As kubeadm and kind run it: a privileged pod template then reaches
		// admission, where Veil's policies must refuse it themselves.
		"--allow-privileged=true",
		// Aggregation: kube-apiserver proxies with this client certificate,
		// and tells Veil the user in these headers.
		"--requestheader-client-ca-file=" + c.FrontProxyCA.CertFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-uid-headers=X-Remote-Uid",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + c.pki("front-proxy-client.crt"), "--proxy-client-key-file=" + c.pki("front-proxy-client.key"),
		"--audit-policy-file=" + filepath.Join(c.Root, "artifacts", "base", "audit-policy.yaml"),
		"--audit-log-path=" + c.AuditLog,
		"--profiling=false",
		// No Service endpoints for kube-apiserver itself: it listens on
		// loopback, which the endpoint reconciler refuses to publish.
		"--endpoint-reconciler-type=none",
	}, append(c.kubeAPIServerReplicaArgs(), c.opts.KubeAPIServerArgs...)...), nil)
	if err != nil {
		return err
	}
	if c.Admin, err = clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig); err != nil {
		return err
	}
	if c.KubeClient, err = kubernetes.NewForConfig(c.Admin); err != nil {
		return err
	}
	if c.VeilClient, err = versioned.NewForConfig(c.Admin); err != nil {
		return err
	}
	return c.KubeAPIServer.waitFor(ctx, 2*time.Minute, func(ctx context.Context) error {
		body, err := c.KubeClient.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%v: %s", err, body)
		}
		return nil
	})
}

// serviceAccountKubeconfig writes a kubeconfig with a token of a
// ServiceAccount of veil-system, so Veil's components run with exactly the
// RBAC artifacts/ ships.
func (c *Cluster) serviceAccountKubeconfig(ctx context.Context, serviceAccount, path string) error {
	exp := int64(48 * 3600)
	tr, err := c.KubeClient.CoreV1().ServiceAccounts(VeilNamespace).CreateToken(ctx, serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("requesting a token for %s/%s: %w", VeilNamespace, serviceAccount, err)
	}
	return c.writeKubeconfig(path, serviceAccount, &clientcmdapi.AuthInfo{Token: tr.Status.Token})
}

func httpOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// DumpLogs writes the last lines of the API servers' logs, for a failed run
// whose directory is about to be removed.
func (c *Cluster) DumpLogs(w io.Writer, lines int) {
	for _, p := range []*Process{c.Veil, c.KubeAPIServer} {
		if p == nil {
			continue
		}
		b, err := os.ReadFile(p.LogFile)
		if err != nil {
			continue
		}
		all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(all) > lines {
			all = all[len(all)-lines:]
		}
		fmt.Fprintf(w, "==== last %d lines of %s\n%s\n", len(all), p.LogFile, strings.Join(all, "\n"))
	}
}

// The Service network of the cluster, and the ClusterIP of the
// `kubernetes` Service, which pods dial (KUBERNETES_SERVICE_HOST) and which
// kube-apiserver's serving certificate names.
const (
	ServiceCIDR         = "10.0.0.0/24"
	KubernetesServiceIP = "10.0.0.1"
)

// listenAddress is where kube-apiserver listens: loopback, or the node's
// address (Options.NodeAddress).
func (c *Cluster) listenAddress() string {
	if c.opts.NodeAddress != "" {
		return c.opts.NodeAddress
	}
	return "127.0.0.1"
}

func (c *Cluster) nodeAddresses() []string {
	if c.opts.NodeAddress == "" {
		return nil
	}
	return []string{c.opts.NodeAddress}
}

// APIServerPort is kube-apiserver's secure port.
func (c *Cluster) APIServerPort() int { return c.ports.apiserver }
