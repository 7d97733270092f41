package e2e

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/veil-dev/veil/pkg/convert"
)

// TestConvertAgreesWithKubeAPIServer: what `veil convert` prints for ESO
// manifests is what this cluster's kube-apiserver, with Veil's CRDs,
// accepts; and an object convert says is refused, it refuses. So the
// report is the cluster's own verdict, not a guess.
func TestConvertAgreesWithKubeAPIServer(t *testing.T) {
	ctx := ctxFor(t)
	ns := newNamespace(t, nil)
	var in []*unstructured.Unstructured
	for _, file := range []string{"eso.yaml", "vault-auth/eso.yaml"} {
		f, err := os.Open("../../pkg/convert/testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := convert.Read(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, objs...)
	}
	c, err := convert.New()
	if err != nil {
		t.Fatal(err)
	}
	client, err := dynamic.NewForConfig(cluster.Admin)
	if err != nil {
		t.Fatal(err)
	}
	checked, refused := 0, 0
	for _, o := range in {
		if o.GetNamespace() != "" {
			o.SetNamespace(ns)
		}
		v, diffs := c.Convert(ctx, o)
		if v == nil || v.GetAPIVersion() != "config.veil.dev/v1alpha1" {
			continue
		}
		wantRefused := false
		for _, d := range diffs {
			wantRefused = wantRefused || d.Severity == convert.Refused
		}
		gvr := schema.GroupVersionResource{Group: "config.veil.dev", Version: "v1alpha1", Resource: map[string]string{
			"SecretStore": "secretstores", "ClusterSecretStore": "clustersecretstores", "ExternalSecret": "externalsecrets", "PushSecret": "pushsecrets",
		}[v.GetKind()]}
		var r dynamic.ResourceInterface = client.Resource(gvr)
		if v.GetNamespace() != "" {
			r = client.Resource(gvr).Namespace(v.GetNamespace())
		}
		_, err := r.Create(ctx, v, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		switch {
		case wantRefused && err == nil:
			t.Errorf("%s %s: convert reports a refusal (%v), kube-apiserver accepted it", v.GetKind(), v.GetName(), diffs)
		case !wantRefused && err != nil:
			t.Errorf("%s %s: convert reports no refusal (%v), kube-apiserver refused it: %v", v.GetKind(), v.GetName(), diffs, err)
		}
		checked++
		if wantRefused {
			refused++
		}
	}
	// The fixtures hold both kinds of object; a run that checked none of
	// one kind proves nothing about it.
	if checked < 5 || refused == 0 || refused == checked {
		t.Fatalf("checked %d converted objects, %d refused: the fixtures must hold accepted and refused ones", checked, refused)
	}
}

// TestConvertFromCluster: `veil convert --from-cluster` reads the ESO
// objects a cluster holds (here under stand-in CRDs of ESO's group, as a
// cluster running ESO serves them) and prints Veil's.
func TestConvertFromCluster(t *testing.T) {
	ctx := ctxFor(t)
	client, err := dynamic.NewForConfig(cluster.Admin)
	if err != nil {
		t.Fatal(err)
	}
	crds := client.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for _, k := range []struct{ kind, plural, scope string }{{"SecretStore", "secretstores", "Namespaced"}, {"ExternalSecret", "externalsecrets", "Namespaced"}} {
		crd := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": k.plural + "." + convert.ESOGroup},
			"spec": map[string]any{
				"group": convert.ESOGroup, "scope": k.scope,
				"names": map[string]any{"kind": k.kind, "plural": k.plural},
				"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
			},
		}}
		if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = crds.Delete(context.Background(), crd.GetName(), metav1.DeleteOptions{}) })
	}
	ns := newNamespace(t, nil)
	es := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": convert.ESOGroup + "/v1", "kind": "ExternalSecret",
		"metadata": map[string]any{"name": "db", "namespace": ns},
		"spec": map[string]any{
			"secretStoreRef": map[string]any{"name": "vault", "kind": "SecretStore"},
			"data":           []any{map[string]any{"secretKey": "password", "remoteRef": map[string]any{"key": "app/db", "property": "password"}}},
		},
	}}
	esGVR := schema.GroupVersionResource{Group: convert.ESOGroup, Version: "v1", Resource: "externalsecrets"}
	eventually(t, func() error {
		_, err := client.Resource(esGVR).Namespace(ns).Create(ctx, es, metav1.CreateOptions{})
		return err
	})
	kubeconfig, err := cluster.UserKubeconfig("convert-admin", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	cmd := convert.NewCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"--from-cluster", "--kubeconfig", kubeconfig, "-n", ns})
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	out, err := convert.Read(&stdout)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].GetKind() != "ExternalSecret" || out[0].GetAPIVersion() != "config.veil.dev/v1alpha1" || out[0].GetNamespace() != ns || out[0].GetResourceVersion() != "" {
		t.Fatalf("converted from the cluster: %v (%s)", out, stderr.String())
	}
	if !strings.Contains(stderr.String(), "1 ESO objects converted: 1 taken as they are") {
		t.Errorf("summary: %s", stderr.String())
	}
}
