package charttest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/veil-dev/veil/test/harness"
)

const (
	root      = "../.."
	chartDir  = root + "/charts/veil"
	namespace = "veil-system"
)

// obj is one decoded Kubernetes object.
type obj = map[string]any

func key(o obj) string {
	md, _ := o["metadata"].(map[string]any)
	return fmt.Sprintf("%v/%v/%v", o["kind"], md["namespace"], md["name"])
}

// decodeAll splits a multi-document YAML stream into objects, dropping
// empty documents.
func decodeAll(t *testing.T, data []byte) []obj {
	t.Helper()
	var out []obj
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var o obj
		err := d.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decoding: %v\n%s", err, data)
		}
		if len(o) > 0 {
			out = append(out, o)
		}
	}
}

// testCA is a CA and a serving certificate for veil-apiserver, made once.
type testCA struct {
	dir    string
	caPEM  []byte
	secret string
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	dir := t.TempDir()
	ca, err := harness.NewCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	host := "veil-apiserver." + namespace + ".svc"
	if _, err := ca.Issue(dir, "tls", host, nil, []string{host, host + ".cluster.local"}); err != nil {
		t.Fatal(err)
	}
	return testCA{dir: dir, caPEM: ca.CertPEM, secret: "veil-apiserver-tls"}
}

// tlsValues are the values a user sets with a certificate of their own.
func (c testCA) tlsValues() map[string]any {
	return map[string]any{"tls": map[string]any{"existingSecret": c.secret, "caBundle": string(c.caPEM)}}
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// render renders the chart as `helm template -n veil-system --include-crds`
// would, without a cluster.
func render(t *testing.T, ch *chart.Chart, vals map[string]any) ([]obj, error) {
	t.Helper()
	return renderWith(t, ch, vals, namespace, nil)
}

// renderWith renders into namespace ns against the cluster cfg reaches
// (lookup reads it), or without a cluster when cfg is nil.
func renderWith(t *testing.T, ch *chart.Chart, vals map[string]any, ns string, cfg *rest.Config) ([]obj, error) {
	t.Helper()
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: "veil", Namespace: ns, Revision: 1, IsInstall: true,
	}, nil)
	if err != nil {
		return nil, err
	}
	var files map[string]string
	if cfg != nil {
		files, err = engine.RenderWithClient(ch, rv, cfg)
	} else {
		files, err = engine.Render(ch, rv)
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []obj
	for _, n := range names {
		if strings.HasSuffix(n, "NOTES.txt") {
			continue
		}
		out = append(out, decodeAll(t, []byte(files[n]))...)
	}
	for _, crd := range ch.CRDObjects() {
		out = append(out, decodeAll(t, crd.File.Data)...)
	}
	return out, nil
}

func mustRender(t *testing.T, ch *chart.Chart, vals map[string]any) []obj {
	t.Helper()
	objs, err := render(t, ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// kustomizeDeploy builds artifacts/deploy (a copy, with the certificate
// `make certs` would write in tls/) as `kubectl kustomize` does.
func kustomizeDeploy(t *testing.T, ca testCA) []obj {
	t.Helper()
	tmp := t.TempDir()
	if err := os.CopyFS(filepath.Join(tmp, "artifacts"), os.DirFS(filepath.Join(root, "artifacts"))); err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(tmp, "artifacts", "deploy", "tls")
	if err := os.MkdirAll(tlsDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "tls.crt", "tls.key"} {
		data, err := os.ReadFile(filepath.Join(ca.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tlsDir, f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(tmp, "artifacts", "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	// The resources' maps, not m.AsYaml(): kustomize's YAML writer adds a
	// blank line before a more-indented line of a folded scalar (the CEL
	// of the admission policies), which changes the string.
	var out []obj
	for _, r := range m.Resources() {
		o, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		// Round trip through JSON so numbers decode as the chart's do.
		data, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, decodeAll(t, data)...)
	}
	return out
}

// The documented differences between the chart's default rendering and
// artifacts/deploy (charts/veil/README.md, "One source of truth"):
var (
	// Labels Helm's conventions add to every object the chart renders.
	helmLabels = []string{"app.kubernetes.io/managed-by", "app.kubernetes.io/instance", "app.kubernetes.io/version", "helm.sh/chart"}
	// kustomize's generators suffix a hash to the ConfigMap's and Secret's
	// names (and to the references); the chart rolls pods with a checksum
	// annotation instead.
	hashSuffix = regexp.MustCompile(`^(veil-audit-policy|veil-apiserver-tls)-[a-z0-9]{10}$`)
)

func normalizeChart(objs []obj) map[string]obj {
	out := map[string]obj{}
	for _, o := range objs {
		md := o["metadata"].(map[string]any)
		if labels, ok := md["labels"].(map[string]any); ok {
			for _, l := range helmLabels {
				delete(labels, l)
			}
		}
		if o["kind"] == "CustomResourceDefinition" {
			// crds/ is copied verbatim from artifacts/base/crds; Helm does
			// not template it, so it lacks kustomize's part-of label.
			md["labels"] = map[string]any{"app.kubernetes.io/part-of": "veil"}
		}
		if o["kind"] == "Deployment" {
			tmd := o["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)
			if ann, ok := tmd["annotations"].(map[string]any); ok {
				delete(ann, "checksum/audit-policy")
				if len(ann) == 0 {
					delete(tmd, "annotations")
				}
			}
		}
		out[key(o)] = o
	}
	return out
}

func normalizeKustomize(objs []obj) map[string]obj {
	out := map[string]obj{}
	for _, o := range objs {
		md := o["metadata"].(map[string]any)
		switch o["kind"] {
		case "Namespace":
			// helm install --create-namespace makes it (README).
			continue
		case "Secret":
			// The chart uses an existing Secret (tls.existingSecret) or
			// cert-manager's; it never holds a private key in values.
			continue
		case "APIService":
			// kustomize wraps the base64 it copies from the Secret at 70
			// columns; kube-apiserver decodes either the same.
			spec := o["spec"].(map[string]any)
			if b, ok := spec["caBundle"].(string); ok {
				spec["caBundle"] = strings.Join(strings.Fields(b), "")
			}
		case "ConfigMap":
			md["name"] = hashSuffix.ReplaceAllString(md["name"].(string), "$1")
		case "Deployment":
			pod := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			vols, _ := pod["volumes"].([]any)
			for _, v := range vols {
				v := v.(map[string]any)
				if cm, ok := v["configMap"].(map[string]any); ok {
					cm["name"] = hashSuffix.ReplaceAllString(cm["name"].(string), "$1")
				}
				if s, ok := v["secret"].(map[string]any); ok {
					s["secretName"] = hashSuffix.ReplaceAllString(s["secretName"].(string), "$1")
				}
			}
		}
		out[key(o)] = o
	}
	return out
}

// TestChartIsArtifactsDeploy is the one-source-of-truth check: a change to
// artifacts/ that the chart does not follow (or the reverse) fails here.
func TestChartIsArtifactsDeploy(t *testing.T) {
	ca := newTestCA(t)
	chartObjs := normalizeChart(mustRender(t, loadChart(t), ca.tlsValues()))
	kustObjs := normalizeKustomize(kustomizeDeploy(t, ca))

	for k, want := range kustObjs {
		got, ok := chartObjs[k]
		if !ok {
			t.Errorf("%s: in artifacts/deploy, not rendered by the chart", k)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := yaml.Marshal(got)
			w, _ := yaml.Marshal(want)
			t.Errorf("%s differs; chart:\n%s\nartifacts/deploy:\n%s", k, g, w)
		}
	}
	for k := range chartObjs {
		if _, ok := kustObjs[k]; !ok {
			t.Errorf("%s: rendered by the chart with default values, not in artifacts/deploy", k)
		}
	}
	if len(kustObjs) < 40 {
		t.Errorf("artifacts/deploy gave only %d objects", len(kustObjs))
	}
}

// TestCRDsAreCopies: crds/ is artifacts/base/crds byte for byte (make
// update copies them).
func TestCRDsAreCopies(t *testing.T) {
	want, _ := filepath.Glob(filepath.Join(root, "artifacts/base/crds/*.yaml"))
	got, _ := filepath.Glob(filepath.Join(chartDir, "crds/*.yaml"))
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("charts/veil/crds has %d files, artifacts/base/crds %d: run make update", len(got), len(want))
	}
	for _, w := range want {
		a, _ := os.ReadFile(w)
		b, err := os.ReadFile(filepath.Join(chartDir, "crds", filepath.Base(w)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("charts/veil/crds/%s is not a copy of %s: run make update", filepath.Base(w), w)
		}
	}
}

// TestChartVersion: the chart's version and appVersion are VERSION, and
// the images default to v + VERSION.
func TestChartVersion(t *testing.T) {
	v, err := os.ReadFile(filepath.Join(root, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(string(v))
	ch := loadChart(t)
	if ch.Metadata.Version != version || ch.Metadata.AppVersion != version {
		t.Errorf("Chart.yaml: version %q, appVersion %q; VERSION says %q", ch.Metadata.Version, ch.Metadata.AppVersion, version)
	}
	ca := newTestCA(t)
	for _, o := range mustRender(t, ch, ca.tlsValues()) {
		if o["kind"] != "Deployment" {
			continue
		}
		for _, c := range containers(o) {
			if img := c["image"].(string); !strings.HasSuffix(img, ":v"+version) {
				t.Errorf("%s runs %s, not tagged v%s", key(o), img, version)
			}
		}
	}
}

func containers(o obj) []map[string]any {
	pod := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	var out []map[string]any
	for _, c := range pod["containers"].([]any) {
		out = append(out, c.(map[string]any))
	}
	return out
}

func find(objs []obj, kind, name string) obj {
	for _, o := range objs {
		if o["kind"] == kind && o["metadata"].(map[string]any)["name"] == name {
			return o
		}
	}
	return nil
}

// TestLint is `helm lint` (the library it runs): no warning, no error,
// with the values a user must set and with every optional part on.
func TestLint(t *testing.T) {
	ca := newTestCA(t)
	for name, vals := range map[string]map[string]any{
		"existing secret": ca.tlsValues(),
		"everything":      everything(ca),
	} {
		t.Run(name, func(t *testing.T) {
			l := lint.All(chartDir, vals, namespace, false)
			for _, m := range l.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
}

// everything turns every optional part of the chart on.
func everything(ca testCA) map[string]any {
	return map[string]any{
		"tls":                      map[string]any{"existingSecret": ca.secret, "caBundle": base64.StdEncoding.EncodeToString(ca.caPEM)},
		"allowedProviderEndpoints": []any{"vault.example.com", "*.amazonaws.com", "10.0.0.0/8"},
		"auditPolicy":              "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n",
		"apiserver": map[string]any{"replicas": 3, "extraArgs": []any{"--max-stale=10m"}, "image": map[string]any{"tag": "v9.9.9", "pullPolicy": "Always"}, "providerClientSecret": "veil-provider-client",
			"vaultAuditFeeds": []any{map[string]any{"server": "https://vault.vault.svc:8200", "port": 8201}}, "vaultAuditSources": []any{"10.0.12.0/24", "10.0.13.7"}},
		"syncer":           map[string]any{"excludedNamespaces": []any{"kube-system", "kube-public"}, "extraArgs": []any{"-v=2"}},
		"networkPolicy":    map[string]any{"enabled": true, "from": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/8"}}}},
		"serviceMonitor":   map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
		"prometheusRule":   map[string]any{"enabled": true},
		"grafanaDashboard": map[string]any{"enabled": true},
		"providers": map[string]any{"clientCA": string(ca.caPEM),
			"vault": map[string]any{"enabled": true, "caBundle": string(ca.caPEM),
				"metrics": map[string]any{"enabled": true, "from": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/8"}}}}},
			"aws": map[string]any{"enabled": true, "caBundle": string(ca.caPEM)}},
	}
}

func TestEverythingOn(t *testing.T) {
	ca := newTestCA(t)
	objs := mustRender(t, loadChart(t), everything(ca))
	for _, want := range []struct{ kind, name string }{
		{"NetworkPolicy", "veil-apiserver"}, {"ServiceMonitor", "veil-apiserver"}, {"ServiceMonitor", "veil-syncer"},
		{"Service", "veil-syncer-metrics"}, {"PrometheusRule", "veil"}, {"ConfigMap", "veil-grafana-dashboard"},
		{"Deployment", "veil-provider-vault"}, {"NetworkPolicy", "veil-provider-vault"}, {"ProviderRegistration", "veil-provider-aws"},
		{"Service", "veil-apiserver-vault-audit"}, {"EndpointSlice", "veil-apiserver-leader"},
	} {
		if find(objs, want.kind, want.name) == nil {
			t.Errorf("no %s %s", want.kind, want.name)
		}
	}
	dep := find(objs, "Deployment", "veil-apiserver")
	c := containers(dep)[0]
	args := fmt.Sprint(c["args"])
	for _, a := range []string{"--allowed-provider-endpoints=vault.example.com,*.amazonaws.com,10.0.0.0/8", "--max-stale=10m",
		"--vault-audit-feed=https://vault.vault.svc:8200@:8201", "--vault-audit-sources=10.0.12.0/24,10.0.13.7",
		"--leader-endpointslice=veil-apiserver-leader", "--leader-address=$(POD_IP)", "--namespace=veil-system",
		"--provider-client-cert-file=/etc/veil/provider-client/tls.crt", "--provider-client-key-file=/etc/veil/provider-client/tls.key"} {
		if !strings.Contains(args, a) {
			t.Errorf("veil-apiserver args %s lack %s", args, a)
		}
	}
	// The audit feed: the leader's slice is the one the Service reads, the
	// Role lets veil-apiserver write that slice alone, and the
	// NetworkPolicy admits the feed's port from the sources alone.
	if l := find(objs, "EndpointSlice", "veil-apiserver-leader")["metadata"].(map[string]any)["labels"].(map[string]any); l["kubernetes.io/service-name"] != "veil-apiserver-vault-audit" {
		t.Errorf("the leader's EndpointSlice is labelled %v", l)
	}
	if svc := find(objs, "Service", "veil-apiserver-vault-audit")["spec"].(map[string]any); svc["selector"] != nil || fmt.Sprint(svc["ports"]) != "[map[name:vault-audit-0 port:8201 protocol:TCP targetPort:8201]]" {
		t.Errorf("the feed's Service is %v", svc)
	}
	role, _ := yaml.Marshal(find(objs, "Role", "veil-apiserver")["rules"])
	if !strings.Contains(string(role), "endpointslices") || !strings.Contains(string(role), "- veil-apiserver-leader") {
		t.Errorf("veil-apiserver's Role:\n%s", role)
	}
	np, _ := yaml.Marshal(find(objs, "NetworkPolicy", "veil-apiserver")["spec"])
	for _, want := range []string{"port: 8201", "cidr: 10.0.12.0/24", "cidr: 10.0.13.7/32"} {
		if !strings.Contains(string(np), want) {
			t.Errorf("veil-apiserver's NetworkPolicy lacks %q:\n%s", want, np)
		}
	}
	// The provider client certificate is mounted where the flags say.
	mounted := false
	for _, m := range c["volumeMounts"].([]any) {
		mounted = mounted || m.(map[string]any)["mountPath"] == "/etc/veil/provider-client"
	}
	secretMounted := false
	for _, v := range dep["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["volumes"].([]any) {
		if sec, ok := v.(map[string]any)["secret"].(map[string]any); ok && sec["secretName"] == "veil-provider-client" {
			secretMounted = true
		}
	}
	if !mounted || !secretMounted {
		t.Errorf("the provider client certificate Secret is not mounted at /etc/veil/provider-client (mount %v, volume %v)", mounted, secretMounted)
	}
	if c["image"] != "ghcr.io/veil-dev/veil-apiserver:v9.9.9" || c["imagePullPolicy"] != "Always" {
		t.Errorf("veil-apiserver image %v %v", c["image"], c["imagePullPolicy"])
	}
	if r := dep["spec"].(map[string]any)["replicas"]; fmt.Sprint(r) != "3" {
		t.Errorf("replicas %v", r)
	}
	cm := find(objs, "ConfigMap", "veil-audit-policy")
	if p := cm["data"].(map[string]any)["policy.yaml"]; p != everything(ca)["auditPolicy"] {
		t.Errorf("audit policy %q", p)
	}
	syncArgs := fmt.Sprint(containers(find(objs, "Deployment", "veil-syncer"))[0]["args"])
	if !strings.Contains(syncArgs, "--excluded-namespaces=kube-system,kube-public") || !strings.Contains(syncArgs, "-v=2") || !strings.Contains(syncArgs, "--namespace=veil-system") {
		t.Errorf("veil-syncer args %s", syncArgs)
	}
	b := find(objs, "ValidatingAdmissionPolicyBinding", "veil-syncer-excluded-namespaces")
	vals, _ := yaml.Marshal(b["spec"])
	if !strings.Contains(string(vals), "kube-public") {
		t.Errorf("veil-syncer-excluded-namespaces binding does not follow syncer.excludedNamespaces:\n%s", vals)
	}
	// A base64 caBundle is used as it is.
	as := find(objs, "APIService", "v1alpha1.externalsecrets.veil.dev")
	if as["spec"].(map[string]any)["caBundle"] != base64.StdEncoding.EncodeToString(ca.caPEM) {
		t.Errorf("caBundle %v", as["spec"].(map[string]any)["caBundle"])
	}
}

// TestOptionalParts: prometheus-operator objects and the
// NetworkPolicy are rendered only when asked for; the PDB and the
// FlowSchemas are on by default and can be turned off.
func TestOptionalParts(t *testing.T) {
	ca := newTestCA(t)
	ch := loadChart(t)
	def := mustRender(t, ch, ca.tlsValues())
	for _, kind := range []string{"NetworkPolicy", "ServiceMonitor", "PrometheusRule", "Certificate"} {
		for _, o := range def {
			if o["kind"] == kind {
				t.Errorf("%s rendered by default", key(o))
			}
		}
	}
	if find(def, "PodDisruptionBudget", "veil-apiserver") == nil || find(def, "FlowSchema", "veil-tenants") == nil {
		t.Error("PodDisruptionBudget or FlowSchema missing by default")
	}
	vals := ca.tlsValues()
	vals["apiserver"] = map[string]any{"podDisruptionBudget": map[string]any{"enabled": false}}
	vals["flowControl"] = map[string]any{"enabled": false}
	for _, o := range mustRender(t, ch, vals) {
		switch o["kind"] {
		case "PodDisruptionBudget", "FlowSchema", "PriorityLevelConfiguration":
			t.Errorf("%s rendered though turned off", key(o))
		}
	}
}

// TestSyncerOff: without veil-syncer, nothing of it is left: no workload,
// ServiceAccount, RBAC, or admission policy that only concerns it (they
// all name its ServiceAccount), and the FlowSchema no longer lists it.
// The tenant policies stay.
func TestSyncerOff(t *testing.T) {
	ca := newTestCA(t)
	vals := ca.tlsValues()
	vals["syncer"] = map[string]any{"enabled": false}
	vals["serviceMonitor"] = map[string]any{"enabled": true}
	vals["prometheusRule"] = map[string]any{"enabled": true}
	objs := mustRender(t, loadChart(t), vals)
	for _, o := range objs {
		k := key(o)
		if strings.Contains(k, "veil-syncer") {
			t.Errorf("%s rendered with syncer.enabled=false", k)
		}
		data, _ := yaml.Marshal(o)
		s := string(data)
		// veil-pushsecrets leaves veil-syncer's writes to its own policy;
		// the condition is harmless without it.
		if strings.Contains(s, "serviceaccount:veil-system:veil-syncer") && k != "ValidatingAdmissionPolicy/<nil>/veil-pushsecrets" {
			t.Errorf("%s still names veil-syncer", k)
		}
		if o["kind"] == "PrometheusRule" && strings.Contains(s, "veil_syncer") {
			t.Errorf("%s alerts on veil-syncer", k)
		}
	}
	for _, name := range []string{"veil-externalsecrets", "veil-pushsecrets", "veil-secretstores"} {
		if find(objs, "ValidatingAdmissionPolicy", name) == nil {
			t.Errorf("tenant policy %s missing with syncer.enabled=false", name)
		}
	}
	fs, _ := yaml.Marshal(find(objs, "FlowSchema", "veil-system"))
	if strings.Contains(string(fs), "veil-syncer") {
		t.Errorf("FlowSchema veil-system still names veil-syncer:\n%s", fs)
	}
}

// TestCertManager: a Certificate for the Service's names, the Deployment
// mounting its Secret, and the APIService's CA injected by cert-manager.
func TestCertManager(t *testing.T) {
	objs := mustRender(t, loadChart(t), map[string]any{"tls": map[string]any{"certManager": map[string]any{
		"enabled": true, "issuerRef": map[string]any{"name": "veil-ca", "kind": "ClusterIssuer"},
	}}})
	cert := find(objs, "Certificate", "veil-apiserver")
	if cert == nil {
		t.Fatal("no Certificate")
	}
	spec := cert["spec"].(map[string]any)
	if spec["secretName"] != "veil-apiserver-tls" || fmt.Sprint(spec["dnsNames"]) != "[veil-apiserver.veil-system.svc veil-apiserver.veil-system.svc.cluster.local]" {
		t.Errorf("Certificate spec %v", spec)
	}
	if ref := spec["issuerRef"].(map[string]any); ref["name"] != "veil-ca" || ref["kind"] != "ClusterIssuer" {
		t.Errorf("issuerRef %v", ref)
	}
	as := find(objs, "APIService", "v1alpha1.externalsecrets.veil.dev")
	ann, _ := as["metadata"].(map[string]any)["annotations"].(map[string]any)
	if ann["cert-manager.io/inject-ca-from"] != "veil-system/veil-apiserver" {
		t.Errorf("APIService annotations %v", ann)
	}
	if s := as["spec"].(map[string]any); s["insecureSkipTLSVerify"] != false || s["caBundle"] != nil {
		t.Errorf("APIService spec %v", s)
	}
	if _, err := render(t, loadChart(t), map[string]any{"tls": map[string]any{"certManager": map[string]any{"enabled": true}}}); err == nil {
		t.Error("cert-manager without an issuer rendered")
	}
}

// TestNoCertificateNoInstall: without a certificate the chart refuses to
// render rather than install an APIService kube-apiserver cannot verify.
func TestNoCertificateNoInstall(t *testing.T) {
	ch := loadChart(t)
	for name, vals := range map[string]map[string]any{
		"defaults":     nil,
		"no CA bundle": {"tls": map[string]any{"existingSecret": "mine"}},
	} {
		if _, err := render(t, ch, vals); err == nil {
			t.Errorf("%s: rendered without a verifiable certificate", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestSchema: the defaults validate, and wrong types, unknown keys and
// insecureSkipTLSVerify are refused.
func TestSchema(t *testing.T) {
	ch := loadChart(t)
	if err := chartutil.ValidateAgainstSchema(ch, ch.Values); err != nil {
		t.Fatalf("default values do not validate: %v", err)
	}
	for name, vals := range map[string]map[string]any{
		"replicas as a string":            {"apiserver": map[string]any{"replicas": "two"}},
		"endpoints as a string":           {"allowedProviderEndpoints": "vault.example.com"},
		"endpoint with a comma":           {"allowedProviderEndpoints": []any{"a.example.com,b.example.com"}},
		"syncer.enabled as a string":      {"syncer": map[string]any{"enabled": "yes"}},
		"insecureSkipTLSVerify":           {"tls": map[string]any{"insecureSkipTLSVerify": true}},
		"unknown top-level key":           {"replicas": 2},
		"pullPolicy not a policy":         {"syncer": map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}},
		"extraArgs not flags":             {"apiserver": map[string]any{"extraArgs": []any{"max-stale=1m"}}},
		"audit policy as an object":       {"auditPolicy": map[string]any{"kind": "Policy"}},
		"networkPolicy.enabled as string": {"networkPolicy": map[string]any{"enabled": "true"}},
		"resources as a list":             {"apiserver": map[string]any{"resources": []any{"cpu"}}},
		"provider enabled as a string":    {"providers": map[string]any{"vault": map[string]any{"enabled": "true"}}},
		"provider caBundle not PEM":       {"providers": map[string]any{"aws": map[string]any{"caBundle": "not a certificate"}}},
		"clientCA not PEM":                {"providers": map[string]any{"clientCA": "c2VjcmV0"}},
		"unknown provider":                {"providers": map[string]any{"gcp": map[string]any{"enabled": true}}},
		"unknown provider key":            {"providers": map[string]any{"vault": map[string]any{"insecureSkipTLSVerify": true}}},
		"provider config without stores":  {"providers": map[string]any{"vault": map[string]any{"config": map[string]any{"store": []any{}}}}},
		"providers namespace not a name":  {"providers": map[string]any{"namespace": "Veil_Providers"}},
		"audit feed on the serving port":  {"apiserver": map[string]any{"vaultAuditFeeds": []any{map[string]any{"server": "https://vault:8200", "port": 8443}}}},
		"audit feed server with a user":   {"apiserver": map[string]any{"vaultAuditFeeds": []any{map[string]any{"server": "https://u:p@vault:8200", "port": 8201}}}},
		"audit feed without a port":       {"apiserver": map[string]any{"vaultAuditFeeds": []any{map[string]any{"server": "https://vault:8200"}}}},
		"audit source not an address":     {"apiserver": map[string]any{"vaultAuditSources": []any{"vault.example.com"}}},
	} {
		merged, err := chartutil.CoalesceValues(ch, vals)
		if err != nil {
			t.Fatal(err)
		}
		if err := chartutil.ValidateAgainstSchema(ch, merged); err == nil {
			t.Errorf("%s: accepted by values.schema.json", name)
		}
	}
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestReleaseNamespace: both servers keep their Leases (and veil-syncer
// its HMAC key) in the release namespace, where the chart's Roles grant
// them, whatever it is.
func TestReleaseNamespace(t *testing.T) {
	ca := newTestCA(t)
	objs, err := renderWith(t, loadChart(t), map[string]any{"tls": map[string]any{"existingSecret": ca.secret, "caBundle": base64.StdEncoding.EncodeToString(ca.caPEM)}}, "secrets-infra", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"veil-apiserver", "veil-syncer"} {
		args := fmt.Sprint(containers(find(objs, "Deployment", name))[0]["args"])
		if !strings.Contains(args, "--namespace=secrets-infra") {
			t.Errorf("%s's args %s do not name the release namespace", name, args)
		}
	}
}
