package stores

import (
	"context"
	"net/url"
	"path"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

func prefixed(prefix string, namespaces ...string) configv1alpha1.ClusterSecretStoreCondition {
	return configv1alpha1.ClusterSecretStoreCondition{Namespaces: namespaces, RemoteKeyPrefix: prefix}
}

// scopeOf resolves the store for ns and returns its scope.
func scopeOf(t *testing.T, css *configv1alpha1.ClusterSecretStore, ns string) *KeyScope {
	t.Helper()
	s := world{cluster: []*configv1alpha1.ClusterSecretStore{css}, ns: []*corev1.Namespace{namespace(ns, nil)}}.build(t, nil, false)
	u, err := s.For(context.Background(), ns, cssRef(css.Name))
	if err != nil {
		t.Fatalf("%s from %s: %v", css.Name, ns, err)
	}
	return u.Scope
}

func TestKeyScopeEscapes(t *testing.T) {
	scope := scopeOf(t, clusterStore("shared", prefixed("teams/{namespace}/", "a", "b")), "a")
	cases := []struct {
		key  string
		says string // "" = allowed
	}{
		{"teams/a/db", ""},
		{"teams/a/sub/db", ""},
		{"teams/a/.hidden", ""},
		{"teams/a/db.json", ""},
		{"teams/b/db", "is outside the prefix"},
		{"teams/a", "is outside the prefix"},
		{"teams/ab/db", "is outside the prefix"},
		{"teams/a-b/db", "is outside the prefix"},
		{"teams/a/../b/db", `segment ending in "."`},
		{"teams/a/./db", `segment ending in "."`},
		{"teams/a/..", `segment ending in "."`},
		{"teams/a/db.", `segment ending in "."`},
		{"teams/a./db", `segment ending in "."`},
		{"teams/a//db", "empty segment"},
		{"teams/a/db/", "empty segment"},
		{"teams/a/", "empty segment"},
		{"/teams/a/db", "is outside the prefix"},
		{"//teams/a/db", "empty segment"},
		{"teams/a/%2e%2e/b/db", `byte "%"`},
		{"teams/a/..%2Fb/db", `byte "%"`},
		{"teams%2Fa/db", `byte "%"`},
		{`teams/a/..\b\db`, `byte "\\"`},
		{`teams\a\db`, `byte "\\"`},
		{"Teams/A/db", "is outside the prefix"},
		{"teams/A/db", "is outside the prefix"},
		{"teams/\u0430/db", `byte "\xd0"`},         // Cyrillic a
		{"teams/a\u0338/db", `byte "\xcc"`},        // combining character
		{"teams/a/\uff0e\uff0e/db", `byte "\xef"`}, // fullwidth dots
		{"teams/a/db\x00", `byte "\x00"`},
		{"teams/a/db\n", `byte "\n"`},
		{"teams/a/db?version=1", `byte "?"`},
		{"teams/a/db#frag", `byte "#"`},
		{"teams/a/db:1", `byte ":"`},
		{"teams/a/db b", `byte " "`},
		{"teams/a/*", `byte "*"`},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:teams/b/db-AbCdEf", "is an ARN"},
		{"arn:aws:ssm:eu-west-1:123456789012:parameter/teams/b/db", "is an ARN"},
		{"", "is empty"},
		{"teams/a/" + strings.Repeat("x", maxScopedKeyLength), "longer than"},
	}
	for _, c := range cases {
		err := scope.CheckKey(c.key)
		if c.says == "" {
			if err != nil {
				t.Errorf("%q: %v, want allowed", c.key, err)
			}
			continue
		}
		if providers.ReasonOf(err) != providers.Forbidden || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), `remote keys under "teams/a/"`) {
			t.Errorf("%q: %v; want Forbidden saying %q and naming the prefix", c.key, err, c.says)
		}
	}
}

func TestKeyScopeFind(t *testing.T) {
	scope := scopeOf(t, clusterStore("shared", prefixed("/teams/{namespace}/", "a")), "a")
	f, err := scope.Find(providers.Find{NameRegexp: ".*"})
	if err != nil || f.Path != "/teams/a/" || f.NameRegexp != ".*" {
		t.Errorf("no path: %+v, %v; want the prefix", f, err)
	}
	for _, p := range []string{"/teams/a/", "/teams/a/sub/", "/teams/a/sub"} {
		if f, err := scope.Find(providers.Find{Path: p}); err != nil || f.Path != p {
			t.Errorf("path %q: %+v, %v", p, f, err)
		}
	}
	for _, p := range []string{"/teams/", "/teams/a", "teams/a/", "/teams/b/", "/teams/a/../b/", "/teams/a//", "/teams/a/%2e%2e/", "/"} {
		if _, err := scope.Find(providers.Find{Path: p}); providers.ReasonOf(err) != providers.Forbidden || !strings.Contains(err.Error(), `"/teams/a/"`) {
			t.Errorf("path %q: %v; want Forbidden naming the prefix", p, err)
		}
	}
	found := map[string]providers.Value{"/teams/a/x": {}, "/teams/b/x": {}, "/teams/a/../b/x": {}, "/teams/ab": {}}
	got := scope.Filter(found)
	if _, ok := got["/teams/a/x"]; !ok || len(got) != 1 {
		t.Errorf("filter kept %v, want only /teams/a/x", got)
	}
}

func TestKeyScopeSeveralConditions(t *testing.T) {
	two := clusterStore("two", prefixed("teams/{namespace}/", "a"), prefixed("shared/ro/", "a"), prefixed("teams/{namespace}/", "b"))
	scope := scopeOf(t, two, "a")
	for key, ok := range map[string]bool{"teams/a/x": true, "shared/ro/x": true, "teams/b/x": false, "shared/x": false} {
		if err := scope.CheckKey(key); (err == nil) != ok {
			t.Errorf("%q: %v, want allowed=%v", key, err, ok)
		}
	}
	if _, err := scope.Find(providers.Find{}); providers.ReasonOf(err) != providers.Forbidden || !strings.Contains(err.Error(), `"shared/ro/" or "teams/a/"`) {
		t.Errorf("a find without path under two prefixes: %v", err)
	}

	// A matching condition without a prefix leaves the namespace unconfined.
	open := clusterStore("open", prefixed("teams/{namespace}/", "a"), configv1alpha1.ClusterSecretStoreCondition{Namespaces: []string{"a"}})
	if s := scopeOf(t, open, "a"); s != nil || s.CheckKey("anything/at/all") != nil {
		t.Errorf("unprefixed condition: scope %+v", s)
	}
	// One that does not match the namespace does not.
	other := clusterStore("other", prefixed("teams/{namespace}/", "a"), configv1alpha1.ClusterSecretStoreCondition{Namespaces: []string{"b"}})
	if err := scopeOf(t, other, "a").CheckKey("anything"); providers.ReasonOf(err) != providers.Forbidden {
		t.Errorf("a condition of another namespace widened the scope: %v", err)
	}
}

func TestKeyScopeBadPrefixRefused(t *testing.T) {
	for _, p := range []string{"teams/{namespace}", "teams/{namespace}-x/", "teams/../", "teams//", "teams/{ns}/", "teams/%2e/", `teams\`, "teams/./", "arn:x/"} {
		s := world{cluster: []*configv1alpha1.ClusterSecretStore{clusterStore("bad", prefixed(p, "a"))}, ns: []*corev1.Namespace{namespace("a", nil)}}.build(t, nil, false)
		_, err := s.For(context.Background(), "a", cssRef("bad"))
		if providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), "remoteKeyPrefix") {
			t.Errorf("prefix %q: %v; want Invalid", p, err)
		}
	}
}

func TestKeyScopeChecksTheWholeExternalSecret(t *testing.T) {
	scope := scopeOf(t, clusterStore("shared", prefixed("teams/{namespace}/", "a")), "a")
	es := func(spec configv1alpha1.ExternalSecretSpec) *configv1alpha1.ExternalSecret {
		return &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "es"}, Spec: spec}
	}
	ok := es(configv1alpha1.ExternalSecretSpec{
		Data: []configv1alpha1.ExternalSecretData{{SecretKey: "k", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "teams/a/db"}}},
		DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
			{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: "teams/a/json"}},
			{Find: &configv1alpha1.ExternalSecretFind{Name: &configv1alpha1.FindName{RegExp: ".*"}}},
		},
	})
	if err := scope.CheckExternalSecret(ok); err != nil {
		t.Errorf("in scope: %v", err)
	}
	for name, bad := range map[string]*configv1alpha1.ExternalSecret{
		"data": es(configv1alpha1.ExternalSecretSpec{Data: []configv1alpha1.ExternalSecretData{
			{SecretKey: "k", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "teams/a/db"}},
			{SecretKey: "l", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "teams/b/db"}},
		}}),
		"extract": es(configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
			{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: "teams/b/json"}},
		}}),
		"find": es(configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
			{Find: &configv1alpha1.ExternalSecretFind{Path: ptrTo("teams/"), Name: &configv1alpha1.FindName{RegExp: ".*"}}},
		}}),
	} {
		if err := scope.CheckExternalSecret(bad); providers.ReasonOf(err) != providers.Forbidden || !strings.Contains(err.Error(), `"teams/a/"`) {
			t.Errorf("%s: %v; want Forbidden naming the prefix", name, err)
		}
	}
}

// FuzzKeyScope checks that whatever key a namespace's scope allows stays
// under its prefix however a provider might normalise it, and never lies
// under another namespace's prefix.
func FuzzKeyScope(f *testing.F) {
	for _, seed := range [][3]string{
		{"teams/{namespace}/", "a", "teams/a/db"},
		{"teams/{namespace}/", "a", "teams/a/../b/db"},
		{"/teams/{namespace}/", "a", "/teams/a/%2e%2e/b"},
		{"{namespace}/", "a", "a-b/db"},
		{"x/{namespace}/y/", "team", "x/team/y/z"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, tmpl, ns, key string) {
		if len(validation.IsDNS1123Label(ns)) > 0 {
			return
		}
		prefix, err := expandPrefix(tmpl, ns)
		if err != nil {
			return
		}
		scope := &KeyScope{store: "ClusterSecretStore s", namespace: ns, prefixes: []string{prefix}}
		if err := scope.CheckKey(key); err != nil {
			if !strings.Contains(err.Error(), prefix) {
				t.Fatalf("refusal %q does not name the prefix %q", err, prefix)
			}
			return
		}
		if !strings.HasPrefix(key, prefix) {
			t.Fatalf("%q allowed outside %q", key, prefix)
		}
		// However a provider reads it: path cleaning, slashes trimmed
		// (Vault), percent-decoding, case folding.
		for _, norm := range []func(string) string{
			func(s string) string { return path.Clean("/" + s) },
			func(s string) string { return "/" + strings.Trim(s, "/") },
			func(s string) string { u, _ := url.PathUnescape(s); return path.Clean("/" + u) },
			func(s string) string { return path.Clean("/" + strings.ToLower(s)) },
		} {
			k, p := norm(key), strings.TrimSuffix(norm(prefix), "/")+"/"
			if !strings.HasPrefix(k, p) {
				t.Fatalf("%q allowed under %q, but read as %q it is outside %q", key, prefix, k, p)
			}
		}
		if strings.Contains(tmpl, NamespacePlaceholder) {
			for _, other := range []string{ns + "-x", ns[:len(ns)-1], "x" + ns, "kube-system"} {
				op, err := expandPrefix(tmpl, other)
				if err != nil || other == ns || len(validation.IsDNS1123Label(other)) > 0 {
					continue
				}
				if strings.HasPrefix(key, op) {
					t.Fatalf("%q allowed for namespace %q is also under %q, namespace %q's prefix", key, ns, op, other)
				}
			}
		}
	})
}

func ptrTo[T any](v T) *T { return &v }
