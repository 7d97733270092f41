// Package rewrite renames keys as External Secrets Operator's rewrite
// operations do: an ExternalSecret's dataFrom[].rewrite (Secret keys from
// remote names) and a PushSecret's dataTo[].rewrite (remote keys from
// Secret key names) share it, so both take the same operations with the
// same bounds. Names are never values, so errors may quote them.
package rewrite

import (
	"fmt"
	"regexp"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

// Rewriter applies a list of rewrites in order, each to the output of the
// one before.
type Rewriter struct {
	field    string
	rewrites []configv1alpha1.ExternalSecretRewrite
	regexps  []*regexp.Regexp // by rewrite index; nil for transforms
}

// Compile checks and compiles rewrites; field ("dataFrom[0]") names them in
// errors. Go's regexp is RE2: matching is linear in the input, so a
// tenant's pattern cannot make a rename slow however it is written.
func Compile(field string, rewrites []configv1alpha1.ExternalSecretRewrite) (*Rewriter, error) {
	if len(rewrites) > configv1alpha1.MaxRewrites {
		return nil, providers.Errorf(providers.Invalid, "%s has %d rewrites, more than %d; combine them", field, len(rewrites), configv1alpha1.MaxRewrites)
	}
	r := &Rewriter{field: field, rewrites: rewrites, regexps: make([]*regexp.Regexp, len(rewrites))}
	for i, rw := range rewrites {
		switch {
		case rw.Regexp != nil && rw.Transform == nil:
			re, err := regexp.Compile(rw.Regexp.Source)
			if err != nil {
				return nil, providers.Errorf(providers.Invalid, "%s.rewrite[%d].regexp.source is not a valid RE2 regular expression (%v); fix it", field, i, err)
			}
			r.regexps[i] = re
		case rw.Transform != nil && rw.Regexp == nil:
		default:
			return nil, providers.Errorf(providers.Invalid, "%s.rewrite[%d] must set exactly one of regexp and transform", field, i)
		}
	}
	return r, nil
}

// Len is the number of rewrites.
func (r *Rewriter) Len() int { return len(r.rewrites) }

// Apply renames each of names, returning each name's final form. Template
// transforms spend from bud, which bounds every template of one read or
// push together.
func (r *Rewriter) Apply(bud *template.Budget, names []string) (map[string]string, error) {
	renamed := make(map[string]string, len(names))
	for _, name := range names {
		renamed[name] = name
	}
	for i, rw := range r.rewrites {
		if re := r.regexps[i]; re != nil {
			for orig, cur := range renamed {
				renamed[orig] = re.ReplaceAllString(cur, rw.Regexp.Target)
			}
			continue
		}
		current := make([]string, 0, len(renamed))
		for _, cur := range renamed {
			current = append(current, cur)
		}
		out, err := template.RenameKeys(bud, rw.Transform.Template, current)
		if err != nil {
			return nil, providers.Errorf(providers.Invalid, "%s.rewrite[%d].transform: %v", r.field, i, err)
		}
		for orig, cur := range renamed {
			renamed[orig] = out[cur]
		}
	}
	return renamed, nil
}

// String names the rewrites' field.
func (r *Rewriter) String() string { return fmt.Sprintf("%s.rewrite", r.field) }
