package resolve

import (
	"strings"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

func rwRegexp(source, target string) configv1alpha1.ExternalSecretRewrite {
	return configv1alpha1.ExternalSecretRewrite{Regexp: &configv1alpha1.RewriteRegexp{Source: source, Target: target}}
}

func rwTransform(tmpl string) configv1alpha1.ExternalSecretRewrite {
	return configv1alpha1.ExternalSecretRewrite{Transform: &configv1alpha1.RewriteTransform{Template: tmpl}}
}

func TestRewriteKeys(t *testing.T) {
	find := &configv1alpha1.ExternalSecretFind{Name: &configv1alpha1.FindName{RegExp: "."}}
	extract := &configv1alpha1.ExternalSecretDataRemoteRef{Key: "k"}
	unicode := &configv1alpha1.ExternalSecretDataRemoteRef{Key: "k", ConversionStrategy: configv1alpha1.ConvertUnicode}
	for _, c := range []struct {
		name     string
		entry    configv1alpha1.ExternalSecretDataFromRemoteRef
		names    []string
		want     map[string]string
		dropped  int
		errorHas string
	}{{
		name:  "regexp removes a common path, as in ESO's example",
		entry: configv1alpha1.ExternalSecretDataFromRemoteRef{Find: find, Rewrite: []configv1alpha1.ExternalSecretRewrite{rwRegexp(`path/to/my/secrets/(.*)`, "$1")}},
		names: []string{"path/to/my/secrets/username", "path/to/my/secrets/password"},
		want:  map[string]string{"path/to/my/secrets/username": "username", "path/to/my/secrets/password": "password"},
	}, {
		name: "rewrites apply in order, each to the output of the one before",
		entry: configv1alpha1.ExternalSecretDataFromRemoteRef{Extract: extract, Rewrite: []configv1alpha1.ExternalSecretRewrite{
			rwRegexp(`^`, "dev/"), rwRegexp(`/`, "_"), rwTransform(`{{ .value | upper }}`)}},
		names: []string{"password", "user"},
		want:  map[string]string{"password": "DEV_PASSWORD", "user": "DEV_USER"},
	}, {
		name:  "collisions after a rewrite: the name first in byte order wins",
		entry: configv1alpha1.ExternalSecretDataFromRemoteRef{Find: find, Rewrite: []configv1alpha1.ExternalSecretRewrite{rwRegexp(`^(dev|prod)/`, "")}},
		names: []string{"prod/a", "dev/a", "dev/b"},
		want:  map[string]string{"dev/a": "a", "dev/b": "b"}, dropped: 1,
	}, {
		name:  "a key rewritten to nothing is left out, as ESO does",
		entry: configv1alpha1.ExternalSecretDataFromRemoteRef{Find: find, Rewrite: []configv1alpha1.ExternalSecretRewrite{rwRegexp(`^drop.*`, "")}},
		names: []string{"drop-me", "keep"},
		want:  map[string]string{"keep": "keep"}, dropped: 1,
	}, {
		name:     "a rewrite that leaves an invalid key is an error naming it",
		entry:    configv1alpha1.ExternalSecretDataFromRemoteRef{Find: find, Rewrite: []configv1alpha1.ExternalSecretRewrite{rwRegexp(`x`, "y")}},
		names:    []string{"app/db"},
		errorHas: `turns "app/db" into "app/db"`,
	}, {
		name:     "regexps are RE2: backreferences are refused",
		entry:    configv1alpha1.ExternalSecretDataFromRemoteRef{Find: find, Rewrite: []configv1alpha1.ExternalSecretRewrite{rwRegexp(`(a)\1`, "b")}},
		names:    []string{"aa"},
		errorHas: "dataFrom[0].rewrite[0].regexp.source is not a valid RE2",
	}, {
		name:     "transforms have no environment access",
		entry:    configv1alpha1.ExternalSecretDataFromRemoteRef{Find: find, Rewrite: []configv1alpha1.ExternalSecretRewrite{rwTransform(`{{ env "HOME" }}`)}},
		names:    []string{"a"},
		errorHas: `dataFrom[0].rewrite[0].transform: template for key "transform": template: transform:1: function "env" not defined`,
	}, {
		name:     "transforms are bounded like target templates",
		entry:    configv1alpha1.ExternalSecretDataFromRemoteRef{Find: find, Rewrite: []configv1alpha1.ExternalSecretRewrite{rwTransform(`{{ printf "%0999999d" 1 }}{{ printf "%0999999d" 1 }}`)}},
		names:    []string{"a"},
		errorHas: "over Veil's limits",
	}, {
		name:  "no rewrite: find keys by the Default conversion",
		entry: configv1alpha1.ExternalSecretDataFromRemoteRef{Find: find},
		names: []string{"/app/db/pass/"},
		want:  map[string]string{"/app/db/pass/": "app_db_pass"},
	}, {
		name:  "no rewrite: extract fields by the Default conversion",
		entry: configv1alpha1.ExternalSecretDataFromRemoteRef{Extract: extract},
		names: []string{"foo/bar", "foo$baz"},
		want:  map[string]string{"foo/bar": "foo_bar", "foo$baz": "foo_baz"},
	}, {
		name:  "Unicode conversion keeps distinct names distinct",
		entry: configv1alpha1.ExternalSecretDataFromRemoteRef{Extract: unicode},
		names: []string{"a/b", "a_b", "é"},
		want:  map[string]string{"a/b": "a_U002f_b", "a_b": "a_b", "é": "_U00e9_"},
	}, {
		name:  "with a rewrite, the conversion strategy is not applied (ESO)",
		entry: configv1alpha1.ExternalSecretDataFromRemoteRef{Extract: unicode, Rewrite: []configv1alpha1.ExternalSecretRewrite{rwRegexp(`/`, "-")}},
		names: []string{"a/b"},
		want:  map[string]string{"a/b": "a-b"},
	}} {
		t.Run(c.name, func(t *testing.T) {
			n, err := newKeyNamer(template.NewBudget(), 0, c.entry)
			var keys map[string]string
			var dropped []string
			if err == nil {
				keys, dropped, err = n.secretKeys(c.names)
			}
			if c.errorHas != "" {
				if err == nil || !strings.Contains(err.Error(), c.errorHas) {
					t.Fatalf("err = %v, want one containing %q", err, c.errorHas)
				}
				if providers.ReasonOf(err) != providers.Invalid {
					t.Fatalf("err = %v is not Invalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(c.want) {
				t.Fatalf("keys = %v, want %v", keys, c.want)
			}
			for k, v := range c.want {
				if keys[k] != v {
					t.Errorf("keys[%q] = %q, want %q", k, keys[k], v)
				}
			}
			if len(dropped) != c.dropped {
				t.Errorf("dropped = %v, want %d", dropped, c.dropped)
			}
		})
	}
}

func TestTooManyRewrites(t *testing.T) {
	rws := make([]configv1alpha1.ExternalSecretRewrite, configv1alpha1.MaxRewrites+1)
	for i := range rws {
		rws[i] = rwRegexp("a", "b")
	}
	_, err := newKeyNamer(template.NewBudget(), 2, configv1alpha1.ExternalSecretDataFromRemoteRef{Find: &configv1alpha1.ExternalSecretFind{}, Rewrite: rws})
	if err == nil || !strings.Contains(err.Error(), "dataFrom[2] has 11 rewrites") {
		t.Fatalf("err = %v", err)
	}
}

// All the transforms of one read share one budget, as the target templates
// of one ExternalSecret do: entries under the bounds alone can be over
// them together.
func TestRewriteBudgetIsShared(t *testing.T) {
	budget := template.NewBudget()
	entry := configv1alpha1.ExternalSecretDataFromRemoteRef{Find: &configv1alpha1.ExternalSecretFind{},
		Rewrite: []configv1alpha1.ExternalSecretRewrite{rwTransform(`{{ printf "%0600000d" 1 }}`)}}
	first, err := newKeyNamer(budget, 0, entry)
	if err != nil {
		t.Fatal(err)
	}
	// The key is too long for a Secret, but rendering it was within bounds.
	if _, _, err := first.secretKeys([]string{"a"}); err == nil || strings.Contains(err.Error(), "limits") {
		t.Fatalf("first entry: %v, want an invalid key, not a bound", err)
	}
	second, err := newKeyNamer(budget, 1, entry)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := second.secretKeys([]string{"a"}); err == nil || !strings.Contains(err.Error(), "over Veil's limits") {
		t.Fatalf("second entry: %v, want over Veil's limits", err)
	}
}
