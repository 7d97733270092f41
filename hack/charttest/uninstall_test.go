package charttest

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
)

// TestUninstallDeletesTheAPIServiceFirst: `helm uninstall` deletes in
// Helm's uninstall order, one kind after the other. The APIService must go
// first, and none may be kept (helm.sh/resource-policy: keep): an
// APIService left behind after its Service and pods are gone makes
// discovery of the whole cluster fail, and namespace deletion stall, until
// someone deletes it. test/node checks the same on a real uninstall.
func TestUninstallDeletesTheAPIServiceFirst(t *testing.T) {
	ch := loadChart(t)
	for name, vals := range map[string]map[string]any{
		"defaults":      newTestCA(t).tlsValues(),
		"everything on": everything(newTestCA(t)),
	} {
		t.Run(name, func(t *testing.T) {
			rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "veil", Namespace: namespace, Revision: 1, IsInstall: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			files, err := engine.Render(ch, rv)
			if err != nil {
				t.Fatal(err)
			}
			// As Helm does before it sorts: NOTES.txt is no manifest.
			for f := range files {
				if strings.HasSuffix(f, "NOTES.txt") {
					delete(files, f)
				}
			}
			hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.UninstallOrder)
			if err != nil {
				t.Fatal(err)
			}
			if len(hooks) != 0 {
				t.Errorf("the chart has %d hooks; helm uninstall runs them around the deletions: check they keep the APIService first", len(hooks))
			}
			if len(manifests) == 0 || manifests[0].Head.Kind != "APIService" {
				t.Fatalf("helm uninstall deletes %s first, not the APIService", manifests[0].Head.Kind)
			}
			apiServices := 0
			for _, m := range manifests {
				if m.Head.Kind == "APIService" {
					apiServices++
				}
				if strings.Contains(m.Content, "helm.sh/resource-policy") {
					t.Errorf("%s %s carries helm.sh/resource-policy: helm uninstall would leave it", m.Head.Kind, m.Head.Metadata.Name)
				}
			}
			for i := 0; i < apiServices; i++ {
				if manifests[i].Head.Kind != "APIService" {
					t.Errorf("helm uninstall deletes %s %s before an APIService", manifests[i].Head.Kind, manifests[i].Head.Metadata.Name)
				}
			}
		})
	}
}
