package node

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	"github.com/veil-dev/veil/test/harness"
)

const namespace = Namespace

// timings are reported at the end, for the time `make test` spends here.
type timings struct {
	mu    sync.Mutex
	start time.Time
	last  time.Time
	steps []string
}

func (s *timings) step(t *testing.T, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	line := fmt.Sprintf("%-40s %6.1fs", name, now.Sub(s.last).Seconds())
	s.steps = append(s.steps, line)
	t.Log("timing: " + line)
	s.last = now
}

// TestInstallOnARealNode installs charts/veil with Helm on a real node (the
// images of `make images`, the shipped Deployments, Service, PDB and
// APIService) and checks what a user would: pods Ready under the shipped
// securityContext, the APIService Available through the Service, values
// read with kubectl, no failed read while a pod is deleted or during a
// `helm upgrade`, and an uninstall that leaves nothing stuck.
func TestInstallOnARealNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tm := &timings{start: time.Now(), last: time.Now()}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	binDir, err := harness.CachedBinary(ctx, root, "node")
	if err != nil {
		t.Fatalf("the real node's components: %v", err)
	}
	images, tag, err := Images(root)
	if err != nil {
		t.Fatal(err)
	}

	n, err := New(binDir)
	if n != nil {
		// Registered first, so it runs last: after the control plane stops.
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("node logs:\n%s", n.Logs(40))
			}
			started := time.Now()
			defer func() { t.Logf("timing: node cleanup and check %.1fs", time.Since(started).Seconds()) }()
			for _, err := range n.Cleanup() {
				t.Errorf("cleanup: %v", err)
			}
			for _, l := range n.CheckClean() {
				t.Errorf("left on the machine after cleanup: %s", l)
			}
		})
	}
	if err != nil {
		t.Fatalf("preparing the node: %v", err)
	}

	cluster, err := StartControlPlane(ctx, "", testWriter{t})
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			cluster.DumpLogs(os.Stderr, 30)
		}
		cluster.Stop()
	})
	tm.step(t, "control plane")

	work := t.TempDir()
	pause, err := BuildPause(root, work)
	if err != nil {
		t.Fatal(err)
	}
	newTag := tag + "-relabelled"
	for _, name := range []string{"veil-apiserver", "veil-syncer"} {
		p, err := Relabel(filepath.Join(root, "out", "images", name+".tar"), work, name+"-relabelled.tar",
			"ghcr.io/veil-dev/"+name+":"+newTag, "upgrade")
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, p)
	}
	tm.step(t, "pause and relabelled images")
	if err := n.Start(ctx, cluster.AdminKubeconfig, cluster.APIServerPort(), cluster.ClusterCA.CertFile, append([]string{pause}, images...)); err != nil {
		t.Fatalf("starting the node: %v", err)
	}
	kc := cluster.KubeClient
	if err := n.WaitReady(ctx, cluster); err != nil {
		t.Fatal(err)
	}
	tm.step(t, "containerd, images, kubelet: node Ready")

	ch, err := PrepareChart(ctx, root, work, cluster)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Install(ctx, tag); err != nil {
		t.Fatal(err)
	}
	tm.step(t, "helm install")

	if err := WaitRollout(ctx, cluster, tag); err != nil {
		t.Fatal(err)
	}
	tm.step(t, "pods Ready")
	checkSecurityContext(ctx, t, n, cluster)

	dyn, err := dynamic.NewForConfig(cluster.Admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := WaitAPIService(ctx, dyn); err != nil {
		t.Fatal(err)
	}
	tm.step(t, "APIService Available")
	checkLeaderSlice(ctx, t, cluster)

	// A value read through kube-apiserver's aggregation, with kubectl.
	value := "node-canary-" + fmt.Sprint(time.Now().UnixNano())
	ns := "node-app"
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Create(ctx, &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "store"},
		Spec:       configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{Data: []configv1alpha1.FakeProviderData{{Key: "k", Value: value}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctx, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef: &configv1alpha1.SecretStoreRef{Name: "store", Kind: configv1alpha1.SecretStoreKind},
			Data:           []configv1alpha1.ExternalSecretData{{SecretKey: "password", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "k"}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, time.Minute, "kubectl to read the value", func() error {
		out, stderr, err := cluster.RunKubectl(ctx, "", nil, "get", "externalsecretvalues", "db", "-n", ns, "-o", "jsonpath={.data.password}")
		if err != nil {
			return fmt.Errorf("%v: %s", err, stderr)
		}
		got, err := base64.StdEncoding.DecodeString(string(out))
		if err != nil || string(got) != value {
			return fmt.Errorf("kubectl read %d bytes, not the value", len(out))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tm.step(t, "kubectl reads a value")

	// A veil-apiserver pod deleted during a read load. The load's client
	// is not held back by client-go's default rate limit (5 per second).
	loadConfig := rest.CopyConfig(cluster.Admin)
	loadConfig.QPS, loadConfig.Burst = 500, 1000
	loadClient, err := versioned.NewForConfig(loadConfig)
	if err != nil {
		t.Fatal(err)
	}
	load := startReads(ctx, t, loadClient, ns, value)
	pods := veilPods(ctx, t, cluster, "veil-apiserver")
	victim := pods[0].Name
	if err := kc.CoreV1().Pods(namespace).Delete(ctx, victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 2*time.Minute, "the deleted pod to be replaced", func() error {
		if _, err := kc.CoreV1().Pods(namespace).Get(ctx, victim, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("pod %s still exists (%v)", victim, err)
		}
		return ReadyCount(ctx, cluster, "veil-apiserver", tag, 2)
	}); err != nil {
		t.Fatal(err)
	}
	load.settle(t, 3*time.Second)
	load.stopAndCheck(t, "a veil-apiserver pod deleted")
	tm.step(t, "pod deleted under load")

	// helm upgrade to new images (same binaries, another digest).
	load = startReads(ctx, t, loadClient, ns, value)
	upgrade := action.NewUpgrade(ch.Helm)
	upgrade.Namespace, upgrade.Timeout = Namespace, 5*time.Minute
	if _, err := upgrade.RunWithContext(ctx, Release, ch.Chart, ch.Values(newTag)); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	if err := WaitRollout(ctx, cluster, newTag); err != nil {
		t.Fatal(err)
	}
	load.settle(t, 3*time.Second)
	load.stopAndCheck(t, "helm upgrade")
	checkLeaderSlice(ctx, t, cluster)
	tm.step(t, "helm upgrade under load")

	// helm uninstall: the APIService goes first, and no namespace is left
	// Terminating (the namespace controller needs every APIService's
	// discovery, so one left behind without its pods would block it).
	order := watchDeletions(ctx, t, dyn)
	uninstall := action.NewUninstall(ch.Helm)
	uninstall.Timeout = 5 * time.Minute
	if _, err := uninstall.Run(Release); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	order.check(ctx, t)
	for _, name := range []string{ns, namespace} {
		if err := kc.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := poll(ctx, 2*time.Minute, "the namespaces to be deleted", func() error {
		for _, name := range []string{ns, namespace} {
			got, err := kc.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				return fmt.Errorf("namespace %s is %s: %v", name, got.Status.Phase, got.Status.Conditions)
			}
			if !apierrors.IsNotFound(err) {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tm.step(t, "helm uninstall, namespaces deleted")
	t.Logf("timings:\n%s\n%-40s %6.1fs", strings.Join(tm.steps, "\n"), "total", time.Since(tm.start).Seconds())
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func veilPods(ctx context.Context, t *testing.T, c *harness.Cluster, app string) []corev1.Pod {
	t.Helper()
	pods, err := c.KubeClient.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + app})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatalf("no %s pod", app)
	}
	return pods.Items
}

// reads is a read load// reads is a read load on the ExternalSecretValue through kube-apiserver:
// each read retried as client-go's retry.OnError does, every retry and
// every read that failed after its retries counted.
type reads struct {
	cancel              context.CancelFunc
	done                chan struct{}
	ok, retried, failed atomic.Int64
	mu                  sync.Mutex
	lastErr             error
}

func startReads(ctx context.Context, t *testing.T, client versioned.Interface, ns, want string) *reads {
	ctx, cancel := context.WithCancel(ctx)
	r := &reads{cancel: cancel, done: make(chan struct{})}
	const workers = 4
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				attempt := 0
				err := retry.OnError(retry.DefaultBackoff, func(err error) bool { return ctx.Err() == nil }, func() error {
					if attempt++; attempt > 1 {
						r.retried.Add(1)
					}
					v, err := client.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctx, "db", metav1.GetOptions{})
					if err != nil {
						return err
					}
					if string(v.Data["password"]) != want {
						return fmt.Errorf("the value read is not the one stored")
					}
					return nil
				})
				switch {
				case ctx.Err() != nil:
				case err != nil:
					r.failed.Add(1)
					r.mu.Lock()
					r.lastErr = err
					r.mu.Unlock()
				default:
					r.ok.Add(1)
				}
			}
		}()
	}
	go func() { wg.Wait(); close(r.done) }()
	return r
}

// settle keeps the load running a little after a change is complete, so
// reads routed to a replica that just went away are counted too.
func (r *reads) settle(t *testing.T, d time.Duration) {
	before := r.ok.Load()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) || r.ok.Load() < before+10 {
		time.Sleep(100 * time.Millisecond)
		if time.Since(deadline) > time.Minute {
			break
		}
	}
}

func (r *reads) stopAndCheck(t *testing.T, during string) {
	t.Helper()
	r.cancel()
	<-r.done
	t.Logf("%s: %d reads, %d retries, %d failed after retries", during, r.ok.Load(), r.retried.Load(), r.failed.Load())
	if r.ok.Load() < 10 {
		t.Errorf("%s: only %d reads succeeded: the load did not run", during, r.ok.Load())
	}
	if r.failed.Load() > 0 {
		t.Errorf("%s: %d reads failed after retries, the last: %v", during, r.failed.Load(), r.lastErr)
	}
}

// deletions records the resourceVersion at which the APIService and the
// Deployments and Service of the release are deleted.
type deletions struct {
	mu sync.Mutex
	rv map[string]int64
}

func watchDeletions(ctx context.Context, t *testing.T, dyn dynamic.Interface) *deletions {
	t.Helper()
	d := &deletions{rv: map[string]int64{}}
	watched := map[string]struct {
		gvr schema.GroupVersionResource
		ns  string
	}{
		"apiservice": {apiServiceGVR, ""},
		"service":    {schema.GroupVersionResource{Version: "v1", Resource: "services"}, namespace},
		"deployment": {schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, namespace},
	}
	for kind, w := range watched {
		wi, err := dyn.Resource(w.gvr).Namespace(w.ns).Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer wi.Stop()
			for ev := range wi.ResultChan() {
				if ev.Type != watch.Deleted {
					continue
				}
				o, ok := ev.Object.(interface{ GetResourceVersion() string })
				if !ok {
					continue
				}
				var rv int64
				fmt.Sscan(o.GetResourceVersion(), &rv)
				d.mu.Lock()
				if cur, seen := d.rv[kind]; !seen || rv < cur {
					d.rv[kind] = rv
				}
				d.mu.Unlock()
			}
		}()
	}
	return d
}

// check waits for the three deletions and requires the APIService's to
// come first: kube-apiserver's resourceVersions are etcd's revisions,
// ordered across resources.
func (d *deletions) check(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := poll(ctx, time.Minute, "the APIService, Service and Deployments to be deleted", func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if len(d.rv) < 3 {
			return fmt.Errorf("deleted so far: %v", d.rv)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	t.Logf("deleted at resourceVersion: %v", d.rv)
	if d.rv["apiservice"] >= d.rv["service"] || d.rv["apiservice"] >= d.rv["deployment"] {
		t.Errorf("helm uninstall deleted the APIService (at %d) after the Service (%d) or a Deployment (%d): discovery breaks while it is left", d.rv["apiservice"], d.rv["service"], d.rv["deployment"])
	}
}

// checkSecurityContext looks at the running processes of Veil's containers
// on the node: user 65532, no capability, no new privileges, and a
// read-only root filesystem, as the shipped Deployments ask.
func checkSecurityContext(ctx context.Context, t *testing.T, n *Node, c *harness.Cluster) {
	t.Helper()
	for _, app := range []string{"veil-apiserver", "veil-syncer"} {
		for _, p := range veilPods(ctx, t, c, app) {
			if len(p.Status.ContainerStatuses) != 1 {
				t.Fatalf("%s: %d container statuses", p.Name, len(p.Status.ContainerStatuses))
			}
			pid, err := n.ContainerPID(ctx, p.Status.ContainerStatuses[0].ContainerID)
			if err != nil {
				t.Fatal(err)
			}
			status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				t.Fatal(err)
			}
			fields := map[string]string{}
			for _, l := range strings.Split(string(status), "\n") {
				if k, v, ok := strings.Cut(l, ":"); ok {
					fields[k] = strings.Join(strings.Fields(v), " ")
				}
			}
			for k, want := range map[string]string{
				"Uid": "65532 65532 65532 65532", "Gid": "65532 65532 65532 65532",
				"CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000",
				"NoNewPrivs": "1", "Seccomp": "2",
			} {
				if fields[k] != want {
					t.Errorf("%s (pid %d): %s = %q, want %q", p.Name, pid, k, fields[k], want)
				}
			}
			mountinfo, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
			if err != nil {
				t.Fatal(err)
			}
			rootRO := false
			for _, l := range strings.Split(string(mountinfo), "\n") {
				f := strings.Fields(l)
				if len(f) > 5 && f[4] == "/" {
					rootRO = strings.HasPrefix(f[5], "ro")
				}
			}
			if !rootRO {
				t.Errorf("%s (pid %d): the root filesystem is writable", p.Name, pid)
			}
		}
	}
}

// checkLeaderSlice: the EndpointSlice veil-apiserver-leader names the pod
// IP of the replica holding the change detection Lease, and its audit
// feed port (the chart's apiserver.vaultAuditFeeds), through the chart's
// own RBAC and the pod's downward API.
func checkLeaderSlice(ctx context.Context, t *testing.T, c *harness.Cluster) {
	t.Helper()
	kc := c.KubeClient
	if err := poll(ctx, time.Minute, "the leader's EndpointSlice to name the leader", func() error {
		lease, err := kc.CoordinationV1().Leases(Namespace).Get(ctx, "veil-apiserver-change-detection", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil {
			return errors.New("no replica holds the change detection Lease")
		}
		var ip string
		for _, p := range veilPods(ctx, t, c, "veil-apiserver") {
			if strings.HasPrefix(*lease.Spec.HolderIdentity, p.Name+"_") {
				ip = p.Status.PodIP
			}
		}
		if ip == "" {
			return fmt.Errorf("no veil-apiserver pod holds the Lease (held by %s)", *lease.Spec.HolderIdentity)
		}
		s, err := kc.DiscoveryV1().EndpointSlices(Namespace).Get(ctx, "veil-apiserver-leader", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Endpoints) != 1 || fmt.Sprint(s.Endpoints[0].Addresses) != "["+ip+"]" || len(s.Ports) != 1 || s.Ports[0].Port == nil || *s.Ports[0].Port != 8201 {
			return fmt.Errorf("the leader's EndpointSlice has endpoints %+v and ports %+v, want %s:8201", s.Endpoints, s.Ports, ip)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
