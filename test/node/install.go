package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"

	"github.com/veil-dev/veil/test/harness"
)

// Where the chart is installed.
const (
	Namespace = harness.VeilNamespace
	Release   = "veil"
)

var apiServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// Images are the tars of `make images` the node runs, and the tag they
// carry (v$(cat VERSION)); an error names `make images` when one is missing.
func Images(root string) (paths []string, tag string, err error) {
	version, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		return nil, "", err
	}
	for _, name := range []string{"veil-apiserver", "veil-syncer"} {
		p := filepath.Join(root, "out", "images", name+".tar")
		if _, err := os.Stat(p); err != nil {
			return nil, "", fmt.Errorf("%s is missing: run 'make images' first", p)
		}
		paths = append(paths, p)
	}
	return paths, "v" + strings.TrimSpace(string(version)), nil
}

// StartControlPlane starts the harness's control plane for the node:
// kube-apiserver on the node's address, with the controllers a Deployment
// needs. New must have made the bridge first.
func StartControlPlane(ctx context.Context, dir string, progress interface{ Write([]byte) (int, error) }) (*harness.Cluster, error) {
	return harness.Start(ctx, harness.Options{
		Dir: dir, ControlPlaneOnly: true, ControllerManager: true, NodeAddress: NodeIP, Progress: progress,
	})
}

// WaitReady waits for the node to be Ready.
func (n *Node) WaitReady(ctx context.Context, c *harness.Cluster) error {
	return poll(ctx, 2*time.Minute, "the node to be Ready", func() error {
		node, err := c.KubeClient.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", node.Status.Conditions)
	})
}

// Chart is charts/veil with Helm's Go SDK, configured for the cluster.
type Chart struct {
	Chart *chart.Chart
	Helm  *action.Configuration
	ca    []byte
}

// PrepareChart creates the release namespace and the serving certificate,
// provided as the chart documents it (tls.existingSecret and caBundle),
// signed by the cluster's Veil CA, and loads the chart.
func PrepareChart(ctx context.Context, root, work string, c *harness.Cluster) (*Chart, error) {
	kc := c.KubeClient
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	serving, err := c.VeilCA.Issue(work, "node-veil-serving", harness.VeilService, nil,
		[]string{harness.VeilService + "." + Namespace + ".svc"})
	if err != nil {
		return nil, err
	}
	if _, err := kc.CoreV1().Secrets(Namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "veil-apiserver-tls"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{"tls.crt": serving.CertPEM, "tls.key": serving.KeyPEM},
	}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	ch, err := loader.Load(filepath.Join(root, "charts", "veil"))
	if err != nil {
		return nil, err
	}
	flags := genericclioptions.NewConfigFlags(false)
	kubeconfig, ns := c.AdminKubeconfig, Namespace
	flags.KubeConfig, flags.Namespace = &kubeconfig, &ns
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, Namespace, "secret", func(string, ...any) {}); err != nil {
		return nil, err
	}
	return &Chart{Chart: ch, Helm: cfg, ca: c.VeilCA.CertPEM}, nil
}

// Values are the chart's values for the images tagged tag, loaded on the
// node (never pulled), and the provided certificate.
func (ch *Chart) Values(tag string) map[string]any {
	image := func(name string) map[string]any {
		return map[string]any{"repository": "ghcr.io/veil-dev/" + name, "tag": tag, "pullPolicy": "Never"}
	}
	return map[string]any{
		// An audit feed no Vault connects to: the leader's EndpointSlice
		// must still follow the Lease, with the chart's RBAC.
		"apiserver": map[string]any{"image": image("veil-apiserver"),
			"vaultAuditFeeds":   []any{map[string]any{"server": "https://vault.invalid:8200", "port": 8201}},
			"vaultAuditSources": []any{"10.0.0.0/8"}},
		"syncer": map[string]any{"image": image("veil-syncer")},
		"tls":    map[string]any{"existingSecret": "veil-apiserver-tls", "caBundle": string(ch.ca)},
	}
}

// Install is `helm install veil charts/veil -n veil-system`.
func (ch *Chart) Install(ctx context.Context, tag string) error {
	install := action.NewInstall(ch.Helm)
	install.ReleaseName, install.Namespace, install.Timeout = Release, Namespace, 5*time.Minute
	if _, err := install.RunWithContext(ctx, ch.Chart, ch.Values(tag)); err != nil {
		return fmt.Errorf("helm install: %w", err)
	}
	return nil
}

// ReadyCount checks that exactly want pods of app exist, all of them Ready
// and running the image tagged tag.
func ReadyCount(ctx context.Context, c *harness.Cluster, app, tag string, want int) error {
	pods, err := c.KubeClient.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + app})
	if err != nil {
		return err
	}
	ready := 0
	var states []string
	for _, p := range pods.Items {
		ok := p.DeletionTimestamp == nil && strings.HasSuffix(p.Spec.Containers[0].Image, ":"+tag)
		isReady := false
		scheduled := ""
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				isReady = true
			}
			if cond.Type == corev1.PodScheduled && cond.Status != corev1.ConditionTrue {
				scheduled = " unscheduled: " + cond.Reason + " " + cond.Message
			}
		}
		if ok && isReady {
			ready++
		}
		states = append(states, fmt.Sprintf("%s %s node=%q ready=%v %s%s", p.Name, p.Status.Phase, p.Spec.NodeName, isReady, containerStates(p), scheduled))
	}
	if ready != want || len(pods.Items) != want {
		return fmt.Errorf("%d of %d %s pods Ready with %s, want %d: %s", ready, len(pods.Items), app, tag, want, strings.Join(states, "; "))
	}
	return nil
}

func containerStates(p corev1.Pod) string {
	var out []string
	for _, s := range p.Status.ContainerStatuses {
		switch {
		case s.State.Waiting != nil:
			out = append(out, "waiting: "+s.State.Waiting.Reason+" "+s.State.Waiting.Message)
		case s.State.Terminated != nil:
			out = append(out, fmt.Sprintf("terminated: %s %d", s.State.Terminated.Reason, s.State.Terminated.ExitCode))
		default:
			out = append(out, fmt.Sprintf("running restarts=%d", s.RestartCount))
		}
	}
	return strings.Join(out, ",")
}

// WaitRollout waits for both Deployments' two pods to be Ready with tag.
func WaitRollout(ctx context.Context, c *harness.Cluster, tag string) error {
	for _, app := range []string{"veil-apiserver", "veil-syncer"} {
		if err := poll(ctx, 4*time.Minute, app+" pods to be Ready with "+tag, func() error {
			return ReadyCount(ctx, c, app, tag, 2)
		}); err != nil {
			return err
		}
	}
	return nil
}

// WaitAPIService waits for the APIService to be Available.
func WaitAPIService(ctx context.Context, dyn dynamic.Interface) error {
	return poll(ctx, 2*time.Minute, "the APIService to be Available", func() error {
		as, err := dyn.Resource(apiServiceGVR).Get(ctx, harness.APIServiceName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		status, _ := as.Object["status"].(map[string]any)
		conds, _ := status["conditions"].([]any)
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Available" {
				if m["status"] == "True" {
					return nil
				}
				return fmt.Errorf("Available=%v: %v %v", m["status"], m["reason"], m["message"])
			}
		}
		return fmt.Errorf("no Available condition yet")
	})
}
