package charttest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/veil-dev/veil/pkg/providers/remote"
	"github.com/veil-dev/veil/test/harness"
)

// The providers run out of process (artifacts/providers, the chart's
// providers.*): what they deploy, that the chart deploys the same, and
// that only veil-apiserver reaches them (threat model 002 T1, T9).

const providersNamespace = "veil-providers"

var providerKinds = []string{"vault", "aws"}

// providerCerts are the files artifacts/providers/<kind>/tls/ wants: a
// serving certificate per provider from one CA, and another CA for
// veil-apiserver's client certificate.
type providerCerts struct {
	dir      string // dir/<kind>/{tls.crt,tls.key,ca.crt,client-ca.crt}
	caPEM    []byte
	clientCA []byte
}

func newProviderCerts(t *testing.T) providerCerts {
	t.Helper()
	dir := t.TempDir()
	ca, err := harness.NewCA(dir, "provider-ca")
	if err != nil {
		t.Fatal(err)
	}
	client, err := harness.NewCA(dir, "client-ca")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range providerKinds {
		d := filepath.Join(dir, kind)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		host := "veil-provider-" + kind + "." + providersNamespace + ".svc"
		if _, err := ca.Issue(d, "tls", host, nil, []string{host}); err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"ca.crt": ca.CertPEM, "client-ca.crt": client.CertPEM} {
			if err := os.WriteFile(filepath.Join(d, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return providerCerts{dir: dir, caPEM: ca.CertPEM, clientCA: client.CertPEM}
}

// kustomizeProviders builds, from a copy of artifacts/ with the
// certificates in each component's tls/, the overlay docs/veil-provider.md
// shows: artifacts/providers with the vault and aws components.
func kustomizeProviders(t *testing.T, certs providerCerts) []obj {
	t.Helper()
	tmp := t.TempDir()
	if err := os.CopyFS(filepath.Join(tmp, "artifacts"), os.DirFS(filepath.Join(root, "artifacts"))); err != nil {
		t.Fatal(err)
	}
	for _, kind := range providerKinds {
		tlsDir := filepath.Join(tmp, "artifacts", "providers", kind, "tls")
		if err := os.MkdirAll(tlsDir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"tls.crt", "tls.key", "ca.crt", "client-ca.crt"} {
			if err := os.WriteFile(filepath.Join(tlsDir, f), readFile(t, filepath.Join(certs.dir, kind), f), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	overlay := filepath.Join(tmp, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../artifacts/providers\ncomponents:\n" +
		"  - ../artifacts/providers/vault\n  - ../artifacts/providers/aws\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), overlay)
	if err != nil {
		t.Fatal(err)
	}
	var out []obj
	for _, r := range m.Resources() {
		o, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		data, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, decodeAll(t, data)...)
	}
	return out
}

// providerValues turn both providers on in veil-providers, with the
// certificates and configurations artifacts/providers deploys.
func providerValues(t *testing.T, ca testCA, certs providerCerts) map[string]any {
	t.Helper()
	vals := ca.tlsValues()
	ps := map[string]any{"namespace": providersNamespace, "clientCA": string(certs.clientCA)}
	for _, kind := range providerKinds {
		var config map[string]any
		if err := yaml.Unmarshal(readFile(t, filepath.Join(root, "artifacts", "providers", kind), "config.yaml"), &config); err != nil {
			t.Fatal(err)
		}
		ps[kind] = map[string]any{"enabled": true, "caBundle": string(certs.caPEM), "config": config}
	}
	vals["providers"] = ps
	vals["apiserver"] = map[string]any{"providerClientSecret": "veil-provider-client"}
	return vals
}

// isProviders says whether o is one of the providers' objects.
func isProviders(o obj) bool {
	md := o["metadata"].(map[string]any)
	return md["namespace"] == providersNamespace || o["kind"] == "ProviderRegistration"
}

var providerHashSuffix = regexp.MustCompile(`^(veil-provider-(vault|aws)-(config|ca|tls))-[a-z0-9]{10}$`)

// normalizeProviders: the documented differences between the chart's
// providers and artifacts/providers' (charts/veil/README.md): the
// Namespace (the chart does not make it), the serving certificate Secret
// (the deployer's or cert-manager's), generator hash suffixes, Helm's
// labels, and the configuration's text (compared as YAML; the artifacts'
// has comments).
func normalizeProviders(t *testing.T, objs []obj) map[string]obj {
	t.Helper()
	out := map[string]obj{}
	for _, o := range objs {
		if !isProviders(o) && o["kind"] != "Namespace" {
			continue
		}
		md := o["metadata"].(map[string]any)
		if labels, ok := md["labels"].(map[string]any); ok {
			for _, l := range helmLabels {
				delete(labels, l)
			}
		}
		switch o["kind"] {
		case "Namespace", "Secret":
			continue
		case "ConfigMap":
			md["name"] = providerHashSuffix.ReplaceAllString(md["name"].(string), "$1")
			data := o["data"].(map[string]any)
			if c, ok := data["config.yaml"].(string); ok {
				var parsed any
				if err := yaml.Unmarshal([]byte(c), &parsed); err != nil {
					t.Fatalf("%s: %v", key(o), err)
				}
				data["config.yaml"] = parsed
			}
		case "Deployment":
			pod := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			for _, v := range pod["volumes"].([]any) {
				v := v.(map[string]any)
				if cm, ok := v["configMap"].(map[string]any); ok {
					cm["name"] = providerHashSuffix.ReplaceAllString(cm["name"].(string), "$1")
				}
				if s, ok := v["secret"].(map[string]any); ok {
					s["secretName"] = providerHashSuffix.ReplaceAllString(s["secretName"].(string), "$1")
				}
			}
		}
		out[key(o)] = o
	}
	return out
}

// TestProvidersChartIsArtifacts: with both providers on, in
// veil-providers, the chart renders what artifacts/providers with both
// components gives, the documented differences aside.
func TestProvidersChartIsArtifacts(t *testing.T) {
	ca := newTestCA(t)
	certs := newProviderCerts(t)
	kust := normalizeProviders(t, kustomizeProviders(t, certs))
	chart := normalizeProviders(t, mustRender(t, loadChart(t), providerValues(t, ca, certs)))
	for k, want := range kust {
		got, ok := chart[k]
		if !ok {
			t.Errorf("%s: in artifacts/providers, not rendered by the chart", k)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := yaml.Marshal(got)
			w, _ := yaml.Marshal(want)
			t.Errorf("%s differs; chart:\n%s\nartifacts/providers:\n%s", k, g, w)
		}
	}
	for k := range chart {
		if _, ok := kust[k]; !ok {
			t.Errorf("%s: rendered by the chart, not in artifacts/providers", k)
		}
	}
	// Per provider: ServiceAccount, Deployment, Service, NetworkPolicy,
	// PodDisruptionBudget, two ConfigMaps, ProviderRegistration.
	if len(kust) != 8*len(providerKinds) {
		t.Errorf("artifacts/providers gave %d objects, want %d", len(kust), 8*len(providerKinds))
	}
}

// TestProvidersArtifacts: what artifacts/providers deploys is what the
// processes need: the registration trusts the CA of their certificates and
// names their Service, their configurations parse as veil-provider reads
// them, and the mounts are where the flags point.
func TestProvidersArtifacts(t *testing.T) {
	certs := newProviderCerts(t)
	objs := kustomizeProviders(t, certs)
	ns := find(objs, "Namespace", providersNamespace)
	if ns == nil || ns["metadata"].(map[string]any)["labels"].(map[string]any)["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace %s missing or not Pod Security restricted: %v", providersNamespace, ns)
	}
	for _, kind := range providerKinds {
		name := "veil-provider-" + kind
		reg := find(objs, "ProviderRegistration", name)
		if reg == nil {
			t.Fatalf("no ProviderRegistration %s", name)
		}
		spec := reg["spec"].(map[string]any)
		if spec["provider"] != kind || spec["endpoint"] != name+"."+providersNamespace+".svc:8443" ||
			spec["serverName"] != name+"."+providersNamespace+".svc" || spec["caBundle"] != string(certs.caPEM) {
			t.Errorf("ProviderRegistration %s: %v", name, spec)
		}
		if err := provisionedConfig(t, objs, name, kind); err != nil {
			t.Error(err)
		}
		dep := find(objs, "Deployment", name)
		c := containers(dep)[0]
		if img := c["image"].(string); !strings.HasPrefix(img, "ghcr.io/veil-dev/"+name+":") {
			t.Errorf("%s runs %s", name, img)
		}
		checkProviderMounts(t, dep)
	}
}

// provisionedConfig parses the configuration the Deployment mounts as
// veil-provider --provider=kind does.
func provisionedConfig(t *testing.T, objs []obj, name, kind string) error {
	t.Helper()
	for _, o := range objs {
		md := o["metadata"].(map[string]any)
		if o["kind"] != "ConfigMap" || providerHashSuffix.ReplaceAllString(md["name"].(string), "$1") != name+"-config" {
			continue
		}
		c, err := remote.ParseConfig([]byte(o["data"].(map[string]any)["config.yaml"].(string)), kind)
		if err != nil {
			return fmt.Errorf("%s: the configuration does not parse for %s: %v", key(o), kind, err)
		}
		if len(c.Stores) == 0 {
			return fmt.Errorf("%s: the example configuration serves no store", key(o))
		}
		for _, s := range c.Stores {
			if s.CredentialsDir != "/var/run/veil-provider" {
				return fmt.Errorf("%s: store %s has credentialsDir %q, where the Deployment mounts nothing", key(o), s.Name, s.CredentialsDir)
			}
		}
		return nil
	}
	return fmt.Errorf("no ConfigMap %s-config", name)
}

// checkProviderMounts: every file a flag names is in a mounted volume.
func checkProviderMounts(t *testing.T, dep obj) {
	t.Helper()
	c := containers(dep)[0]
	mounts := map[string]bool{}
	for _, m := range c["volumeMounts"].([]any) {
		mounts[m.(map[string]any)["mountPath"].(string)] = true
	}
	for _, a := range c["args"].([]any) {
		flag, file, ok := strings.Cut(a.(string), "=")
		if !ok || !strings.HasSuffix(flag, "-file") && flag != "--config" {
			continue
		}
		if !mounts[filepath.Dir(file)] {
			t.Errorf("%s: %s is not in a mounted volume (%v)", key(dep), a, mounts)
		}
	}
}

// TestProvidersLeastPrivilege (threat model 002 T9): a provider's
// ServiceAccount has no Kubernetes API access: no API token is mounted, the
// token it gets has its backend's audience (not kube-apiserver's), and no
// binding anywhere in artifacts/ or the chart names it. Its pods run as
// veil-apiserver's do: non-root 65532, read-only root, no capabilities,
// RuntimeDefault seccomp.
func TestProvidersLeastPrivilege(t *testing.T) {
	ca := newTestCA(t)
	certs := newProviderCerts(t)
	vals := providerValues(t, ca, certs)
	for k, v := range everything(ca) {
		if _, ok := vals[k]; !ok {
			vals[k] = v
		}
	}
	for source, objs := range map[string][]obj{
		"artifacts": append(kustomizeDeploy(t, ca), kustomizeProviders(t, certs)...),
		"chart":     mustRender(t, loadChart(t), vals),
	} {
		t.Run(source, func(t *testing.T) {
			for _, kind := range providerKinds {
				name := "veil-provider-" + kind
				sa := find(objs, "ServiceAccount", name)
				if sa == nil || sa["automountServiceAccountToken"] != false {
					t.Errorf("ServiceAccount %s: %v; want automountServiceAccountToken: false", name, sa)
				}
				dep := find(objs, "Deployment", name)
				if dep == nil {
					t.Fatalf("no Deployment %s", name)
				}
				var d struct {
					Spec struct {
						Template corev1.PodTemplateSpec `json:"template"`
					} `json:"spec"`
				}
				data, _ := json.Marshal(dep)
				if err := json.Unmarshal(data, &d); err != nil {
					t.Fatal(err)
				}
				pod := d.Spec.Template.Spec
				if pod.ServiceAccountName != name || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
					t.Errorf("%s: serviceAccountName %q, automountServiceAccountToken %v", name, pod.ServiceAccountName, pod.AutomountServiceAccountToken)
				}
				psc := pod.SecurityContext
				if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
					psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: pod securityContext %+v", name, psc)
				}
				for _, c := range pod.Containers {
					sc := c.SecurityContext
					if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
						*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
						t.Errorf("%s: container %s securityContext %+v", name, c.Name, sc)
					}
					if c.Resources.Limits.Memory().IsZero() {
						t.Errorf("%s: no memory limit", name)
					}
				}
				for _, v := range pod.Volumes {
					if v.Projected == nil {
						continue
					}
					for _, s := range v.Projected.Sources {
						if s.ServiceAccountToken != nil && (s.ServiceAccountToken.Audience == "" || strings.Contains(s.ServiceAccountToken.Audience, "kubernetes")) {
							t.Errorf("%s: projects a token for kube-apiserver (audience %q)", name, s.ServiceAccountToken.Audience)
						}
					}
				}
			}
			for _, o := range objs {
				if o["kind"] != "RoleBinding" && o["kind"] != "ClusterRoleBinding" {
					continue
				}
				subjects, _ := o["subjects"].([]any)
				for _, s := range subjects {
					s := s.(map[string]any)
					if n, _ := s["name"].(string); strings.HasPrefix(n, "veil-provider") || strings.Contains(n, providersNamespace) {
						t.Errorf("%s binds %v", key(o), s)
					}
					if s["kind"] == "Group" && strings.HasPrefix(s["name"].(string), "system:serviceaccounts") {
						t.Errorf("%s binds every ServiceAccount of a group: %v", key(o), s)
					}
				}
			}
		})
	}
}

// pod is a source or target of traffic, for the NetworkPolicy checks.
type pod struct {
	namespace string
	labels    map[string]string
	ports     map[string]int32 // the container ports, by name
}

func (p pod) String() string { return fmt.Sprintf("pod %v in %s", p.labels, p.namespace) }

// admitted says whether policies let from reach port of to, as
// NetworkPolicy ingress rules are defined: a pod no policy selects admits
// everything; one that policies select admits what some rule of one of
// them admits. Namespaces carry kubernetes.io/metadata.name and nothing
// else; an ipBlock is taken to admit any pod (pod addresses are in some
// CIDR), which makes the checks strict.
func admitted(t *testing.T, policies []networkingv1.NetworkPolicy, from, to pod, port int32) bool {
	t.Helper()
	sel := func(s *metav1.LabelSelector, l map[string]string) bool {
		if s == nil {
			return false
		}
		ls, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		return ls.Matches(labels.Set(l))
	}
	selected := false
	for _, np := range policies {
		if np.Namespace != to.namespace || !sel(&np.Spec.PodSelector, to.labels) {
			continue
		}
		if len(np.Spec.PolicyTypes) > 0 && !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			continue
		}
		selected = true
		for _, rule := range np.Spec.Ingress {
			peerOK := len(rule.From) == 0
			for _, p := range rule.From {
				switch {
				case p.IPBlock != nil:
					peerOK = true
				case p.NamespaceSelector != nil:
					nsOK := sel(p.NamespaceSelector, map[string]string{"kubernetes.io/metadata.name": from.namespace})
					peerOK = peerOK || nsOK && (p.PodSelector == nil || sel(p.PodSelector, from.labels))
				case p.PodSelector != nil:
					peerOK = peerOK || from.namespace == np.Namespace && sel(p.PodSelector, from.labels)
				}
			}
			portOK := len(rule.Ports) == 0
			for _, rp := range rule.Ports {
				if rp.Protocol != nil && *rp.Protocol != corev1.ProtocolTCP {
					continue
				}
				switch {
				case rp.Port == nil:
					portOK = true
				case rp.Port.Type == intstr.Int:
					portOK = portOK || rp.Port.IntVal == port || rp.EndPort != nil && port >= rp.Port.IntVal && port <= *rp.EndPort
				default:
					n, ok := to.ports[rp.Port.StrVal]
					portOK = portOK || ok && n == port
				}
			}
			if peerOK && portOK {
				return true
			}
		}
	}
	return !selected
}

func networkPolicies(t *testing.T, objs []obj) []networkingv1.NetworkPolicy {
	t.Helper()
	var out []networkingv1.NetworkPolicy
	for _, o := range objs {
		if o["kind"] != "NetworkPolicy" {
			continue
		}
		data, _ := json.Marshal(o)
		var np networkingv1.NetworkPolicy
		if err := json.Unmarshal(data, &np); err != nil {
			t.Fatal(err)
		}
		out = append(out, np)
	}
	return out
}

// providerPod is the pod a provider Deployment makes.
func providerPod(t *testing.T, objs []obj, name string) pod {
	t.Helper()
	dep := find(objs, "Deployment", name)
	if dep == nil {
		t.Fatalf("no Deployment %s", name)
	}
	tmpl := dep["spec"].(map[string]any)["template"].(map[string]any)
	p := pod{namespace: dep["metadata"].(map[string]any)["namespace"].(string), labels: map[string]string{}, ports: map[string]int32{}}
	for k, v := range tmpl["metadata"].(map[string]any)["labels"].(map[string]any) {
		p.labels[k] = v.(string)
	}
	for _, c := range containers(dep) {
		for _, cp := range c["ports"].([]any) {
			cp := cp.(map[string]any)
			n, err := strconv.Atoi(fmt.Sprint(cp["containerPort"]))
			if err != nil {
				t.Fatalf("%s: containerPort %v", name, cp["containerPort"])
			}
			p.ports[cp["name"].(string)] = int32(n)
		}
	}
	return p
}

// TestProviderNetworkPolicyAdmitsOnlyVeilAPIServer (threat model 002 T1):
// of every pod that could try, only veil-apiserver's, in its namespace,
// reaches a provider, and only its gRPC port; with metrics on, the
// metrics port admits the peers named for it and them only there.
func TestProviderNetworkPolicyAdmitsOnlyVeilAPIServer(t *testing.T) {
	ca := newTestCA(t)
	certs := newProviderCerts(t)
	chartVals := providerValues(t, ca, certs)
	metricsVals := providerValues(t, ca, certs)
	prometheus := map[string]any{
		"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}},
		"podSelector":       map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "prometheus"}},
	}
	for _, kind := range providerKinds {
		p := metricsVals["providers"].(map[string]any)[kind].(map[string]any)
		p["metrics"] = map[string]any{"enabled": true, "from": []any{prometheus}}
	}
	metricsOnNoPeers := providerValues(t, ca, certs)
	metricsOnNoPeers["providers"].(map[string]any)["vault"].(map[string]any)["metrics"] = map[string]any{"enabled": true}

	apiserver := pod{namespace: namespace, labels: map[string]string{"app.kubernetes.io/name": "veil-apiserver"}}
	prom := pod{namespace: "monitoring", labels: map[string]string{"app.kubernetes.io/name": "prometheus"}}
	others := []pod{
		{namespace: namespace, labels: map[string]string{"app.kubernetes.io/name": "veil-syncer"}},
		{namespace: namespace, labels: map[string]string{}},
		{namespace: "team-a", labels: map[string]string{"app.kubernetes.io/name": "veil-apiserver"}},
		{namespace: providersNamespace, labels: map[string]string{"app.kubernetes.io/name": "veil-apiserver"}},
		{namespace: providersNamespace, labels: map[string]string{"app.kubernetes.io/name": "veil-provider-aws"}},
		{namespace: providersNamespace, labels: map[string]string{"app.kubernetes.io/name": "veil-provider-vault"}},
		{namespace: "kube-system", labels: map[string]string{"component": "kube-apiserver"}},
		{namespace: "monitoring", labels: map[string]string{"app.kubernetes.io/name": "grafana"}},
	}
	for name, tc := range map[string]struct {
		objs    []obj
		metrics bool // metrics on, from prometheus
	}{
		"artifacts":                    {objs: kustomizeProviders(t, certs)},
		"chart":                        {objs: mustRender(t, loadChart(t), chartVals)},
		"chart with metrics":           {objs: mustRender(t, loadChart(t), metricsVals), metrics: true},
		"chart with metrics, no peers": {objs: mustRender(t, loadChart(t), metricsOnNoPeers)},
	} {
		t.Run(name, func(t *testing.T) {
			nps := networkPolicies(t, tc.objs)
			for _, kind := range providerKinds {
				target := providerPod(t, tc.objs, "veil-provider-"+kind)
				grpc := target.ports["grpc"]
				if grpc != 8443 {
					t.Fatalf("%s: grpc port %d", target, grpc)
				}
				if !admitted(t, nps, apiserver, target, grpc) {
					t.Errorf("veil-apiserver is refused veil-provider-%s's gRPC port", kind)
				}
				ports := []int32{grpc, 9090, 80, 443}
				if m, ok := target.ports["metrics"]; ok {
					ports = append(ports, m)
				}
				for _, port := range ports[1:] {
					if admitted(t, nps, apiserver, target, port) {
						t.Errorf("veil-apiserver is admitted to veil-provider-%s's port %d", kind, port)
					}
				}
				for _, from := range append(others, prom) {
					for _, port := range ports {
						want := tc.metrics && from.namespace == prom.namespace && from.labels["app.kubernetes.io/name"] == "prometheus" && port == 9090
						if got := admitted(t, nps, from, target, port); got != want {
							t.Errorf("%s reaches veil-provider-%s's port %d: %v, want %v", from, kind, port, got, want)
						}
					}
				}
			}
		})
	}
	// The evaluator itself: without the policies, everything is admitted.
	objs := kustomizeProviders(t, certs)
	if !admitted(t, nil, others[0], providerPod(t, objs, "veil-provider-vault"), 8443) {
		t.Error("with no NetworkPolicy, a pod was refused")
	}
	// And the chart's networkPolicy switch drops them.
	off := providerValues(t, ca, certs)
	off["providers"].(map[string]any)["networkPolicy"] = map[string]any{"enabled": false}
	if nps := networkPolicies(t, mustRender(t, loadChart(t), off)); len(nps) != 0 {
		t.Errorf("providers.networkPolicy.enabled=false rendered %d NetworkPolicies", len(nps))
	}
}

// TestProvidersOptions: off by default; on, a provider needs its CA and
// veil-apiserver's client CA; with cert-manager its certificate is issued
// for its Service's name; and the values reach the objects.
func TestProvidersOptions(t *testing.T) {
	ca := newTestCA(t)
	certs := newProviderCerts(t)
	ch := loadChart(t)
	for _, o := range mustRender(t, ch, ca.tlsValues()) {
		if strings.Contains(key(o), "veil-provider") || o["kind"] == "ProviderRegistration" {
			t.Errorf("%s rendered by default", key(o))
		}
	}
	noCA := providerValues(t, ca, certs)
	noCA["providers"].(map[string]any)["aws"].(map[string]any)["caBundle"] = ""
	noClientCA := providerValues(t, ca, certs)
	noClientCA["providers"].(map[string]any)["clientCA"] = ""
	for name, vals := range map[string]map[string]any{"no caBundle": noCA, "no clientCA": noClientCA} {
		if _, err := render(t, ch, vals); err == nil {
			t.Errorf("%s: rendered", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}

	vals := providerValues(t, ca, certs)
	vals["tls"] = map[string]any{"certManager": map[string]any{"enabled": true, "issuerRef": map[string]any{"name": "veil-ca", "kind": "ClusterIssuer"}}}
	ps := vals["providers"].(map[string]any)
	ps["namespace"] = ""
	ps["allowedClient"] = "spiffe://example.org/veil-apiserver"
	vault := ps["vault"].(map[string]any)
	vault["replicas"] = 3
	vault["credentialsSecret"] = "vault-token"
	vault["tokenAudience"] = ""
	vault["extraArgs"] = []any{"-v=2"}
	vault["image"] = map[string]any{"repository": "registry.example.org/veil-provider-vault", "tag": "v9.9.9"}
	vault["podDisruptionBudget"] = map[string]any{"enabled": false}
	ps["aws"].(map[string]any)["tlsSecret"] = "aws-serving"
	objs := mustRender(t, ch, vals)

	cert := find(objs, "Certificate", "veil-provider-vault")
	if cert == nil {
		t.Fatal("no Certificate for veil-provider-vault with cert-manager")
	}
	spec := cert["spec"].(map[string]any)
	if spec["secretName"] != "veil-provider-vault-tls" || fmt.Sprint(spec["dnsNames"]) != "[veil-provider-vault.veil-system.svc]" ||
		fmt.Sprint(spec["usages"]) != "[server auth digital signature]" || cert["metadata"].(map[string]any)["namespace"] != namespace {
		t.Errorf("Certificate veil-provider-vault: %v", spec)
	}
	if find(objs, "Certificate", "veil-provider-aws") != nil {
		t.Error("a Certificate for veil-provider-aws, whose tlsSecret is set")
	}
	reg := find(objs, "ProviderRegistration", "veil-provider-vault")["spec"].(map[string]any)
	if reg["endpoint"] != "veil-provider-vault.veil-system.svc:8443" || reg["serverName"] != "veil-provider-vault.veil-system.svc" {
		t.Errorf("ProviderRegistration in the release namespace: %v", reg)
	}
	dep := find(objs, "Deployment", "veil-provider-vault")
	c := containers(dep)[0]
	args := fmt.Sprint(c["args"])
	for _, a := range []string{"--allowed-client=spiffe://example.org/veil-apiserver", "-v=2"} {
		if !strings.Contains(args, a) {
			t.Errorf("veil-provider-vault args %s lack %s", args, a)
		}
	}
	if c["image"] != "registry.example.org/veil-provider-vault:v9.9.9" || fmt.Sprint(dep["spec"].(map[string]any)["replicas"]) != "3" {
		t.Errorf("veil-provider-vault image %v replicas %v", c["image"], dep["spec"].(map[string]any)["replicas"])
	}
	vols, _ := yaml.Marshal(dep["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["volumes"])
	if !strings.Contains(string(vols), "secretName: vault-token") || strings.Contains(string(vols), "serviceAccountToken") {
		t.Errorf("veil-provider-vault volumes:\n%s", vols)
	}
	checkProviderMounts(t, dep)
	if find(objs, "PodDisruptionBudget", "veil-provider-vault") != nil || find(objs, "PodDisruptionBudget", "veil-provider-aws") == nil {
		t.Error("podDisruptionBudget.enabled is not followed per provider")
	}
	one := providerValues(t, ca, certs)
	one["providers"].(map[string]any)["aws"].(map[string]any)["replicas"] = 1
	if find(mustRender(t, ch, one), "PodDisruptionBudget", "veil-provider-aws") != nil {
		t.Error("a PodDisruptionBudget for a single replica, which would block every drain")
	}
	awsVols, _ := yaml.Marshal(find(objs, "Deployment", "veil-provider-aws")["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["volumes"])
	if !strings.Contains(string(awsVols), "secretName: aws-serving") || !strings.Contains(string(awsVols), "audience: sts.amazonaws.com") {
		t.Errorf("veil-provider-aws volumes:\n%s", awsVols)
	}
	awsArgs := fmt.Sprint(containers(find(objs, "Deployment", "veil-provider-aws"))[0]["args"])
	if !strings.Contains(awsArgs, "--allowed-client=spiffe://example.org/veil-apiserver") {
		t.Errorf("veil-provider-aws args %s", awsArgs)
	}
	def := providerValues(t, ca, certs)
	def["providers"].(map[string]any)["allowedClient"] = ""
	defArgs := fmt.Sprint(containers(find(mustRender(t, ch, def), "Deployment", "veil-provider-aws"))[0]["args"])
	if !strings.Contains(defArgs, "--allowed-client=spiffe://cluster.local/ns/veil-system/sa/veil-apiserver") {
		t.Errorf("default --allowed-client: %s", defArgs)
	}
}

// kustomizeDeployWithClient builds an overlay of artifacts/deploy with the
// apiserver-client component, as docs/veil-provider.md shows it.
func kustomizeDeployWithClient(t *testing.T, ca testCA) []obj {
	t.Helper()
	tmp := t.TempDir()
	if err := os.CopyFS(filepath.Join(tmp, "artifacts"), os.DirFS(filepath.Join(root, "artifacts"))); err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(tmp, "artifacts", "deploy", "tls")
	clientDir := filepath.Join(tmp, "artifacts", "providers", "apiserver-client", "tls")
	for _, d := range []string{tlsDir, clientDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"ca.crt", "tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(tlsDir, f), readFile(t, ca.dir, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	client, err := harness.NewCA(t.TempDir(), "client-ca")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.IssueWorkload(clientDir, "tls", "spiffe://cluster.local/ns/veil-system/sa/veil-apiserver"); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(tmp, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../artifacts/deploy\ncomponents:\n  - ../artifacts/providers/apiserver-client\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), overlay)
	if err != nil {
		t.Fatal(err)
	}
	var kust []obj
	for _, r := range m.Resources() {
		o, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := yaml.Marshal(o)
		kust = append(kust, decodeAll(t, data)...)
	}
	return kust
}

// TestProviderClientComponentIsTheChart: artifacts/deploy with the
// apiserver-client component gives veil-apiserver the Deployment the
// chart renders with apiserver.providerClientSecret, and the certificate
// in a kubernetes.io/tls Secret of that name.
func TestProviderClientComponentIsTheChart(t *testing.T) {
	ca := newTestCA(t)
	kust := kustomizeDeployWithClient(t, ca)
	var secret obj
	suffix := regexp.MustCompile(`^veil-apiserver-provider-client-[a-z0-9]{10}$`)
	for _, o := range kust {
		if o["kind"] == "Secret" && suffix.MatchString(o["metadata"].(map[string]any)["name"].(string)) {
			secret = o
		}
	}
	if secret == nil || secret["type"] != "kubernetes.io/tls" {
		t.Fatalf("no kubernetes.io/tls Secret veil-apiserver-provider-client: %v", secret)
	}
	want := normalizeKustomize(kust)["Deployment/veil-system/veil-apiserver"]
	// The generated Secret's name, as the other generated names.
	pod := want["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	for _, v := range pod["volumes"].([]any) {
		if s, ok := v.(map[string]any)["secret"].(map[string]any); ok {
			s["secretName"] = regexp.MustCompile(`^(veil-apiserver-provider-client)-[a-z0-9]{10}$`).ReplaceAllString(s["secretName"].(string), "$1")
		}
	}
	vals := ca.tlsValues()
	vals["apiserver"] = map[string]any{"providerClientSecret": "veil-apiserver-provider-client"}
	got := normalizeChart(mustRender(t, loadChart(t), vals))["Deployment/veil-system/veil-apiserver"]
	if !reflect.DeepEqual(got, want) {
		g, _ := yaml.Marshal(got)
		w, _ := yaml.Marshal(want)
		t.Errorf("veil-apiserver differs; chart:\n%s\nartifacts/deploy with apiserver-client:\n%s", g, w)
	}
	if !strings.Contains(fmt.Sprint(containers(want)[0]["args"]), "--provider-client-cert-file=/etc/veil/provider-client/tls.crt") {
		t.Errorf("the component does not pass the flags: %v", containers(want)[0]["args"])
	}
}
