package e2e

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/openapi/resolver"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
)

// TestAdmissionPoliciesTypeCheck type-checks every one of Veil's
// ValidatingAdmissionPolicies against the schemas kube-apiserver publishes
// for the resources it matches (Veil's CRDs, Secrets, Deployments), with
// kube-apiserver's own type checker (the one its policy status controller
// runs). A field path that does not exist there would make a policy with
// failurePolicy Fail refuse every write, or never refuse what it should.
// A field that does not exist must be reported for every policy, which
// shows the schemas were found and the check is not vacuous.
func TestAdmissionPoliciesTypeCheck(t *testing.T) {
	dc := cluster.KubeClient.Discovery()
	tc := &validating.TypeChecker{
		SchemaResolver: &resolver.ClientDiscoveryResolver{Discovery: dc},
		RestMapper:     restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
	}
	list, err := cluster.KubeClient.AdmissionregistrationV1().ValidatingAdmissionPolicies().List(ctxFor(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{}
	for i := range list.Items {
		p := &list.Items[i]
		if !strings.HasPrefix(p.Name, "veil-") {
			continue
		}
		checked[p.Name] = true
		ctx := tc.CreateContext(p)
		// veil-syncer-excluded-namespaces matches every resource (it
		// refuses all of veil-syncer's writes in some namespaces): there
		// is no one schema to check it against.
		if p.Name != "veil-syncer-excluded-namespaces" {
			if control := tc.CheckExpression(ctx, "object.veilNoSuchField == 1").String(); !strings.Contains(control, "veilNoSuchField") {
				t.Errorf("%s: the type checker found no schema to check against (a field that does not exist was not reported: %q)", p.Name, control)
			}
		}
		// Check judges validations and their messages; variables are
		// checked one by one, as a variable that does not compile only
		// makes the expressions using it fail when they run.
		for _, w := range tc.Check(p) {
			t.Errorf("%s %s: %s", p.Name, w.FieldRef, w.Warning)
		}
		for _, v := range p.Spec.Variables {
			if r := tc.CheckExpression(ctx, v.Expression).String(); r != "" {
				t.Errorf("%s variable %s: %s", p.Name, v.Name, r)
			}
		}
	}
	for _, n := range []string{"veil-externalsecrets", "veil-pushsecrets", "veil-clusterexternalsecrets", "veil-clusterpushsecrets", "veil-secretstores",
		"veil-syncer-externalsecrets", "veil-syncer-pushsecrets", "veil-syncer-secrets", "veil-syncer-workloads", "veil-syncer-excluded-namespaces"} {
		if !checked[n] {
			t.Errorf("policy %s is not installed", n)
		}
	}
}
