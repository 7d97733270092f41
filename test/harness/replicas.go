package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/veil-dev/veil/pkg/generated/clientset/versioned"
)

// replicated says whether the cluster runs several veil-apiserver
// replicas behind EndpointSlices.
func (c *Cluster) replicated() bool { return len(c.veilPorts) > 1 }

// kubeAPIServerReplicaArgs route aggregated requests to the Service's
// endpoints, as kube-apiserver does where it runs no kube-proxy.
func (c *Cluster) kubeAPIServerReplicaArgs() []string {
	if !c.replicated() && c.opts.NodeAddress == "" {
		return nil
	}
	return []string{"--enable-aggregator-routing=true"}
}

// veilService is the Service the APIService names: one replica is an
// ExternalName for localhost (this control plane runs no pods); several
// are a ClusterIP Service without selector whose EndpointSlices the
// harness keeps, as the endpoint controller would for pods.
func (c *Cluster) veilService() map[string]any {
	if !c.replicated() {
		return map[string]any{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": VeilService, "namespace": VeilNamespace},
			"spec": map[string]any{
				"type": "ExternalName", "externalName": "localhost",
				"ports": []any{map[string]any{"name": "https", "port": int64(c.VeilPort), "protocol": "TCP"}},
			},
		}
	}
	return map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": VeilService, "namespace": VeilNamespace},
		"spec": map[string]any{
			"type":  "ClusterIP",
			"ports": []any{map[string]any{"name": "https", "port": int64(c.VeilPort), "protocol": "TCP"}},
		},
	}
}

// hostIPv4 is this machine's first non-loopback IPv4 address.
func hostIPv4() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, i := range ifaces {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				return n.IP.String(), nil
			}
		}
	}
	return "", errors.New("several veil-apiserver replicas need a non-loopback IPv4 address on this machine for their EndpointSlices (Kubernetes refuses loopback endpoints), and there is none")
}

// VeilReplicaURL is replica i's own address.
func (c *Cluster) VeilReplicaURL(i int) string {
	return "https://" + net.JoinHostPort(c.veilHost, strconv.Itoa(c.veilPorts[i]))
}

// StartVeilReplica starts replica i with the cluster's flags and, when
// it is ready, publishes it as a ready endpoint.
func (c *Cluster) StartVeilReplica(ctx context.Context, i int) error {
	name := "veil-apiserver"
	if i > 0 {
		name = fmt.Sprintf("veil-apiserver-%d", i)
	}
	audit := filepath.Join(c.Dir, "logs", name+"-audit.log")
	if i == 0 {
		c.VeilAuditLog = audit
	}
	c.progress("starting %s on %s", name, net.JoinHostPort(c.veilHost, strconv.Itoa(c.veilPorts[i])))
	p, err := startProcess(name, filepath.Join(c.Dir, "logs"), c.bins.veil, append([]string{
		"--bind-address=" + c.veilHost,
		"--secure-port=" + strconv.Itoa(c.veilPorts[i]),
		"--tls-cert-file=" + c.veilServing.CertFile, "--tls-private-key-file=" + c.veilServing.KeyFile,
		"--kubeconfig=" + c.veilKubeconfig,
		"--authentication-kubeconfig=" + c.veilKubeconfig,
		"--authorization-kubeconfig=" + c.veilKubeconfig,
		"--audit-policy-file=" + filepath.Join(c.Root, "artifacts", "base", "audit-policy.yaml"),
		"--audit-log-path=" + audit,
		"--leader-elect-identity=" + name,
		"--provider-client-cert-file=" + c.providerClient.CertFile, "--provider-client-key-file=" + c.providerClient.KeyFile,
		"--v=2",
	}, c.veilArgs...), nil)
	if err != nil {
		return err
	}
	c.Veils[i] = p
	if i == 0 {
		c.Veil = p
	}
	direct := c.VeilHTTPClient(nil)
	if err := p.waitFor(ctx, time.Minute, func(ctx context.Context) error {
		return httpOK(ctx, direct, c.VeilReplicaURL(i)+"/readyz")
	}); err != nil {
		return err
	}
	return c.publishEndpoint(ctx, i, true)
}

// StopVeilReplica stops replica i as Kubernetes stops a pod: its endpoint
// is marked terminating (not ready), and at the same time the process is
// sent SIGTERM, after which it serves until --shutdown-delay-duration
// ends and its requests finish.
func (c *Cluster) StopVeilReplica(ctx context.Context, i int) error {
	if !c.replicated() {
		return errors.New("the cluster runs one veil-apiserver; start it with Options.VeilReplicas")
	}
	errc := make(chan error, 1)
	go func() { errc <- c.publishEndpoint(ctx, i, false) }()
	c.Veils[i].Stop()
	return <-errc
}

// publishEndpoint writes replica i's EndpointSlice, ready or terminating.
func (c *Cluster) publishEndpoint(ctx context.Context, i int, ready bool) error {
	if !c.replicated() {
		return nil
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%d", VeilService, i), Namespace: VeilNamespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: VeilService, discoveryv1.LabelManagedBy: "veil-test-harness"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{c.veilHost},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(true), Terminating: ptr.To(!ready)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(c.veilPorts[i])), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	slices := c.KubeClient.DiscoveryV1().EndpointSlices(VeilNamespace)
	cur, err := slices.Get(ctx, slice.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, slice, metav1.CreateOptions{})
	case err == nil:
		slice.ResourceVersion = cur.ResourceVersion
		_, err = slices.Update(ctx, slice, metav1.UpdateOptions{})
	}
	return err
}

// VeilReplicaClient talks to replica i directly as the aggregator does,
// for user with groups: with the front-proxy client certificate and the
// user in request headers.
func (c *Cluster) VeilReplicaClient(i int, user string, groups ...string) (versioned.Interface, error) {
	cfg := &rest.Config{
		Host: c.VeilReplicaURL(i),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.VeilCA.CertPEM,
			CertFile: c.pki("front-proxy-client.crt"), KeyFile: c.pki("front-proxy-client.key"),
		},
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return roundTripper(func(r *http.Request) (*http.Response, error) {
				r = r.Clone(r.Context())
				r.Header.Set("X-Remote-User", user)
				for _, g := range groups {
					r.Header.Add("X-Remote-Group", g)
				}
				return rt.RoundTrip(r)
			})
		},
	}
	return versioned.NewForConfig(cfg)
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// VeilReplicaAuditLog is replica i's audit log.
func (c *Cluster) VeilReplicaAuditLog(i int) string {
	if i == 0 {
		return filepath.Join(c.Dir, "logs", "veil-apiserver-audit.log")
	}
	return filepath.Join(c.Dir, "logs", fmt.Sprintf("veil-apiserver-%d-audit.log", i))
}
