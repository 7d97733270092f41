package stores

import (
	"context"
	"fmt"
	"regexp"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/warning"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// OpenCondition returns the index of the first of a ClusterSecretStore's
// spec.conditions whose namespaceSelector matches a namespace created
// with no labels (only kubernetes.io/metadata.name, which Kubernetes
// sets), or -1. Such a selector — `{}`, or only NotIn and DoesNotExist
// expressions — lets in every namespace but those carrying particular
// labels, including namespaces created later, and whoever may create a
// namespace or edit its labels can stay clear of those labels.
func OpenCondition(css *configv1alpha1.ClusterSecretStore) int {
	for i, c := range css.Spec.Conditions {
		for _, name := range probeNames {
			if m, err := matchesRegexes(c.NamespaceRegexes, name); err == nil && m {
				return i
			}
		}
		if c.NamespaceSelector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(c.NamespaceSelector)
		if err != nil {
			continue
		}
		for _, name := range probeNames {
			if sel.Matches(labels.Set{corev1.LabelMetadataName: name}) {
				return i
			}
		}
	}
	return -1
}

// probeNames stand for namespaces nobody has created yet. Two, so that a
// NotIn (or a regular expression) naming one of them is not taken for a
// closed condition.
var probeNames = []string{"veil-new-namespace-a", "veil-new-namespace-b"}

// namespaceRegexps holds compiled spec.conditions namespaceRegexes: a
// lookup runs on every read, and at most 100 patterns of 256 bytes each
// per condition are compiled once. It is emptied when it reaches
// maxCompiled, so stores written with ever new patterns cannot grow it.
var namespaceRegexps = struct {
	sync.Mutex
	m map[string]*regexp.Regexp
}{m: map[string]*regexp.Regexp{}}

const maxCompiled = 4096

// matchesRegexes says whether name matches one of patterns, unanchored
// as External Secrets Operator matches them.
func matchesRegexes(patterns []string, name string) (bool, error) {
	for _, p := range patterns {
		namespaceRegexps.Lock()
		re, ok := namespaceRegexps.m[p]
		namespaceRegexps.Unlock()
		if !ok {
			var err error
			if re, err = regexp.Compile(p); err != nil {
				return false, fmt.Errorf("%q is not a regular expression: %w", p, err)
			}
			namespaceRegexps.Lock()
			if len(namespaceRegexps.m) >= maxCompiled {
				clear(namespaceRegexps.m)
			}
			namespaceRegexps.m[p] = re
			namespaceRegexps.Unlock()
		}
		if re.MatchString(name) {
			return true, nil
		}
	}
	return false, nil
}

// OpenConditionMessage says what an open condition lets in and what to
// write instead.
func OpenConditionMessage(css *configv1alpha1.ClusterSecretStore, i int) string {
	if len(css.Spec.Conditions[i].NamespaceRegexes) > 0 {
		for _, name := range probeNames {
			if m, err := matchesRegexes(css.Spec.Conditions[i].NamespaceRegexes, name); err == nil && m {
				return fmt.Sprintf("ClusterSecretStore %s: spec.conditions[%d].namespaceRegexes matches any namespace name, including namespaces created later; "+
					"name the namespaces instead (spec.conditions[].namespaces, or patterns anchored at both ends such as \"^(team-a|team-b)$\")", css.Name, i)
			}
		}
	}
	return fmt.Sprintf("ClusterSecretStore %s: spec.conditions[%d].namespaceSelector matches every namespace without particular labels, including namespaces created later; "+
		"name the namespaces instead (spec.conditions[].namespaces, or a selector on %s with the operator In)", css.Name, i, corev1.LabelMetadataName)
}

// warnIfOpen tells whoever reads or pushes through a ClusterSecretStore
// with an open condition.
func warnIfOpen(ctx context.Context, css *configv1alpha1.ClusterSecretStore) {
	if i := OpenCondition(css); i >= 0 {
		warning.AddWarning(ctx, "", OpenConditionMessage(css, i))
	}
}
