package rewrite

import (
	"strings"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

func TestRewriter(t *testing.T) {
	rw, err := Compile("dataTo[0]", []configv1alpha1.ExternalSecretRewrite{
		{Regexp: &configv1alpha1.RewriteRegexp{Source: "^db-", Target: ""}},
		{Transform: &configv1alpha1.RewriteTransform{Template: "prod/{{ .value | upper }}"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := rw.Apply(template.NewBudget(), []string{"db-host", "port"})
	if err != nil || out["db-host"] != "prod/HOST" || out["port"] != "prod/PORT" {
		t.Errorf("%v %v", out, err)
	}
	for _, c := range []struct {
		rws  []configv1alpha1.ExternalSecretRewrite
		says string
	}{
		{[]configv1alpha1.ExternalSecretRewrite{{Regexp: &configv1alpha1.RewriteRegexp{Source: "("}}}, "dataTo[0].rewrite[0].regexp.source is not a valid RE2"},
		{[]configv1alpha1.ExternalSecretRewrite{{}}, "must set exactly one of regexp and transform"},
		{make([]configv1alpha1.ExternalSecretRewrite, configv1alpha1.MaxRewrites+1), "more than 10"},
	} {
		if _, err := Compile("dataTo[0]", c.rws); providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%v, want Invalid saying %q", err, c.says)
		}
	}
	bad, _ := Compile("dataTo[1]", []configv1alpha1.ExternalSecretRewrite{{Transform: &configv1alpha1.RewriteTransform{Template: "{{ .nope }}"}}})
	if _, err := bad.Apply(template.NewBudget(), []string{"a"}); providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), "dataTo[1].rewrite[0].transform") {
		t.Errorf("a failing transform: %v", err)
	}
}
