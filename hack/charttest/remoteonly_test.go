package charttest

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomizeDeployRemoteOnly builds an overlay of artifacts/deploy with the
// remote-only component, as docs/veil-provider.md shows it.
func kustomizeDeployRemoteOnly(t *testing.T, ca testCA) []obj {
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
		if err := os.WriteFile(filepath.Join(tlsDir, f), readFile(t, ca.dir, f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	overlay := filepath.Join(tmp, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../artifacts/deploy\ncomponents:\n  - ../artifacts/providers/remote-only\n"
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
		data, _ := yaml.Marshal(o)
		out = append(out, decodeAll(t, data)...)
	}
	return out
}

func remoteOnlyValues(ca testCA) map[string]any {
	vals := ca.tlsValues()
	vals["apiserver"] = map[string]any{"inProcessProviders": false}
	return vals
}

// TestRemoteOnlyComponentIsTheChart: artifacts/deploy with the remote-only
// component is, object for object, the chart rendered with
// apiserver.inProcessProviders=false (the differences allowed are those of
// TestChartIsArtifactsDeploy).
func TestRemoteOnlyComponentIsTheChart(t *testing.T) {
	ca := newTestCA(t)
	chartObjs := normalizeChart(mustRender(t, loadChart(t), remoteOnlyValues(ca)))
	kustObjs := normalizeKustomize(kustomizeDeployRemoteOnly(t, ca))
	for k, want := range kustObjs {
		got, ok := chartObjs[k]
		if !ok {
			t.Errorf("%s: in artifacts/deploy with remote-only, not rendered by the chart", k)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := yaml.Marshal(got)
			w, _ := yaml.Marshal(want)
			t.Errorf("%s differs; chart:\n%s\nartifacts/deploy with remote-only:\n%s", k, g, w)
		}
	}
	for k := range chartObjs {
		if _, ok := kustObjs[k]; !ok {
			t.Errorf("%s: rendered by the chart with apiserver.inProcessProviders=false, not in artifacts/deploy with remote-only", k)
		}
	}
	args := containers(kustObjs["Deployment/veil-system/veil-apiserver"])[0]["args"].([]any)
	if !slices.Contains(args, any("--in-process-providers=false")) {
		t.Errorf("the component does not pass --in-process-providers=false: %v", args)
	}
}

// credentialGrants lists the rules, of every Role and ClusterRole bound to
// the ServiceAccount veil-system/veil-apiserver in objs, that let it read a
// Secret or ConfigMap or create a ServiceAccount token (wildcards count).
func credentialGrants(t *testing.T, objs []obj) []string {
	t.Helper()
	roles := map[string]obj{} // kind/namespace/name
	for _, o := range objs {
		if o["kind"] == "ClusterRole" || o["kind"] == "Role" {
			md := o["metadata"].(map[string]any)
			ns, _ := md["namespace"].(string)
			roles[o["kind"].(string)+"/"+ns+"/"+md["name"].(string)] = o
		}
	}
	var out []string
	for _, o := range objs {
		if o["kind"] != "ClusterRoleBinding" && o["kind"] != "RoleBinding" {
			continue
		}
		var b struct {
			Metadata struct{ Name, Namespace string }
			RoleRef  struct{ Kind, Name string }
			Subjects []struct{ Kind, Name, Namespace string }
		}
		data, _ := yaml.Marshal(o)
		if err := yaml.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		bound := false
		for _, s := range b.Subjects {
			bound = bound || (s.Kind == "ServiceAccount" && s.Name == "veil-apiserver" && s.Namespace == namespace) ||
				(s.Kind == "Group" && (s.Name == "system:serviceaccounts" || s.Name == "system:serviceaccounts:"+namespace || s.Name == "system:authenticated"))
		}
		if !bound {
			continue
		}
		ns := ""
		if b.RoleRef.Kind == "Role" {
			ns = b.Metadata.Namespace
		}
		role := roles[b.RoleRef.Kind+"/"+ns+"/"+b.RoleRef.Name]
		if role == nil {
			// A role outside objs (system:auth-delegator,
			// extension-apiserver-authentication-reader): Kubernetes' own.
			if !slices.Contains([]string{"system:auth-delegator", "extension-apiserver-authentication-reader"}, b.RoleRef.Name) {
				t.Errorf("%s %s binds veil-apiserver to %s %s, which is not rendered", o["kind"], b.Metadata.Name, b.RoleRef.Kind, b.RoleRef.Name)
			}
			continue
		}
		var r struct {
			Rules []struct {
				APIGroups []string `json:"apiGroups"`
				Resources []string `json:"resources"`
				Verbs     []string `json:"verbs"`
			} `json:"rules"`
		}
		data, _ = yaml.Marshal(role)
		if err := yaml.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
		for _, rule := range r.Rules {
			if !slices.Contains(rule.APIGroups, "") && !slices.Contains(rule.APIGroups, "*") {
				continue
			}
			for _, res := range rule.Resources {
				if res == "*" || res == "*/*" || res == "secrets" || res == "configmaps" || res == "serviceaccounts/token" || res == "serviceaccounts/*" {
					out = append(out, b.RoleRef.Name+": "+res+" "+strings.Join(rule.Verbs, ","))
				}
			}
		}
	}
	return out
}

// TestRemoteOnlyHasNoCredentialRules: with apiserver.inProcessProviders
// false (alone, and with every other option on), and with the remote-only
// component, no rule bound to veil-apiserver's ServiceAccount touches
// Secrets, ConfigMaps or serviceaccounts/token; by default it gets exactly
// those of veil-apiserver:provider-credentials.
func TestRemoteOnlyHasNoCredentialRules(t *testing.T) {
	ca := newTestCA(t)
	ch := loadChart(t)
	all := everything(ca)
	all["apiserver"].(map[string]any)["inProcessProviders"] = false
	// Audit feeds are for stores served in process (the chart refuses
	// both together).
	delete(all["apiserver"].(map[string]any), "vaultAuditFeeds")
	delete(all["apiserver"].(map[string]any), "vaultAuditSources")
	for name, objs := range map[string][]obj{
		"chart":                       mustRender(t, ch, remoteOnlyValues(ca)),
		"chart, everything on":        mustRender(t, ch, all),
		"artifacts/deploy+remoteonly": kustomizeDeployRemoteOnly(t, ca),
	} {
		if g := credentialGrants(t, objs); len(g) > 0 {
			t.Errorf("%s: veil-apiserver may still %v", name, g)
		}
		for _, o := range objs {
			if strings.Contains(o["metadata"].(map[string]any)["name"].(string), "provider-credentials") {
				t.Errorf("%s: renders %s %s", name, o["kind"], o["metadata"].(map[string]any)["name"])
			}
		}
	}
	want := []string{"veil-apiserver:provider-credentials: secrets get", "veil-apiserver:provider-credentials: configmaps get", "veil-apiserver:provider-credentials: serviceaccounts/token create"}
	for name, objs := range map[string][]obj{
		"chart default":    mustRender(t, ch, ca.tlsValues()),
		"artifacts/deploy": kustomizeDeploy(t, ca),
	} {
		if g := credentialGrants(t, objs); !reflect.DeepEqual(g, want) {
			t.Errorf("%s: veil-apiserver's credential rules %v, want %v", name, g, want)
		}
	}
}
