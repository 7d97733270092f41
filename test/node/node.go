// Package node runs a real single-node Kubernetes node on the test machine
// for the tests of this directory: containerd, runc and the CNI bridge from
// Debian's packages, kubelet and kube-scheduler built from k8s.io/kubernetes
// (hack/install-node.sh, run by `make tools`), against the control plane of
// test/harness. The recipe, and why each setting is there, is the measured
// one of the project's notes on the container runtime (cgroup v1, no
// CAP_SYS_RESOURCE).
//
// The node changes the whole machine: sysctls, iptables, mounts, cgroups,
// a bridge. Everything is recorded before it changes and undone by
// Cleanup, which a test registers before the first change; CheckClean then
// lists whatever is left. Traffic stays on the machine: pods have routes
// to the bridge network and the Service network only, no masquerading,
// and a safety net of REJECT rules (installed before the first pod, removed
// in cleanup) stops any packet that would leave the bridge or reach a
// Service address that no DNAT rule rewrote.
package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The node's network: the CNI bridge, its address (the node's, where
// kube-apiserver listens for pods) and the pods' subnet.
const (
	Bridge      = "veil0"
	NodeIP      = "10.88.0.1"
	PodCIDR     = "10.88.0.0/16"
	NodeName    = "veil-node"
	ruleComment = "veil-test"
	netChain    = "VEIL-TEST-NET"
	// PauseImage is the sandbox image, built and imported by the test.
	PauseImage = "docker.io/veil-test/pause:1"
)

// sysctls the kubelet and the CNI bridge change (the notes' §8), restored
// in cleanup.
var sysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
	"net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
}

// System paths the node may create; those absent before are removed.
var systemPaths = []string{"/run/containerd", "/run/netns", "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/var/lib/kubelet", "/opt/containerd", "/var/lib/containerd"}

// savedSysctls keeps the machine's original values across a crashed run:
// written before anything changes, removed after they are restored, and
// read back first by the next run.
const savedSysctls = "/var/tmp/veil-node-test-sysctls.json"

// The process names that must not survive the node.
var daemons = []string{"kubelet", "kube-scheduler", "containerd", "containerd-shim", "containerd-shim-runc-v2"}

type snapshot struct {
	Sysctls map[string]string `json:"sysctls"`
	Existed map[string]bool   `json:"existed"`
	// Chains of iptables and ip6tables, "cmd table chain".
	Chains map[string]bool `json:"chains"`
	NetNS  map[string]bool `json:"netns"`
}

// Node is a running (or partly started) node.
type Node struct {
	// Dir is the node's private state: containerd's root, state, config and
	// socket, the CNI configuration and IPAM data, the kubelet's root
	// directory and pod logs, every log.
	Dir               string
	Sock              string
	KubeletPort       int
	binDir, apiPort   string
	before            snapshot
	procs             []*exec.Cmd
	logs              []string
	kubelet           *exec.Cmd
	kubeletKubeconfig string
}

// New records the machine's state, then makes the bridge and the safety
// net: call Cleanup (t.Cleanup) right after, whatever it returns. binDir
// holds kubelet and kube-scheduler (hack/install-node.sh --print-path).
func New(binDir string) (*Node, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the real node needs root (containerd, the kubelet, iptables, mounts)")
	}
	for _, c := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip6tables", "ip", "mount"} {
		if _, err := exec.LookPath(c); err != nil {
			return nil, fmt.Errorf("%s is not installed: run 'make tools' (hack/install-node.sh installs containerd, runc, the CNI plugins and iptables)", c)
		}
	}
	for _, p := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback", filepath.Join(binDir, "kubelet"), filepath.Join(binDir, "kube-scheduler")} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%s is missing: run 'make tools'", p)
		}
	}
	n := &Node{binDir: binDir}
	// A crashed earlier run left the machine changed: undo that first,
	// with the original sysctls it saved.
	if b, err := os.ReadFile(savedSysctls); err == nil {
		var old snapshot
		if json.Unmarshal(b, &old) == nil && old.Sysctls != nil {
			n.before = old
			n.before.Chains = nil
			n.Dir = ""
			if errs := n.Cleanup(); len(errs) > 0 {
				return nil, fmt.Errorf("cleaning up an earlier run: %v", errors.Join(errs...))
			}
		}
	}
	n.before = takeSnapshot()
	for p, existed := range n.before.Existed {
		if existed && (p == "/run/containerd" || p == "/var/lib/kubelet") {
			return nil, fmt.Errorf("%s exists: another container runtime or kubelet seems to run on this machine; the real node test needs it to itself", p)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + Bridge); err == nil {
		return nil, fmt.Errorf("the link %s exists already: an earlier run left it; remove it with 'ip link del %s'", Bridge, Bridge)
	}
	b, err := json.Marshal(n.before)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(savedSysctls, b, 0o600); err != nil {
		return nil, err
	}
	if n.Dir, err = os.MkdirTemp("", "veil-node-"); err != nil {
		return nil, err
	}
	n.Sock = filepath.Join(n.Dir, "containerd.sock")
	for _, d := range []string{"logs", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "opt"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if err := n.safetyNet(); err != nil {
		return n, err
	}
	// The bridge exists before kube-apiserver starts, which listens on its
	// address; the CNI bridge plugin takes it over as it is.
	for _, args := range [][]string{
		{"link", "add", Bridge, "type", "bridge"},
		{"addr", "add", NodeIP + "/16", "dev", Bridge},
		{"link", "set", Bridge, "up"},
	} {
		if err := run("ip", args...); err != nil {
			return n, err
		}
	}
	return n, nil
}

// safetyNet: pods' packets may not leave the bridge (FORWARD), a packet
// to a Service address that no DNAT rule rewrote is stopped on the
// machine (OUTPUT and FORWARD), instead of following the default route,
// and the node's addresses answer only the bridge and this machine (INPUT).
func (n *Node) safetyNet(serviceCIDR ...string) error {
	rules := [][]string{
		{"-N", "VEIL-TEST-IN"},
		{"-A", "VEIL-TEST-IN", "-i", "lo", "-m", "comment", "--comment", ruleComment, "-j", "RETURN"},
		{"-A", "VEIL-TEST-IN", "-m", "comment", "--comment", ruleComment, "-j", "REJECT"},
		{"-N", netChain},
		{"-A", netChain, "-i", Bridge, "!", "-o", Bridge, "-m", "comment", "--comment", ruleComment, "-j", "REJECT"},
		{"-A", netChain, "!", "-i", Bridge, "-o", Bridge, "-m", "comment", "--comment", ruleComment, "-j", "REJECT"},
		{"-A", netChain, "-d", "10.0.0.0/24", "-m", "comment", "--comment", ruleComment, "-j", "REJECT"},
		{"-I", "FORWARD", "1", "-m", "comment", "--comment", ruleComment, "-j", netChain},
		{"-I", "OUTPUT", "1", "-d", "10.0.0.0/24", "-m", "comment", "--comment", ruleComment, "-j", "REJECT"},
		// Linux answers for a local address on any interface: without this,
		// a neighbour routing 10.88.0.0/16 to this machine would reach
		// kube-apiserver (listening on the node's address) and the pods.
		{"-I", "INPUT", "1", "-d", PodCIDR, "!", "-i", Bridge, "-m", "comment", "--comment", ruleComment, "-j", "VEIL-TEST-IN"},
	}
	for _, r := range rules {
		if err := run("iptables", append([]string{"-w", "-t", "filter"}, r...)...); err != nil {
			return err
		}
	}
	return nil
}

// Start starts containerd, imports the images, and starts the kubelet and
// kube-scheduler against the control plane whose admin kubeconfig and
// kube-apiserver port are given. images are docker-archive or OCI tars.
func (n *Node) Start(ctx context.Context, kubeconfig string, apiPort int, clientCA string, images []string) error {
	// Pods dial the `kubernetes` Service (10.0.0.1:443, which
	// kube-apiserver's certificate names): it is rewritten to
	// kube-apiserver on the node's address. That is the one Service
	// address pods need; kube-apiserver reaches Veil's pods directly
	// (--enable-aggregator-routing).
	if err := run("iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-s", PodCIDR, "-d", "10.0.0.1/32", "-p", "tcp", "--dport", "443",
		"-m", "comment", "--comment", ruleComment, "-j", "DNAT", "--to-destination", net.JoinHostPort(NodeIP, strconv.Itoa(apiPort))); err != nil {
		return err
	}
	if err := run("mount", "--make-rshared", "/"); err != nil {
		return err
	}
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	for _, img := range images {
		if err := run("ctr", "-a", n.Sock, "-n", "k8s.io", "images", "import", img); err != nil {
			return fmt.Errorf("importing %s: %w", img, err)
		}
	}
	// A copy in the node's directory: every daemon's command line then
	// names the directory, and a crashed run's daemons are found by it.
	kc, err := os.ReadFile(kubeconfig)
	if err != nil {
		return err
	}
	kubeconfig = filepath.Join(n.Dir, "admin.kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}
	if err := n.startKubelet(ctx, kubeconfig, clientCA); err != nil {
		return err
	}
	sched, err := n.start("kube-scheduler", filepath.Join(n.binDir, "kube-scheduler"),
		"--kubeconfig="+kubeconfig, "--leader-elect=false", "--secure-port=0", "--bind-address=127.0.0.1", "--v=2")
	if err != nil {
		return err
	}
	_ = sched
	return nil
}

func (n *Node) startContainerd(ctx context.Context) error {
	config := fmt.Sprintf(`version = 2
root  = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  # No CAP_SYS_RESOURCE on the build machines: without this every sandbox
  # fails to set its negative oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir  = "/usr/lib/cni"
    conf_dir = %[7]q
`, filepath.Join(n.Dir, "root"), filepath.Join(n.Dir, "state"), n.Sock, n.Sock+".ttrpc",
		filepath.Join(n.Dir, "opt"), PauseImage, filepath.Join(n.Dir, "cni", "net.d"))
	if err := os.WriteFile(filepath.Join(n.Dir, "config.toml"), []byte(config), 0o600); err != nil {
		return err
	}
	// No masquerading, and routes to the pods' subnet and the Service
	// network only: nothing a pod sends can leave the machine.
	conflist := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"veil-test","plugins":[
 {"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":false,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":%q,"gateway":%q}]],
          "routes":[{"dst":%q},{"dst":"10.0.0.0/24"}],"dataDir":%q}},
 {"type":"loopback"}]}
`, Bridge, PodCIDR, NodeIP, PodCIDR, filepath.Join(n.Dir, "cni", "ipam"))
	if err := os.WriteFile(filepath.Join(n.Dir, "cni", "net.d", "10-veil-test.conflist"), []byte(conflist), 0o600); err != nil {
		return err
	}
	if _, err := n.start("containerd", "containerd", "--config", filepath.Join(n.Dir, "config.toml")); err != nil {
		return err
	}
	return poll(ctx, 30*time.Second, "containerd to serve the CRI", func() error {
		c, err := n.cri()
		if err != nil {
			return err
		}
		defer c.close()
		st, err := c.rt.Status(ctx, &runtimeapi.StatusRequest{})
		if err != nil {
			return err
		}
		for _, cond := range st.Status.Conditions {
			if !cond.Status {
				return fmt.Errorf("%s: %s", cond.Type, cond.Message)
			}
		}
		return nil
	})
}

func (n *Node) startKubelet(ctx context.Context, kubeconfig, clientCA string) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	n.KubeletPort = ports[0]
	root := filepath.Join(n.Dir, "kubelet")
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 (the build machines cannot change it) and containerd 1.6,
# which implements no RuntimeConfig: the kubelet's own cgroupfs driver.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%[1]s
# Listen on loopback only, authenticate and authorise every request.
address: 127.0.0.1
port: %[2]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[3]d
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[4]q
authorization:
  mode: Webhook
podLogsDir: %[5]q
# No DNS server: pods dial kube-apiserver by its Service address.
resolvConf: ""
# Nothing may be pulled: keep every imported image, evict only on a nearly
# full disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: 3%%
  imagefs.available: 3%%
rotateCertificates: false
serverTLSBootstrap: false
`, n.Sock, ports[0], ports[1], clientCA, filepath.Join(n.Dir, "pod-logs"))
	cfgFile := filepath.Join(n.Dir, "kubelet.yaml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		return err
	}
	n.kubeletKubeconfig = kubeconfig
	n.kubelet, err = n.start("kubelet", filepath.Join(n.binDir, "kubelet"),
		"--config="+cfgFile, "--kubeconfig="+kubeconfig, "--root-dir="+root,
		"--hostname-override="+NodeName, "--node-ip="+NodeIP, "--v=1")
	return err
}

// start runs a daemon in its own process group, its output in logs/NAME.log.
func (n *Node) start(name, bin string, args ...string) (*exec.Cmd, error) {
	logPath := filepath.Join(n.Dir, "logs", name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { cmd.Wait(); f.Close() }()
	n.procs = append(n.procs, cmd)
	n.logs = append(n.logs, logPath)
	return cmd, nil
}

// Logs returns the last lines of every daemon's log, for a failing test.
func (n *Node) Logs(lines int) string {
	var b strings.Builder
	for _, p := range n.logs {
		data, _ := os.ReadFile(p)
		all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(all) > lines {
			all = all[len(all)-lines:]
		}
		fmt.Fprintf(&b, "==> %s <==\n%s\n", p, strings.Join(all, "\n"))
	}
	return b.String()
}

type criClient struct {
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
}

func (c *criClient) close() { c.conn.Close() }

func (n *Node) cri() (*criClient, error) {
	conn, err := grpc.NewClient("unix://"+n.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &criClient{conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// Cleanup stops everything the node started and undoes every change it
// made to the machine, going on after an error; it returns them all.
func (n *Node) Cleanup() []error {
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	// The kubelet and the scheduler first, so nothing restarts a pod.
	for i := len(n.procs) - 1; i >= 0; i-- {
		if filepath.Base(n.procs[i].Path) != "containerd" {
			stop(n.procs[i])
		}
	}
	// Every sandbox stopped (the CNI plugin releases its address and veth)
	// and removed, with its containers, through the CRI.
	if n.Sock != "" {
		if _, err := os.Stat(n.Sock); err == nil {
			note(n.removePods())
		}
	}
	for _, p := range n.procs {
		if filepath.Base(p.Path) == "containerd" {
			stop(p)
		}
	}
	// Shims whose containerd is gone, and any daemon left by a crashed run,
	// then the containers' processes a killed shim leaves running.
	note(killDaemons(n.Dir))
	note(killPods())
	// Mounts: sandboxes' network namespaces, overlays and shm, the
	// kubelet's volumes; deepest first.
	note(n.unmount())
	for p, existed := range n.before.Existed {
		if !existed {
			note(removeAll(p))
		}
	}
	if n.Dir != "" {
		note(removeAll(n.Dir))
	}
	if _, err := os.Stat("/sys/class/net/" + Bridge); err == nil {
		note(run("ip", "link", "del", Bridge))
	}
	note(n.removeRules())
	note(removeCgroups())
	for k, v := range n.before.Sysctls {
		if v == "" {
			continue
		}
		note(os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644))
	}
	if len(errs) == 0 {
		os.Remove(savedSysctls)
	}
	return errs
}

func (n *Node) removePods() error {
	c, err := n.cri()
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sandboxes, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("listing sandboxes: %w", err)
	}
	var errs []error
	for _, s := range sandboxes.Items {
		if _, err := c.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stopping sandbox %s: %w", s.Id, err))
		}
		if _, err := c.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			errs = append(errs, fmt.Errorf("removing sandbox %s: %w", s.Id, err))
		}
	}
	return errors.Join(errs...)
}

// stop ends a daemon and its process group: SIGTERM, then SIGKILL.
func stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	pid := cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
}

// daemonPIDs lists the processes named like the node's daemons.
func daemonPIDs() map[int]string {
	out := map[int]string{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(comm))
		for _, d := range daemons {
			// comm is cut at 15 characters.
			if name == d || (len(d) > 15 && name == d[:15]) {
				out[pid] = name
			}
		}
	}
	return out
}

// killDaemons kills the shims (and daemons) whose command line names this
// node's state (its socket) or, for a crashed run's leftovers, a
// veil-node- state directory: never another runtime's.
func killDaemons(dir string) error {
	ours := func() []int {
		var pids []int
		for pid := range daemonPIDs() {
			cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
			line := string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
			// An exited shim waits, as a zombie with no command line, for
			// init to reap it: it is waited for too.
			if (dir != "" && strings.Contains(line, dir)) || strings.Contains(line, "/veil-node-") || zombie(pid) {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	// Shims exit by themselves once their tasks are gone: give them a
	// moment, then kill what is left, and wait until it is gone.
	for i := 0; i < 50 && len(ours()) > 0; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range ours() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for i := 0; i < 200; i++ {
		left := ours()
		if len(left) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("processes of the node survived SIGKILL: %v", ours())
}

// killPods kills every process in the kubelet's cgroups (containers whose
// shim was killed by a crashed run's cleanup) and waits until none is left.
func killPods() error {
	procs := func() []int {
		var pids []int
		for _, top := range cgroupLeftovers() {
			filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						pids = append(pids, pid)
					}
				}
				return nil
			})
		}
		return pids
	}
	for i := 0; i < 100; i++ {
		pids := procs()
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("processes in the kubelet's cgroups survived SIGKILL: %v", procs())
}

func zombie(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// pid (comm) state ...
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// mounts are the mount points of this mount namespace, in mount order.
func mounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 {
			out = append(out, unescape(fields[4]))
		}
	}
	return out
}

func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ours says whether a mount point belongs to the node.
func (n *Node) ours(m string) bool {
	if n.Dir != "" && strings.HasPrefix(m, n.Dir+"/") {
		return true
	}
	if strings.Contains(m, "/veil-node-") {
		return true
	}
	if strings.HasPrefix(m, "/run/netns/") && !n.before.NetNS[filepath.Base(m)] {
		return true
	}
	if m == "/run/netns" && !n.before.Existed["/run/netns"] {
		return true
	}
	return strings.HasPrefix(m, "/run/containerd/") || strings.HasPrefix(m, "/var/lib/kubelet/")
}

func (n *Node) unmount() error {
	var errs []error
	for pass := 0; pass < 3; pass++ {
		ms := mounts()
		found := false
		for i := len(ms) - 1; i >= 0; i-- {
			if n.ours(ms[i]) {
				found = true
				if err := syscall.Unmount(ms[i], syscall.MNT_DETACH); err != nil && pass == 2 {
					errs = append(errs, fmt.Errorf("unmounting %s: %w", ms[i], err))
				}
			}
		}
		if !found {
			return nil
		}
	}
	return errors.Join(errs...)
}

func removeAll(p string) error {
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	return nil
}

var ruleTables = []string{"filter", "nat", "mangle"}

// chains lists "cmd table chain" for iptables and ip6tables.
func chains() map[string]bool {
	out := map[string]bool{}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, t := range ruleTables {
			b, err := exec.Command(cmd, "-w", "-t", t, "-S").Output()
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) >= 2 && (f[0] == "-N" || f[0] == "-P") {
					out[cmd+" "+t+" "+f[1]] = true
				}
			}
		}
	}
	return out
}

// taggedRules lists the rules carrying the node's comment, as -S prints them.
func taggedRules() map[string][]string {
	out := map[string][]string{}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, t := range ruleTables {
			b, err := exec.Command(cmd, "-w", "-t", t, "-S").Output()
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "-A ") && strings.Contains(l, ruleComment) {
					out[cmd+" "+t] = append(out[cmd+" "+t], l)
				}
			}
		}
	}
	return out
}

// removeRules deletes the tagged rules, then the chains that did not exist
// before the node (its own, and the kubelet's KUBE-* canaries).
func (n *Node) removeRules() error {
	var errs []error
	for key, rules := range taggedRules() {
		cmd, table, _ := strings.Cut(key, " ")
		for _, r := range rules {
			args := append([]string{"-w", "-t", table, "-D"}, splitRule(strings.TrimPrefix(r, "-A "))...)
			if err := run(cmd, args...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for c := range chains() {
		f := strings.Fields(c)
		if n.before.Chains[c] || !(strings.HasPrefix(f[2], "KUBE-") || strings.HasPrefix(f[2], "VEIL-TEST-")) {
			continue
		}
		// Rules elsewhere jumping to it go first.
		if b, err := exec.Command(f[0], "-w", "-t", f[1], "-S").Output(); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "-A ") && strings.Contains(l, "-j "+f[2]) && !strings.HasPrefix(l, "-A "+f[2]+" ") {
					run(f[0], append([]string{"-w", "-t", f[1], "-D"}, splitRule(strings.TrimPrefix(l, "-A "))...)...)
				}
			}
		}
		run(f[0], "-w", "-t", f[1], "-F", f[2])
		if err := run(f[0], "-w", "-t", f[1], "-X", f[2]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// splitRule splits an iptables -S line into arguments (quoted comments).
func splitRule(r string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, ch := range r {
		switch {
		case ch == '"':
			quoted = !quoted
		case ch == ' ' && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(ch)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// cgroupLeftovers lists the kubelet's and containerd's directories in every
// cgroup v1 hierarchy.
func cgroupLeftovers() []string {
	var out []string
	hs, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hs {
		for _, d := range []string{"kubepods", "k8s.io"} {
			if _, err := os.Stat(filepath.Join(h, d)); err == nil {
				out = append(out, filepath.Join(h, d))
			}
		}
	}
	return out
}

func removeCgroups() error {
	var errs []error
	for _, top := range cgroupLeftovers() {
		var dirs []string
		filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

func takeSnapshot() snapshot {
	s := snapshot{Sysctls: map[string]string{}, Existed: map[string]bool{}, NetNS: map[string]bool{}}
	for _, k := range sysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			s.Sysctls[k] = strings.TrimSpace(string(b))
		}
	}
	for _, p := range systemPaths {
		_, err := os.Lstat(p)
		s.Existed[p] = err == nil
	}
	s.Chains = chains()
	if es, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range es {
			s.NetNS[e.Name()] = true
		}
	}
	return s
}

// CheckClean lists what the node left on the machine after Cleanup: its
// daemons, mounts, tagged rules and chains, the bridge, cgroups, system
// paths it created, and sysctls that differ from before.
func (n *Node) CheckClean() []string {
	var left []string
	for pid, name := range daemonPIDs() {
		left = append(left, fmt.Sprintf("process %s (pid %d)", name, pid))
	}
	for _, m := range mounts() {
		if n.ours(m) {
			left = append(left, "mount "+m)
		}
	}
	for key, rules := range taggedRules() {
		for _, r := range rules {
			left = append(left, key+": "+r)
		}
	}
	for c := range chains() {
		if !n.before.Chains[c] {
			left = append(left, "chain "+c)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + Bridge); err == nil {
		left = append(left, "link "+Bridge)
	}
	for _, c := range cgroupLeftovers() {
		left = append(left, "cgroup "+c)
	}
	for p, existed := range n.before.Existed {
		if _, err := os.Lstat(p); err == nil && !existed {
			left = append(left, "path "+p)
		}
	}
	if n.Dir != "" {
		if _, err := os.Stat(n.Dir); err == nil {
			left = append(left, "path "+n.Dir)
		}
	}
	for k, v := range n.before.Sysctls {
		b, _ := os.ReadFile(filepath.Join("/proc/sys", k))
		if got := strings.TrimSpace(string(b)); got != v {
			left = append(left, fmt.Sprintf("sysctl %s = %s, was %s", k, got, v))
		}
	}
	if _, err := os.Stat(savedSysctls); err == nil {
		left = append(left, "path "+savedSysctls)
	}
	return left
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// poll calls check until it succeeds or timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting %s for %s: %w", timeout, what, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func freePorts(count int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < count; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ContainerPID is the process ID of a running container (the ID the pod
// status gives, without its containerd:// prefix), from the CRI's verbose
// status.
func (n *Node) ContainerPID(ctx context.Context, id string) (int, error) {
	c, err := n.cri()
	if err != nil {
		return 0, err
	}
	defer c.close()
	st, err := c.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: strings.TrimPrefix(id, "containerd://"), Verbose: true})
	if err != nil {
		return 0, err
	}
	var info struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.PID == 0 {
		return 0, fmt.Errorf("no pid in the CRI status of %s (%v)", id, err)
	}
	return info.PID, nil
}
