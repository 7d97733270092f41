package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// installVeil applies what artifacts/base ships — CRDs, namespace,
// ServiceAccounts, RBAC (without veil-apiserver:provider-credentials when
// Options.RemoteOnly), admission policy, APIService — except the
// in-cluster Deployments, PodDisruptionBudget and Service: this control
// plane runs no pods, so the Service becomes an ExternalName for
// localhost, and the APIService gets the port and the CA of this run.
func (c *Cluster) installVeil(ctx context.Context) error {
	c.progress("applying artifacts/base")
	err := c.ApplyKustomization(ctx, filepath.Join(c.Root, "artifacts", "base"), func(u *unstructured.Unstructured) (bool, error) {
		switch u.GetKind() {
		case "Deployment", "PodDisruptionBudget", "Service":
			return false, nil
		case "ClusterRole", "ClusterRoleBinding":
			if c.opts.RemoteOnly && u.GetName() == ProviderCredentialsRole {
				return false, nil
			}
		case "APIService":
			if err := unstructured.SetNestedField(u.Object, base64.StdEncoding.EncodeToString(c.VeilCA.CertPEM), "spec", "caBundle"); err != nil {
				return false, err
			}
			return true, unstructured.SetNestedField(u.Object, int64(c.VeilPort), "spec", "service", "port")
		}
		return true, nil
	}, c.veilService())
	if err != nil {
		return err
	}
	if _, _, err = c.RunKubectl(ctx, "", nil, "wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "app.kubernetes.io/part-of=veil"); err != nil {
		return err
	}
	return c.waitForPolicies(ctx)
}

// waitForPolicies waits until kube-apiserver enforces the admission
// policies just applied: it loads policies and bindings through informers
// a moment after they are created, and a test that ran before then would
// see its refusals pass. Dry-run writes by veil-syncer's identity that two
// of them must refuse tell when the informers have caught up with the
// apply (they deliver in the order objects were written).
func (c *Cluster) waitForPolicies(ctx context.Context) error {
	cfg := rest.CopyConfig(c.Admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + VeilNamespace + ":" + SyncerServiceAccount}
	syncer, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	probes := []struct {
		policy, namespace string
		labels            map[string]string
	}{
		{"veil-syncer-secrets", VeilNamespace, nil},
		{"veil-syncer-excluded-namespaces", "kube-system", map[string]string{configv1alpha1.ManagedByLabel: configv1alpha1.ManagedBySyncer}},
	}
	for _, p := range probes {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{GenerateName: "veil-policy-probe-", Labels: p.labels}}
		err := c.KubeAPIServer.waitFor(ctx, 30*time.Second, func(ctx context.Context) error {
			_, err := syncer.CoreV1().Secrets(p.namespace).Create(ctx, secret, dryRun)
			if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+p.policy+"'") {
				return nil
			}
			return fmt.Errorf("ValidatingAdmissionPolicy %s is not enforced yet: a dry-run create as veil-syncer answered %v", p.policy, err)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// ApplyKustomization renders the kustomization in dir with kubectl, lets
// edit change each object or drop it (by returning false), and applies the
// result, and extra objects, server-side as the admin.
func (c *Cluster) ApplyKustomization(ctx context.Context, dir string, edit func(*unstructured.Unstructured) (bool, error), extra ...map[string]any) error {
	rendered, _, err := c.RunKubectl(ctx, "", nil, "kustomize", dir)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(rendered), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("reading %s: %w", dir, err)
		}
		if u.Object == nil {
			continue
		}
		if edit != nil {
			keep, err := edit(&u)
			if err != nil {
				return fmt.Errorf("%s: %s %s: %w", dir, u.GetKind(), u.GetName(), err)
			}
			if !keep {
				continue
			}
		}
		if err := writeDoc(&out, u.Object); err != nil {
			return err
		}
	}
	for _, obj := range extra {
		if err := writeDoc(&out, obj); err != nil {
			return err
		}
	}
	_, _, err = c.RunKubectl(ctx, "", out.Bytes(), "apply", "--server-side", "-f", "-")
	return err
}

func writeDoc(w io.Writer, obj map[string]any) error {
	b, err := yaml.Marshal(obj)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "---\n%s", b)
	return err
}

// StartVeil starts veil-apiserver as its ServiceAccount with the given
// flags (Start passes Options.VeilArgs), and waits until kube-apiserver
// serves its APIService and its OpenAPI.
func (c *Cluster) StartVeil(ctx context.Context, args ...string) error {
	c.veilKubeconfig = filepath.Join(c.Dir, "veil-apiserver.kubeconfig")
	if err := c.serviceAccountKubeconfig(ctx, VeilServiceAccount, c.veilKubeconfig); err != nil {
		return err
	}
	c.veilArgs = args
	c.Veils = make([]*Process, len(c.veilPorts))
	for i := range c.veilPorts {
		if err := c.StartVeilReplica(ctx, i); err != nil {
			return err
		}
	}
	c.Veil = c.Veils[0]
	if err := c.Veil.waitFor(ctx, time.Minute, func(ctx context.Context) error {
		_, err := c.KubeClient.Discovery().ServerResourcesForGroupVersion("externalsecrets.veil.dev/v1alpha1")
		return err
	}); err != nil {
		return err
	}
	// kube-apiserver aggregates Veil's OpenAPI a moment after discovery
	// works; kubectl explain needs it.
	return c.Veil.waitFor(ctx, time.Minute, func(ctx context.Context) error {
		paths, err := c.KubeClient.Discovery().OpenAPIV3().Paths()
		if err != nil {
			return err
		}
		if _, ok := paths["apis/externalsecrets.veil.dev/v1alpha1"]; !ok {
			return errors.New("kube-apiserver does not serve Veil's OpenAPI v3 yet")
		}
		return nil
	})
}

// StopVeil stops veil-apiserver.
func (c *Cluster) StopVeil() {
	for _, p := range c.Veils {
		p.Stop()
	}
}

// RestartVeil stops veil-apiserver and starts it again with the cluster's
// flags plus args; its cache and clients start empty.
func (c *Cluster) RestartVeil(ctx context.Context, args ...string) error {
	c.StopVeil()
	return c.StartVeil(ctx, append(append([]string(nil), c.opts.VeilArgs...), args...)...)
}

// VeilURL is veil-apiserver's own address (the first replica's),
// bypassing kube-apiserver.
func (c *Cluster) VeilURL() string { return c.VeilReplicaURL(0) }

// VeilHTTPClient talks to veil-apiserver directly, verifying its serving
// certificate; with a client certificate when one is given.
func (c *Cluster) VeilHTTPClient(cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.VeilCA.CertPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// FrontProxyCertificate is the client certificate kube-apiserver presents
// to Veil, for tests that act as the aggregator.
func (c *Cluster) FrontProxyCertificate() (tls.Certificate, error) {
	return tls.LoadX509KeyPair(c.pki("front-proxy-client.crt"), c.pki("front-proxy-client.key"))
}

func (c *Cluster) startControllerManager() error {
	c.progress("starting kube-controller-manager")
	var err error
	// clusterrole-aggregation fills the built-in view, edit and admin
	// from the roles labelled to aggregate into them, Veil's included:
	// tests then grant what a real cluster grants.
	controllers := "garbagecollector,namespace,clusterrole-aggregation"
	var extra []string
	if c.opts.NodeAddress != "" {
		// A real node (test/node): Deployments become ReplicaSets and pods,
		// pods become EndpointSlices, PodDisruptionBudgets are kept, and
		// every namespace gets kube-root-ca.crt, which the projected
		// ServiceAccount volume of every pod mounts. The node lifecycle
		// controller lifts the not-ready taint kube-apiserver puts on a new
		// node (admission plugin TaintNodesByCondition) once it is Ready.
		controllers += ",deployment-controller,replicaset-controller,endpoints-controller,endpointslice-controller,disruption-controller,serviceaccount-controller,root-ca-certificate-publisher-controller,pod-garbage-collector-controller,node-lifecycle-controller"
		extra = []string{"--root-ca-file=" + c.ClusterCA.CertFile}
	}
	c.ControllerManager, err = startProcess("kube-controller-manager", filepath.Join(c.Dir, "logs"), c.bins.kubeControllerManager, append([]string{
		"--kubeconfig=" + c.AdminKubeconfig,
		"--controllers=" + controllers,
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
	}, extra...), nil)
	// Without --secure-port it serves no health endpoint to wait for; tests
	// that need it observe its effects (garbage collection) instead.
	return err
}

// RunKubectl runs kubectl against the cluster, as the admin when kubeconfig
// is empty, with stdin when given. The error carries stderr.
func (c *Cluster) RunKubectl(ctx context.Context, kubeconfig string, stdin []byte, args ...string) (stdout, stderr []byte, err error) {
	if kubeconfig == "" {
		kubeconfig = c.AdminKubeconfig
	}
	cmd := exec.CommandContext(ctx, c.bins.kubectl, append([]string{"--kubeconfig=" + kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.Bytes(), errOut.Bytes(), fmt.Errorf("kubectl %v: %w: %s", args, err, bytes.TrimSpace(errOut.Bytes()))
	}
	return out.Bytes(), errOut.Bytes(), nil
}
