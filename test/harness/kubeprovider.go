package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubernetesProviderPackage is the main package of veil-provider-kubernetes.
const KubernetesProviderPackage = "./providers/kubernetes/cmd/veil-provider-kubernetes"

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as the
// ServiceAccount namespace/name with a token from the TokenRequest API,
// and returns its path: a process run with it has exactly the RBAC of
// that ServiceAccount.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name string) (string, error) {
	exp := int64(48 * 3600)
	tr, err := c.KubeClient.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for %s/%s: %w", namespace, name, err)
	}
	path := filepath.Join(c.Dir, "sa-"+namespace+"-"+name+".kubeconfig")
	return path, c.writeKubeconfig(path, "system:serviceaccount:"+namespace+":"+name, &clientcmdapi.AuthInfo{Token: tr.Status.Token})
}

// kubeProviderBuild serialises builds of veil-provider-kubernetes.
var kubeProviderBuild sync.Mutex

// kubernetesProviderBinary builds veil-provider-kubernetes into the
// cluster's bin/ the first time a cluster needs it, as installBinaries
// builds veil-apiserver: with go build, which reuses Go's build cache.
func (c *Cluster) kubernetesProviderBinary(ctx context.Context) (string, error) {
	kubeProviderBuild.Lock()
	defer kubeProviderBuild.Unlock()
	path := filepath.Join(c.Dir, "bin", "veil-provider-kubernetes")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	c.progress("go build %s", KubernetesProviderPackage)
	build := exec.CommandContext(ctx, "go", "build", "-o", path, KubernetesProviderPackage)
	build.Dir = c.Root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", KubernetesProviderPackage, err, out)
	}
	return path, nil
}

// StartKubernetesProvider starts veil-provider-kubernetes as its own
// process, serving the stores of config (YAML, as providers/kubernetes
// documents; "{{dir}}" is replaced by Provider.Dir), with a serving
// certificate of name.veil-providers.svc from the provider CA and only
// veil-apiserver's client identity accepted. Its log is logs/name.log,
// which FindCanary searches.
func (c *Cluster) StartKubernetesProvider(ctx context.Context, name, config string) (*Provider, error) {
	bin, err := c.kubernetesProviderBinary(ctx)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.Dir, "providers", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &Provider{ServerName: name + ".veil-providers.svc", CAPEM: c.ProviderCA.CertPEM, Dir: dir}
	serving, err := c.ProviderCA.Issue(dir, "serving", name, nil, []string{p.ServerName})
	if err != nil {
		return nil, err
	}
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, []byte(replaceDir(config, dir)), 0o600); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p.Address = hostPort(port)
	c.progress("starting %s (veil-provider-kubernetes) on %s", name, p.Address)
	proc, err := startProcess(name, filepath.Join(c.Dir, "logs"), bin, []string{
		"--listen=" + p.Address,
		"--tls-cert-file=" + serving.CertFile, "--tls-private-key-file=" + serving.KeyFile,
		"--client-ca-file=" + c.ProviderCA.CertFile,
		"--allowed-client=" + VeilProviderClientID,
		"--config=" + configFile,
		"--log-level=debug",
	}, nil)
	if err != nil {
		return nil, err
	}
	if err := p.listening(ctx, name, proc); err != nil {
		return nil, err
	}
	return p, nil
}
