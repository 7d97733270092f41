package resolve

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/rewrite"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

// How a dataFrom entry names its Secret keys, as in External Secrets
// Operator: the names it returns (remote keys of a find, fields of an
// extract) go through its rewrites in order, or, without rewrites, through
// its conversionStrategy. Names are never values, so messages may quote
// them.

var (
	invalidKeyChars = regexp.MustCompile(`[^-._a-zA-Z0-9]`)
	validSecretKey  = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
)

// maxSecretKeyLength is the longest key a Secret accepts.
const maxSecretKeyLength = 253

// convertKey applies a conversionStrategy: every character a Secret key
// cannot hold becomes "_" (Default) or "_UXXXX_", its code point in hex
// (Unicode). A found remote key loses its leading and trailing "/" first.
func convertKey(name string, strategy configv1alpha1.ConversionStrategy, trimSlashes bool) string {
	if trimSlashes {
		name = strings.Trim(name, "/")
	}
	if strategy == configv1alpha1.ConvertUnicode {
		return invalidKeyChars.ReplaceAllStringFunc(name, func(c string) string {
			var b strings.Builder
			for _, r := range c {
				fmt.Fprintf(&b, "_U%04x_", r)
			}
			return b.String()
		})
	}
	return invalidKeyChars.ReplaceAllString(name, "_")
}

// secretKeyFor turns a remote key found by dataFrom.find into a key that a
// Secret accepts: "app/db/password" becomes "app_db_password".
func secretKeyFor(remoteKey string) string {
	return convertKey(remoteKey, configv1alpha1.ConvertDefault, true)
}

// foundKeys maps the remote keys one dataFrom.find returned to Secret keys
// by the default conversion; see mapKeys.
func foundKeys(found map[string]providers.Value) (keys map[string]string, dropped []string) {
	names := make([]string, 0, len(found))
	for k := range found {
		names = append(names, k)
	}
	keys, dropped, _ = mapKeys(names, func(name string) string { return secretKeyFor(name) })
	return keys, dropped
}

// mapKeys maps names to Secret keys with key. Distinct names can map to one
// Secret key ("a/b" and "a_b"); then the name that sorts first (bytewise)
// wins, whatever order the provider answered in, so the data never changes
// between reads for nothing. The losers, and names that map to nothing,
// are returned, so the caller can say which were left out.
func mapKeys(names []string, key func(string) string) (keys map[string]string, dropped []string, err error) {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	keys = make(map[string]string, len(sorted))
	winner := map[string]string{}
	for _, n := range sorted {
		sk := key(n)
		if sk == "" {
			dropped = append(dropped, fmt.Sprintf("%q (it maps to an empty Secret key)", n))
			continue
		}
		if w, taken := winner[sk]; taken {
			dropped = append(dropped, fmt.Sprintf("%q (Secret key %q is taken by %q)", n, sk, w))
			continue
		}
		winner[sk] = n
		keys[n] = sk
	}
	return keys, dropped, nil
}

// keyNamer names the Secret keys of one dataFrom entry.
type keyNamer struct {
	// budget bounds the transforms of every entry of one read together,
	// as one Render bounds every target template of an ExternalSecret.
	budget      *template.Budget
	entry       int
	rewriter    *rewrite.Rewriter
	strategy    configv1alpha1.ConversionStrategy
	trimSlashes bool
}

// newKeyNamer compiles the rewrites of dataFrom[entry] (pkg/rewrite,
// shared with PushSecret dataTo).
func newKeyNamer(budget *template.Budget, entry int, d configv1alpha1.ExternalSecretDataFromRemoteRef) (*keyNamer, error) {
	n := &keyNamer{budget: budget, entry: entry}
	switch {
	case d.Extract != nil:
		n.strategy = d.Extract.ConversionStrategy
	case d.Find != nil:
		n.strategy, n.trimSlashes = d.Find.ConversionStrategy, true
	}
	rw, err := rewrite.Compile(fmt.Sprintf("dataFrom[%d]", entry), d.Rewrite)
	if err != nil {
		return nil, err
	}
	n.rewriter = rw
	return n, nil
}

// secretKeys maps the names the entry returned to Secret keys (see
// mapKeys). A name that rewrites turn into something a Secret cannot hold
// is an error naming it, as in External Secrets Operator.
func (n *keyNamer) secretKeys(names []string) (map[string]string, []string, error) {
	if n.rewriter.Len() == 0 {
		return mapKeys(names, func(name string) string { return convertKey(name, n.strategy, n.trimSlashes) })
	}
	renamed, err := n.rewriter.Apply(n.budget, names)
	if err != nil {
		return nil, nil, err
	}
	for _, name := range names {
		sk := renamed[name]
		if sk != "" && (len(sk) > maxSecretKeyLength || !validSecretKey.MatchString(sk)) {
			return nil, nil, providers.Errorf(providers.Invalid,
				"dataFrom[%d].rewrite turns %q into %q, which is not a valid Secret key (at most %d letters, digits, '-', '.' and '_'); add a rewrite that replaces the other characters",
				n.entry, name, sk, maxSecretKeyLength)
		}
	}
	return mapKeys(names, func(name string) string { return renamed[name] })
}
