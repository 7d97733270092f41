package stores

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// KeyScope is the remote keys a namespace may read and push through a
// ClusterSecretStore whose matching conditions set remoteKeyPrefix. A nil
// *KeyScope allows every key.
//
// A key is allowed only in one canonical spelling, compared byte for byte
// with the prefixes: providers normalise keys differently (Vault trims
// slashes and resolves nothing, AWS takes ARNs and "name:version"
// selectors, HTTP paths decode "%2F"), so rather than guess what each would
// make of a key, anything a provider could read as another key is refused.
// Every check runs before the cache and before any provider call.
type KeyScope struct {
	store     string // "ClusterSecretStore shared", for messages
	namespace string
	// prefixes are expanded, canonical and end in "/"; a key must be under
	// one of them.
	prefixes []string
}

// NamespacePlaceholder in a remoteKeyPrefix stands for the namespace.
const NamespacePlaceholder = "{namespace}"

const maxScopedKeyLength = 1024

// prefixTemplatePattern mirrors the CRD's validation of remoteKeyPrefix, so
// that a store the CRD schema did not check (an older CRD) is refused too.
var prefixTemplatePattern = regexp.MustCompile(`^/?([A-Za-z0-9_.+=@-]|\{namespace\})+(/([A-Za-z0-9_.+=@-]|\{namespace\})+)*/$`)

// ScopeFor returns the key scope of namespace through css, given the
// conditions that matched it: none when one of them has no prefix, else the
// union of their prefixes.
func ScopeFor(css *configv1alpha1.ClusterSecretStore, namespace string, matched []configv1alpha1.ClusterSecretStoreCondition) (*KeyScope, error) {
	s := &KeyScope{store: "ClusterSecretStore " + css.Name, namespace: namespace}
	for _, c := range matched {
		if c.RemoteKeyPrefix == "" {
			return nil, nil
		}
		p, err := expandPrefix(c.RemoteKeyPrefix, namespace)
		if err != nil {
			return nil, providers.Errorf(providers.Invalid, "%s: spec.conditions[].remoteKeyPrefix %q %s; fix the store", s.store, c.RemoteKeyPrefix, err)
		}
		if !slices.Contains(s.prefixes, p) {
			s.prefixes = append(s.prefixes, p)
		}
	}
	slices.Sort(s.prefixes)
	return s, nil
}

// expandPrefix checks a remoteKeyPrefix and puts the namespace in it.
func expandPrefix(tmpl, namespace string) (string, error) {
	if len(tmpl) > 200 || !prefixTemplatePattern.MatchString(tmpl) {
		return "", fmt.Errorf(`is not "/"-separated segments of letters, digits, "_+=.@-" and %s, ending in "/"`, NamespacePlaceholder)
	}
	if rest := strings.Split(tmpl, NamespacePlaceholder); len(rest) > 1 {
		for _, r := range rest[1:] {
			if !strings.HasPrefix(r, "/") {
				return "", fmt.Errorf(`has %s not followed by "/"`, NamespacePlaceholder)
			}
		}
	}
	p := strings.ReplaceAll(tmpl, NamespacePlaceholder, namespace)
	if why := uncanonical(p, true); why != "" {
		return "", fmt.Errorf("%s once %s is %q", why, NamespacePlaceholder, namespace)
	}
	return p, nil
}

// uncanonical says why key is not in the one spelling a scoped key may
// have, or "" if it is. A directory (a prefix, a find.path) may end in "/".
func uncanonical(key string, dir bool) string {
	switch {
	case key == "":
		return "is empty"
	case len(key) > maxScopedKeyLength:
		return fmt.Sprintf("is longer than %d bytes", maxScopedKeyLength)
	case strings.HasPrefix(key, "arn:"):
		return "is an ARN, which could name a secret anywhere; name it by its name"
	}
	for i := 0; i < len(key); i++ {
		if !keyByte(key[i]) {
			return fmt.Sprintf(`has the byte %q at offset %d; only letters, digits and "/_+=.@-" are allowed, so that no provider can read the key as another one (percent-encoding, backslashes, ":" selectors, non-ASCII)`, key[i:i+1], i)
		}
	}
	body := strings.TrimPrefix(key, "/")
	if dir {
		body = strings.TrimSuffix(body, "/")
	}
	for _, seg := range strings.Split(body, "/") {
		switch {
		case seg == "":
			return `has an empty segment ("//", or "/" at its end)`
		case strings.HasSuffix(seg, "."):
			return `has a segment ending in "." (such as "." or "..")`
		}
	}
	return ""
}

func keyByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("/_+=.@-", b) >= 0
}

// describe names the prefixes and where they come from, for refusals.
func (s *KeyScope) describe() string {
	q := make([]string, len(s.prefixes))
	for i, p := range s.prefixes {
		q[i] = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("%s confines namespace %q to remote keys under %s (spec.conditions[].remoteKeyPrefix)", s.store, s.namespace, strings.Join(q, " or "))
}

func (s *KeyScope) under(key string) bool {
	for _, p := range s.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// CheckKey refuses, with Forbidden, a remote key outside the scope or not
// in canonical form.
func (s *KeyScope) CheckKey(key string) error {
	if s == nil {
		return nil
	}
	if why := uncanonical(key, false); why != "" {
		return providers.Errorf(providers.Forbidden, "remote key %q %s, and %s", key, why, s.describe())
	}
	if !s.under(key) {
		return providers.Errorf(providers.Forbidden, "remote key %q is outside the prefix: %s", key, s.describe())
	}
	return nil
}

// Find confines a dataFrom.find to the scope: no path means the prefix
// (when there is one prefix), and a path must be under a prefix.
func (s *KeyScope) Find(f providers.Find) (providers.Find, error) {
	if s == nil {
		return f, nil
	}
	if f.Path == "" {
		if len(s.prefixes) != 1 {
			return f, providers.Errorf(providers.Forbidden, "dataFrom.find names no path, and %s; set find.path under one of them", s.describe())
		}
		f.Path = s.prefixes[0]
		return f, nil
	}
	if why := uncanonical(f.Path, true); why != "" {
		return f, providers.Errorf(providers.Forbidden, "find.path %q %s, and %s", f.Path, why, s.describe())
	}
	if !s.under(f.Path) {
		return f, providers.Errorf(providers.Forbidden, "find.path %q is outside the prefix: %s", f.Path, s.describe())
	}
	return f, nil
}

// Filter drops from a find's result every key outside the scope, whatever
// the provider returned.
func (s *KeyScope) Filter(found map[string]providers.Value) map[string]providers.Value {
	if s == nil {
		return found
	}
	for k := range found {
		if s.CheckKey(k) != nil {
			delete(found, k)
		}
	}
	return found
}

// CheckExternalSecret refuses an ExternalSecret that names a remote key or
// find.path outside the scope, before its store's client is even built:
// the cache is shared by every namespace using the store, so this must
// come before any read.
func (s *KeyScope) CheckExternalSecret(es *configv1alpha1.ExternalSecret) error {
	if s == nil {
		return nil
	}
	for _, d := range es.Spec.Data {
		if err := s.CheckKey(d.RemoteRef.Key); err != nil {
			return err
		}
	}
	for _, d := range es.Spec.DataFrom {
		switch {
		case d.Extract != nil:
			if err := s.CheckKey(d.Extract.Key); err != nil {
				return err
			}
		case d.Find != nil:
			f := providers.Find{}
			if d.Find.Path != nil {
				f.Path = *d.Find.Path
			}
			if _, err := s.Find(f); err != nil {
				return err
			}
		}
	}
	return nil
}
