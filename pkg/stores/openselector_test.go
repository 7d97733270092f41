package stores

import (
	"context"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/warning"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

func TestOpenCondition(t *testing.T) {
	sel := func(labels map[string]string, exprs ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: labels, MatchExpressions: exprs}
	}
	expr := func(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	const name = "kubernetes.io/metadata.name"
	for _, c := range []struct {
		desc       string
		conditions []configv1alpha1.ClusterSecretStoreCondition
		want       int
	}{
		{"no conditions", nil, -1},
		{"names only", []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{"a", "b"}}}, -1},
		{"{}", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: sel(nil)}}, 0},
		{"NotIn", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: sel(nil, expr("env", metav1.LabelSelectorOpNotIn, "prod"))}}, 0},
		{"NotIn names", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: sel(nil, expr(name, metav1.LabelSelectorOpNotIn, "kube-system", "veil-new-namespace-a"))}}, 0},
		{"DoesNotExist", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: sel(nil, expr("restricted", metav1.LabelSelectorOpDoesNotExist))}}, 0},
		{"the second", []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{"a"}}, {NamespaceSelector: sel(nil)}}, 1},
		{"labels", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: sel(map[string]string{"team": "a"})}}, -1},
		{"Exists", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: sel(nil, expr("team", metav1.LabelSelectorOpExists))}}, -1},
		{"In names", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: sel(nil, expr(name, metav1.LabelSelectorOpIn, "a", "b"))}}, -1},
		{"NotIn and a label", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: sel(map[string]string{"team": "a"}, expr("env", metav1.LabelSelectorOpNotIn, "prod"))}}, -1},
		{"a pattern of names", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceRegexes: []string{"^team-", "^(a|b)$"}}}, -1},
		{"a pattern of any name", []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{"a"}, NamespaceRegexes: []string{"^team-", ".*"}}}, 0},
		{"unanchored", []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{"a"}}, {NamespaceRegexes: []string{"new"}}}, 1},
		{"a pattern that does not compile", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceRegexes: []string{"("}}}, -1},
		{"no name at all", []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: sel(nil, expr(name, metav1.LabelSelectorOpDoesNotExist))}}, -1},
	} {
		css := &configv1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, Spec: configv1alpha1.ClusterSecretStoreSpec{Conditions: c.conditions}}
		if got := OpenCondition(css); got != c.want {
			t.Errorf("%s: OpenCondition = %d, want %d", c.desc, got, c.want)
		}
	}
}

func TestOpenConditionMessageNamesWhatMatches(t *testing.T) {
	css := &configv1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "shared"},
		Spec: configv1alpha1.ClusterSecretStoreSpec{Conditions: []configv1alpha1.ClusterSecretStoreCondition{{NamespaceRegexes: []string{"^team-", "-"}}}}}
	if got := OpenConditionMessage(css, OpenCondition(css)); !strings.Contains(got, "spec.conditions[0].namespaceRegexes matches any namespace name") {
		t.Errorf("message %q does not name namespaceRegexes", got)
	}
}

func TestWarnIfOpen(t *testing.T) {
	open := &configv1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "shared"},
		Spec: configv1alpha1.ClusterSecretStoreSpec{Conditions: []configv1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: &metav1.LabelSelector{}}}}}
	closed := &configv1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "team-a"},
		Spec: configv1alpha1.ClusterSecretStoreSpec{Conditions: []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{"a"}}}}}
	w := &warnings{}
	ctx := warning.WithWarningRecorder(context.Background(), w)
	warnIfOpen(ctx, closed)
	warnIfOpen(ctx, open)
	if len(w.list) != 1 || !strings.Contains(w.list[0], "ClusterSecretStore shared: spec.conditions[0].namespaceSelector matches every namespace") {
		t.Errorf("warnings %q, want one about shared", w.list)
	}
}

// warnings records the warnings of a request.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) AddWarning(_, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}
