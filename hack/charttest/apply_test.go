package charttest

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/veil-dev/veil/test/harness"
)

// TestChartAppliesToKubeAPIServer installs nothing but asks a real
// kube-apiserver (the harness's, from the binary cache: make tools) to
// validate every object the chart renders: a server-side dry-run apply, so
// schemas, CEL in the admission policies, RBAC and flow control objects
// are checked by the version of Kubernetes Veil is built against. It also
// renders with a client, so the CA bundle comes from the existing Secret's
// ca.crt, as in a real `helm install --set tls.existingSecret=...`.
// With providers on, the providers' objects are checked too (NetworkPolicy,
// projected token, ProviderRegistration against its CRD's CEL), and so is
// artifacts/providers with both components.
// ServiceMonitor, PrometheusRule and Certificate are left out: their CRDs
// (prometheus-operator's, cert-manager's) are not in this cluster.
func TestChartAppliesToKubeAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := harness.Start(ctx, harness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	// Another namespace than the harness's veil-system, whose Service and
	// Deployment-less Veil are the harness's own: the chart's namespaced
	// objects are then new, and a release outside veil-system is checked
	// too. Cluster-scoped objects are applied over the harness's.
	const ns = "veil-chart"
	if _, err := c.KubeClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: ca.secret, Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{},
	}
	for _, f := range []string{"ca.crt", "tls.crt", "tls.key"} {
		secret.Data[f] = readFile(t, ca.dir, f)
	}
	if _, err := c.KubeClient.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	ch := loadChart(t)
	certs := newProviderCerts(t)
	providersOn := providerValues(t, ca, certs)
	providersOn["tls"] = map[string]any{"existingSecret": ca.secret}
	providersOn["providers"].(map[string]any)["namespace"] = ""
	providersOn["providers"].(map[string]any)["vault"].(map[string]any)["metrics"] = map[string]any{"enabled": true,
		"from": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}}}}}
	for name, vals := range map[string]map[string]any{
		"providers on":                     providersOn,
		"defaults with an existing Secret": {"tls": map[string]any{"existingSecret": ca.secret}},
		"options on": {
			"tls":                      map[string]any{"existingSecret": ca.secret},
			"allowedProviderEndpoints": []any{"vault.example.com"},
			"networkPolicy":            map[string]any{"enabled": true, "from": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/8"}}}},
			"syncer":                   map[string]any{"excludedNamespaces": []any{"kube-system", "kube-public"}},
			"grafanaDashboard":         map[string]any{"enabled": true},
			"apiserver": map[string]any{"vaultAuditFeeds": []any{map[string]any{"server": "https://vault.vault.svc:8200", "port": 8201}},
				"vaultAuditSources": []any{"10.0.12.0/24"}},
		},
		"syncer off": {"tls": map[string]any{"existingSecret": ca.secret}, "syncer": map[string]any{"enabled": false}},
	} {
		t.Run(name, func(t *testing.T) {
			objs, err := renderWith(t, ch, vals, ns, c.Admin)
			if err != nil {
				t.Fatal(err)
			}
			as := find(objs, "APIService", "v1alpha1.externalsecrets.veil.dev")
			if got := as["spec"].(map[string]any)["caBundle"]; got != base64.StdEncoding.EncodeToString(ca.caPEM) {
				t.Errorf("caBundle %v is not the Secret's ca.crt", got)
			}
			var stream bytes.Buffer
			n := 0
			for _, o := range objs {
				data, err := yaml.Marshal(o)
				if err != nil {
					t.Fatal(err)
				}
				stream.WriteString("---\n")
				stream.Write(data)
				n++
			}
			out, _, err := c.RunKubectl(ctx, "", stream.Bytes(), "apply", "--server-side", "--dry-run=server",
				"--force-conflicts", "--field-manager=helm", "-f", "-")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d objects accepted by kube-apiserver (server-side dry run):\n%s", n, out)
		})
	}

	// artifacts/providers with both components, as docs/veil-provider.md
	// shows it; its namespace is made for real, since a dry run of it
	// leaves the namespaced objects nowhere to go.
	t.Run("artifacts/providers", func(t *testing.T) {
		objs := kustomizeProviders(t, certs)
		var stream bytes.Buffer
		for _, o := range objs {
			if o["kind"] == "Namespace" {
				data, _ := yaml.Marshal(o)
				if _, _, err := c.RunKubectl(ctx, "", data, "apply", "--server-side", "-f", "-"); err != nil {
					t.Fatal(err)
				}
				continue
			}
			data, err := yaml.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			stream.WriteString("---\n")
			stream.Write(data)
		}
		out, _, err := c.RunKubectl(ctx, "", stream.Bytes(), "apply", "--server-side", "--dry-run=server", "-f", "-")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d objects accepted by kube-apiserver (server-side dry run):\n%s", len(objs)-1, out)
	})

	// What the apiserver-client component changes in artifacts/deploy:
	// veil-apiserver's Deployment and its client certificate Secret.
	t.Run("artifacts/providers/apiserver-client", func(t *testing.T) {
		var stream bytes.Buffer
		n := 0
		for _, o := range kustomizeDeployWithClient(t, ca) {
			name, _ := o["metadata"].(map[string]any)["name"].(string)
			if !(o["kind"] == "Deployment" && name == "veil-apiserver") && !strings.HasPrefix(name, "veil-apiserver-provider-client") {
				continue
			}
			data, err := yaml.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			stream.WriteString("---\n")
			stream.Write(data)
			n++
		}
		if n != 2 {
			t.Fatalf("%d objects, want the Deployment and the Secret", n)
		}
		out, _, err := c.RunKubectl(ctx, "", stream.Bytes(), "apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", "-")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("accepted by kube-apiserver (server-side dry run):\n%s", out)
	})
}
