package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
)

// demo creates a namespace with a fake store and an ExternalSecret "db"
// reading a JSON value's properties and a plain value.
func demo(t *testing.T, password string) string {
	t.Helper()
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store",
		configv1alpha1.FakeProviderData{Key: "db/credentials", Value: fmt.Sprintf(`{"username":"app","password":%q}`, password)},
		configv1alpha1.FakeProviderData{Key: "api/token", Value: "plain-token"},
	)
	createExternalSecret(t, ns, "db", storeRef("store"), map[string]string{"app": "demo"},
		dataRef("username", "db/credentials", "username"),
		dataRef("password", "db/credentials", "password"),
		dataRef("token", "api/token", ""),
	)
	return ns
}

func TestTableShowsWhereValuesComeFromNeverAValue(t *testing.T) {
	password := unique("table-canary-")
	ns := demo(t, password)

	out := kubectl(t, "", "get", "externalsecretvalues", "-n", ns)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and one row, got:\n%s", out)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NAME STORE KEYS FETCHED AGE" {
		t.Errorf("header = %v", got)
	}
	row := strings.Fields(lines[1])
	if len(row) != 5 || row[0] != "db" || row[1] != "SecretStore/store" || row[2] != "3" {
		t.Errorf("row = %v, want db SecretStore/store 3 <fetched> <age>", row)
	}
	for _, form := range []string{password, base64.StdEncoding.EncodeToString([]byte(password))} {
		if strings.Contains(out, form) {
			t.Errorf("the table shows a value:\n%s", out)
		}
	}
	wide := kubectl(t, "", "get", "externalsecretvalue", "db", "-n", ns, "-o", "wide")
	if strings.Contains(wide, password) {
		t.Errorf("the wide table shows a value:\n%s", wide)
	}
}

func TestYAMLServesTheValuesLikeASecret(t *testing.T) {
	password := unique("yaml-")
	ns := demo(t, password)

	out := kubectl(t, "", "get", "externalsecretvalue", "db", "-n", ns, "-o", "json")
	var v esv1alpha1.ExternalSecretValue
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := map[string]string{"username": "app", "password": password, "token": "plain-token"}
	if len(v.Data) != len(want) {
		t.Errorf("data has %d keys, want %d", len(v.Data), len(want))
	}
	for k, w := range want {
		if string(v.Data[k]) != w {
			t.Errorf("data[%s] = %q, want %q", k, v.Data[k], w)
		}
	}
	if v.Type != "Opaque" || v.Labels["app"] != "demo" || v.Source.StoreRef.Name != "store" || v.Source.Provider != "fake" || v.Source.FetchTime.IsZero() {
		t.Errorf("metadata/source not as expected: type %q labels %v source %+v", v.Type, v.Labels, v.Source)
	}
	// -o yaml shows data base64-encoded, exactly as for a Secret.
	yamlOut := kubectl(t, "", "get", "externalsecretvalue", "db", "-n", ns, "-o", "yaml")
	if !strings.Contains(yamlOut, "password: "+base64.StdEncoding.EncodeToString([]byte(password))) {
		t.Errorf("-o yaml does not carry the base64 value:\n%s", yamlOut)
	}
}

func TestExplainAndDiscovery(t *testing.T) {
	if out := kubectl(t, "", "explain", "externalsecretvalues"); !strings.Contains(out, "KIND:       ExternalSecretValue") || !strings.Contains(out, "never stored") {
		t.Errorf("explain externalsecretvalues:\n%s", out)
	}
	if out := kubectl(t, "", "explain", "externalsecretvalues.source.remote"); !strings.Contains(out, "remote values read") {
		t.Errorf("explain externalsecretvalues.source.remote:\n%s", out)
	}
	if out := kubectl(t, "", "explain", "externalsecrets.spec"); !strings.Contains(out, "secretStoreRef") || !strings.Contains(out, "dataFrom") {
		t.Errorf("explain externalsecrets.spec:\n%s", out)
	}

	out := kubectl(t, "", "api-resources", "-o", "wide")
	found := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (strings.Contains(line, "veil.dev")) {
			found[f[0]] = line
		}
	}
	for _, r := range []string{"externalsecretvalues", "externalsecrets", "secretstores", "clustersecretstores", "pushsecrets"} {
		if _, ok := found[r]; !ok {
			t.Errorf("api-resources does not list %s:\n%s", r, out)
		}
	}
	// Only what is served is advertised: reads, no writes.
	if line := found["externalsecretvalues"]; !strings.Contains(line, "externalsecrets.veil.dev/v1alpha1") || !strings.Contains(line, " get,list,watch ") {
		t.Errorf("externalsecretvalues should be served by externalsecrets.veil.dev/v1alpha1 with verbs get,list,watch only: %q", line)
	}
}

func TestProtobufIsNotAdvertised(t *testing.T) {
	ns := demo(t, unique("pb-"))
	path := "/apis/externalsecrets.veil.dev/v1alpha1/namespaces/" + ns + "/externalsecretvalues/db"
	res := cluster.KubeClient.Discovery().RESTClient().Get().AbsPath(path).
		SetHeader("Accept", "application/vnd.kubernetes.protobuf").Do(ctxFor(t))
	var code int
	res.StatusCode(&code)
	if code != http.StatusNotAcceptable {
		t.Errorf("a protobuf-only request got %d, want 406 Not Acceptable", code)
	}
	// A client that prefers protobuf but accepts JSON gets JSON.
	body, err := cluster.KubeClient.Discovery().RESTClient().Get().AbsPath(path).
		SetHeader("Accept", "application/vnd.kubernetes.protobuf, application/json").DoRaw(ctxFor(t))
	if err != nil || !json.Valid(body) {
		t.Errorf("protobuf-or-JSON request: err %v, body %.100s", err, body)
	}
}

// TestRBACMatrix asserts every cell of identities x namespaces x verbs.
// Reading definitions does not let anyone read values, and neither do the
// built-in view, edit and admin (as kube-controller-manager aggregates
// them); of those, only admin may use the namespace's SecretStores.
func TestRBACMatrix(t *testing.T) {
	ns1, ns2 := demo(t, unique("rbac-")), demo(t, unique("rbac-"))
	reader, defs, nobody := unique("reader-"), unique("defs-"), unique("nobody-")
	viewer, editor, nsAdmin := unique("view-"), unique("edit-"), unique("admin-")
	bind(t, ns1, reader, "veil:values-reader")
	for _, ns := range []string{ns1, ns2} {
		bind(t, ns, defs, "veil:definitions-viewer")
	}
	builtIn := map[string]string{viewer: "view", editor: "edit", nsAdmin: "admin"}
	for user, role := range builtIn {
		bindBuiltIn(t, ns1, user, role)
	}

	allowed := map[string]map[string]bool{reader: {ns1: true, ns2: false}}
	for _, user := range []string{reader, defs, nobody, viewer, editor, nsAdmin} {
		client := userClient(t, user)
		kc, err := cluster.UserKubeconfig(user)
		if err != nil {
			t.Fatal(err)
		}
		for _, ns := range []string{ns1, ns2} {
			want := allowed[user][ns]
			values := client.ExternalsecretsV1alpha1().ExternalSecretValues(ns)

			v, err := values.Get(ctxFor(t), "db", metav1.GetOptions{})
			checkCell(t, user, ns, "get", want, err)
			if want && (err != nil || string(v.Data["username"]) != "app") {
				t.Errorf("%s get %s: got %v, %v", user, ns, v, err)
			}
			list, err := values.List(ctxFor(t), metav1.ListOptions{})
			checkCell(t, user, ns, "list", want, err)
			if want && (err != nil || len(list.Items) != 1) {
				t.Errorf("%s list %s: got %v, %v", user, ns, list, err)
			}
			canI := strings.TrimSpace(kubectlMaybe(t, kc, "auth", "can-i", "get", "externalsecretvalues", "-n", ns))
			if (canI == "yes") != want {
				t.Errorf("kubectl auth can-i get externalsecretvalues -n %s as %s = %q, want allowed=%v", ns, user, canI, want)
			}
			// The definitions reader, and view, edit and admin where they
			// are bound, may read the ExternalSecret itself.
			_, err = client.ConfigV1alpha1().ExternalSecrets(ns).Get(ctxFor(t), "db", metav1.GetOptions{})
			if (err == nil) != (user == defs || (ns == ns1 && builtIn[user] != "")) {
				t.Errorf("%s get externalsecret in %s: err %v", user, ns, err)
			}
			for resource, wantUse := range map[string]bool{"secretstores": ns == ns1 && user == nsAdmin, "clustersecretstores": false} {
				sar, err := cluster.KubeClient.AuthorizationV1().SubjectAccessReviews().Create(ctxFor(t), &authorizationv1.SubjectAccessReview{
					Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: ptr.To(useAttrs(ns, resource, "store"))},
				}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if sar.Status.Allowed != wantUse {
					t.Errorf("%s use %s/store in %s: allowed %v, want %v", user, resource, ns, sar.Status.Allowed, wantUse)
				}
			}
		}
		_, err = client.ExternalsecretsV1alpha1().ExternalSecretValues("").List(ctxFor(t), metav1.ListOptions{})
		checkCell(t, user, "all namespaces", "list", false, err)
	}
}

func checkCell(t *testing.T, user, ns, verb string, allowed bool, err error) {
	t.Helper()
	switch {
	case allowed && err != nil:
		t.Errorf("%s %s externalsecretvalues in %s: %v, want allowed", user, verb, ns, err)
	case !allowed && !apierrors.IsForbidden(err):
		t.Errorf("%s %s externalsecretvalues in %s: err %v, want 403 Forbidden", user, verb, ns, err)
	}
}

// kubectlMaybe returns stdout whether or not kubectl failed (auth can-i
// exits 1 for "no").
func kubectlMaybe(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	out, _, _ := cluster.RunKubectl(ctxFor(t), kubeconfig, nil, args...)
	return string(out)
}

func TestClusterSecretStoreConditions(t *testing.T) {
	named, selected, other := newNamespace(t, nil), newNamespace(t, map[string]string{"veil-e2e": "yes"}), newNamespace(t, nil)
	css := &configv1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: unique("css-")},
		Spec: configv1alpha1.ClusterSecretStoreSpec{SecretStoreSpec: configv1alpha1.SecretStoreSpec{
			Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{Data: []configv1alpha1.FakeProviderData{{Key: "shared", Value: "v"}}}},
		}},
	}
	ctx := ctxFor(t)
	css, err := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Create(ctx, css, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Delete(ctx, css.Name, metav1.DeleteOptions{})
	})
	ref := configv1alpha1.SecretStoreRef{Name: css.Name, Kind: configv1alpha1.ClusterSecretStoreKind}
	for _, ns := range []string{named, selected, other} {
		createExternalSecret(t, ns, "shared", ref, nil, dataRef("v", "shared", ""))
	}
	get := func(ns string) error {
		_, err := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), "shared", metav1.GetOptions{})
		return err
	}

	// No conditions: no namespace, with a message saying what to do.
	for _, ns := range []string{named, selected, other} {
		err := get(ns)
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "has no spec.conditions") {
			t.Errorf("%s without conditions: %v, want 403 naming spec.conditions", ns, err)
		}
	}
	// A list leaves it out and says why in a warning.
	stderr := kubectlMaybeStderr(t, "get", "externalsecretvalues", "-n", other)
	if !strings.Contains(stderr, "left out") || !strings.Contains(stderr, "spec.conditions") {
		t.Errorf("list warning: %q", stderr)
	}

	// veil-apiserver writes the store's status, so update the latest.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest, err := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Get(ctx, css.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		latest.Spec.Conditions = []configv1alpha1.ClusterSecretStoreCondition{
			{Namespaces: []string{named}},
			{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"veil-e2e": "yes"}}},
		}
		_, err = cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Update(ctx, latest, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { return get(named) })
	eventually(t, func() error { return get(selected) })
	if err := get(other); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "none of its spec.conditions matches") {
		t.Errorf("%s not matched by conditions: %v, want 403", other, err)
	}

	// ESO's namespaceRegexes: a pattern anchored at both ends names the
	// namespace; the others stay out.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest, err := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Get(ctx, css.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		latest.Spec.Conditions = []configv1alpha1.ClusterSecretStoreCondition{{NamespaceRegexes: []string{"^" + regexp.QuoteMeta(other) + "$"}}}
		_, err = cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Update(ctx, latest, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { return get(other) })
	if err := get(named); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "none of its spec.conditions matches") {
		t.Errorf("%s not matched by the pattern: %v, want 403", named, err)
	}
}

func kubectlMaybeStderr(t *testing.T, args ...string) string {
	t.Helper()
	_, stderr, _ := cluster.RunKubectl(ctxFor(t), "", nil, args...)
	return string(stderr)
}

func TestErrorsSayWhatToFix(t *testing.T) {
	secret := unique("err-canary-")
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store",
		configv1alpha1.FakeProviderData{Key: "json", Value: fmt.Sprintf(`{"a":%q}`, secret)},
		configv1alpha1.FakeProviderData{Key: "text", Value: secret},
	)
	createExternalSecret(t, ns, "missing-key", storeRef("store"), nil, dataRef("k", "nope", ""))
	createExternalSecret(t, ns, "missing-property", storeRef("store"), nil, dataRef("k", "json", "b"))
	createExternalSecret(t, ns, "not-json", storeRef("store"), nil, dataRef("k", "text", "a"))
	createExternalSecret(t, ns, "missing-store", storeRef("nostore"), nil, dataRef("k", "json", ""))
	bad := createExternalSecret(t, ns, "bad-base64", storeRef("store"), nil, dataRef("k", "text", ""))
	bad.Spec.Data[0].RemoteRef.DecodingStrategy = configv1alpha1.DecodeBase64
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Update(ctxFor(t), bad, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		is     func(error) bool
		status int
		says   string
	}{
		{"no-such-externalsecret", apierrors.IsNotFound, 404, `there is no ExternalSecret "no-such-externalsecret"`},
		{"missing-key", apierrors.IsNotFound, 404, `key "nope" does not exist in SecretStore ` + ns + "/store"},
		{"missing-property", apierrors.IsNotFound, 404, `property "b" does not exist in remote key "json"`},
		{"not-json", apierrors.IsInvalid, 422, `remote key "text" is not JSON`},
		{"missing-store", apierrors.IsNotFound, 404, `SecretStore "nostore" does not exist in namespace "` + ns + `"`},
		{"bad-base64", apierrors.IsInvalid, 422, `is not valid Base64; fix decodingStrategy`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			eventually(t, func() error {
				_, err := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), c.name, metav1.GetOptions{})
				if !c.is(err) || !strings.Contains(err.Error(), c.says) {
					return fmt.Errorf("got %v, want a %d saying %q", err, c.status, c.says)
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("the error carries the value: %v", err)
				}
				return nil
			})
		})
	}
}

func TestListSelectors(t *testing.T) {
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	createExternalSecret(t, ns, "one", storeRef("store"), map[string]string{"tier": "db"}, dataRef("k", "k", ""))
	createExternalSecret(t, ns, "two", storeRef("store"), map[string]string{"tier": "web"}, dataRef("k", "k", ""))
	values := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns)
	names := func(opts metav1.ListOptions) []string {
		t.Helper()
		l, err := values.List(ctxFor(t), opts)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, i := range l.Items {
			out = append(out, i.Name)
		}
		return out
	}
	eventually(t, func() error {
		if got := names(metav1.ListOptions{}); strings.Join(got, ",") != "one,two" {
			return fmt.Errorf("all: %v", got)
		}
		return nil
	})
	if got := names(metav1.ListOptions{LabelSelector: "tier=web"}); strings.Join(got, ",") != "two" {
		t.Errorf("tier=web: %v", got)
	}
	if got := names(metav1.ListOptions{FieldSelector: "metadata.name=one"}); strings.Join(got, ",") != "one" {
		t.Errorf("metadata.name=one: %v", got)
	}
	if _, err := values.List(ctxFor(t), metav1.ListOptions{FieldSelector: "spec.foo=bar"}); !apierrors.IsBadRequest(err) {
		t.Errorf("unsupported field selector: %v, want 400", err)
	}
}

// TestDirectRequestsNeedAuthentication talks to veil-apiserver's own port.
func TestDirectRequestsNeedAuthentication(t *testing.T) {
	ns := demo(t, unique("direct-"))
	anonymous := cluster.VeilHTTPClient(nil)
	path := cluster.VeilURL() + "/apis/externalsecrets.veil.dev/v1alpha1/namespaces/" + ns + "/externalsecretvalues/db"

	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		if code, _ := status(t, anonymous, cluster.VeilURL()+p, nil); code != http.StatusOK {
			t.Errorf("anonymous %s: %d, want 200", p, code)
		}
	}
	for _, p := range []string{path, cluster.VeilURL() + "/metrics", cluster.VeilURL() + "/openapi/v2", cluster.VeilURL() + "/apis"} {
		if code, body := status(t, anonymous, p, nil); code != http.StatusUnauthorized {
			t.Errorf("anonymous %s: %d, want 401\n%s", p, code, body)
		}
	}
	// The user headers count only on a connection authenticated by the
	// front-proxy client certificate.
	if code, _ := status(t, anonymous, path, map[string]string{"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}); code != http.StatusUnauthorized {
		t.Errorf("forged X-Remote-User without the front-proxy certificate: %d, want 401", code)
	}
	proxyCert, err := cluster.FrontProxyCertificate()
	if err != nil {
		t.Fatal(err)
	}
	proxy := cluster.VeilHTTPClient(&proxyCert)
	if code, body := status(t, proxy, path, map[string]string{"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}); code != http.StatusOK {
		t.Errorf("as the front proxy for an admin: %d, want 200\n%s", code, body)
	}
	if code, _ := status(t, proxy, path, map[string]string{"X-Remote-User": unique("stranger-"), "X-Remote-Group": "system:authenticated"}); code != http.StatusForbidden {
		t.Errorf("as the front proxy for a user without rights: %d, want 403", code)
	}
}

func status(t *testing.T, c *http.Client, url string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxFor(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	return resp.StatusCode, string(b)
}
