package e2e

import (
	"os"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	f, err := os.Open("../../pkg/convert/testdata/eso.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	in, err := convert.Read(f)
	if err != nil {
		t.Fatal(err)
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
