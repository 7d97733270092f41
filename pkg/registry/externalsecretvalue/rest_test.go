package externalsecretvalue

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/client-go/tools/cache"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

const secretValue = "s3cr3t-value-that-must-not-show"

// resolver serves secretValue for every ExternalSecret, except those
// named in fail.
type resolver struct{ fail map[string]error }

func (r resolver) Resolve(_ context.Context, es *configv1alpha1.ExternalSecret) (*externalsecrets.ExternalSecretValue, error) {
	if err := r.fail[es.Name]; err != nil {
		return nil, err
	}
	return &externalsecrets.ExternalSecretValue{
		ObjectMeta: metav1.ObjectMeta{Name: es.Name, Namespace: es.Namespace, UID: es.UID, ResourceVersion: es.ResourceVersion, Labels: es.Labels, CreationTimestamp: es.CreationTimestamp},
		Type:       "Opaque",
		Data:       map[string][]byte{"password": []byte(secretValue), "user": []byte("app")},
		Source:     externalsecrets.ValueSource{StoreRef: externalsecrets.StoreRef{Kind: "SecretStore", Name: "vault"}, FetchTime: metav1.Now()},
	}, nil
}

func es(ns, name string, lbls map[string]string) *configv1alpha1.ExternalSecret {
	return &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbls, CreationTimestamp: metav1.Now()}}
}

// newREST serves the informer's ExternalSecrets, and live ones the
// informer has not seen yet.
func newREST(t *testing.T, r resolver, informer []*configv1alpha1.ExternalSecret, liveOnly ...*configv1alpha1.ExternalSecret) *REST {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, e := range informer {
		if err := idx.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	client := fake.NewSimpleClientset()
	for _, e := range append(informer, liveOnly...) {
		if _, err := client.ConfigV1alpha1().ExternalSecrets(e.Namespace).Create(context.Background(), e, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return NewREST(configlisters.NewExternalSecretLister(idx), client.ConfigV1alpha1(), r, Options{})
}

func inNamespace(ns string) context.Context {
	return genericapirequest.WithNamespace(genericapirequest.NewContext(), ns)
}

func TestGet(t *testing.T) {
	r := newREST(t, resolver{}, []*configv1alpha1.ExternalSecret{es("app", "db", nil)}, es("app", "fresh", nil))

	obj, err := r.Get(inNamespace("app"), "db", &metav1.GetOptions{})
	if err != nil || string(obj.(*externalsecrets.ExternalSecretValue).Data["password"]) != secretValue {
		t.Fatalf("get db: %v, %v", obj, err)
	}
	// Created a moment ago: not in the informer yet, still served.
	if _, err := r.Get(inNamespace("app"), "fresh", &metav1.GetOptions{}); err != nil {
		t.Errorf("get an ExternalSecret the informer has not seen: %v", err)
	}
	_, err = r.Get(inNamespace("app"), "nope", &metav1.GetOptions{})
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `there is no ExternalSecret "nope" in namespace "app"`) {
		t.Errorf("get nope: %v", err)
	}
	if _, err := r.Get(inNamespace(""), "db", &metav1.GetOptions{}); !apierrors.IsBadRequest(err) {
		t.Errorf("get without namespace: %v, want 400", err)
	}
}

func TestGetMapsProviderErrors(t *testing.T) {
	cases := map[string]func(error) bool{
		"notfound":    apierrors.IsNotFound,
		"forbidden":   apierrors.IsForbidden,
		"invalid":     apierrors.IsInvalid,
		"unavailable": apierrors.IsServiceUnavailable,
		"internal":    apierrors.IsInternalError,
	}
	fail := map[string]error{
		"notfound":    providers.Errorf(providers.NotFound, "key %q does not exist", "k"),
		"forbidden":   providers.Errorf(providers.Forbidden, "no"),
		"invalid":     providers.Errorf(providers.Invalid, "bad"),
		"unavailable": providers.Errorf(providers.Unavailable, "down"),
		// An error that is not a provider error is not shown to the user.
		"internal": fmt.Errorf("boom with %s", secretValue),
	}
	var ess []*configv1alpha1.ExternalSecret
	for name := range cases {
		ess = append(ess, es("app", name, nil))
	}
	r := newREST(t, resolver{fail: fail}, ess)
	for name, is := range cases {
		_, err := r.Get(inNamespace("app"), name, &metav1.GetOptions{})
		if !is(err) {
			t.Errorf("%s: %v", name, err)
		}
		if err != nil && strings.Contains(err.Error(), secretValue) {
			t.Errorf("%s: the API error carries the value: %v", name, err)
		}
	}
}

type recorder struct{ warnings []string }

func (r *recorder) AddWarning(_, text string) { r.warnings = append(r.warnings, text) }

func TestListSelectorsAndWarnings(t *testing.T) {
	ess := []*configv1alpha1.ExternalSecret{
		es("app", "a", map[string]string{"tier": "db"}),
		es("app", "b", map[string]string{"tier": "web"}),
		es("app", "broken", map[string]string{"tier": "db"}),
		es("other", "c", map[string]string{"tier": "db"}),
	}
	r := newREST(t, resolver{fail: map[string]error{"broken": providers.Errorf(providers.Forbidden, "ClusterSecretStore %q has no spec.conditions", "x")}}, ess)

	list := func(ns string, opts *metainternalversion.ListOptions) ([]string, []string) {
		t.Helper()
		rec := &recorder{}
		ctx := warning.WithWarningRecorder(inNamespace(ns), rec)
		obj, err := r.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, i := range obj.(*externalsecrets.ExternalSecretValueList).Items {
			names = append(names, i.Namespace+"/"+i.Name)
		}
		return names, rec.warnings
	}

	names, warnings := list("app", nil)
	if strings.Join(names, ",") != "app/a,app/b" {
		t.Errorf("list app: %v", names)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "externalsecretvalue app/broken left out") || !strings.Contains(warnings[0], "spec.conditions") {
		t.Errorf("warnings: %q", warnings)
	}
	names, _ = list("", &metainternalversion.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{"tier": "db"})})
	if strings.Join(names, ",") != "app/a,other/c" {
		t.Errorf("all namespaces, tier=db: %v", names)
	}
	names, _ = list("", &metainternalversion.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.namespace", "other")})
	if strings.Join(names, ",") != "other/c" {
		t.Errorf("metadata.namespace=other: %v", names)
	}
	if _, err := r.List(inNamespace("app"), &metainternalversion.ListOptions{FieldSelector: fields.OneTermEqualSelector("type", "x")}); !apierrors.IsBadRequest(err) {
		t.Errorf("unsupported field selector: %v, want 400", err)
	}

	// spec.target.creationPolicy, as kube-apiserver evaluates the CRD's
	// selectable field: "" without a target.
	ess[0].Spec.Target = &configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyOwner}
	ess[1].Spec.Target = &configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyNone}
	sel, err := fields.ParseSelector("spec.target.creationPolicy!=,spec.target.creationPolicy!=None")
	if err != nil {
		t.Fatal(err)
	}
	names, _ = list("", &metainternalversion.ListOptions{FieldSelector: sel})
	if strings.Join(names, ",") != "app/a" {
		t.Errorf("with a target veil-syncer writes: %v, want app/a", names)
	}
	names, _ = list("", &metainternalversion.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.target.creationPolicy", "")})
	if strings.Join(names, ",") != "other/c" {
		t.Errorf("without a target: %v, want other/c (broken is left out)", names)
	}
}

func TestTableNeverShowsAValue(t *testing.T) {
	r := newREST(t, resolver{}, []*configv1alpha1.ExternalSecret{es("app", "db", nil), es("app", "web", nil)})
	obj, err := r.List(inNamespace("app"), nil)
	if err != nil {
		t.Fatal(err)
	}
	table, err := r.ConvertToTable(context.Background(), obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	var header []string
	for _, c := range table.ColumnDefinitions {
		header = append(header, c.Name)
	}
	if strings.Join(header, " ") != "Name Store Keys Fetched Age" || table.ColumnDefinitions[0].Format != "name" {
		t.Errorf("columns: %v", table.ColumnDefinitions)
	}
	if len(table.Rows) != 2 {
		t.Fatalf("rows: %d", len(table.Rows))
	}
	for _, row := range table.Rows {
		if row.Cells[1] != "SecretStore/vault" || row.Cells[2] != int64(2) {
			t.Errorf("row %v", row.Cells)
		}
		if s := fmt.Sprint(row.Cells...); strings.Contains(s, secretValue) {
			t.Errorf("a cell shows a value: %v", row.Cells)
		}
	}
	one, err := r.Get(inNamespace("app"), "db", &metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if table, err := r.ConvertToTable(context.Background(), one, nil); err != nil || len(table.Rows) != 1 || table.Rows[0].Cells[0] != "db" {
		t.Errorf("single object table: %v, %v", table, err)
	}
}

// TestGetNotOlderThan: a get with a resourceVersion is answered from an
// ExternalSecret at least that new. When this replica's informer is
// behind (veil-syncer saw a recorded value change before it did), the
// ExternalSecret is read live, so the value cached before the change is
// not served as current.
func TestGetNotOlderThan(t *testing.T) {
	at := func(rv string) *configv1alpha1.ExternalSecret {
		e := es("app", "db", nil)
		e.ResourceVersion = rv
		return e
	}
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := idx.Add(at("5")); err != nil {
		t.Fatal(err)
	}
	client := fake.NewSimpleClientset(at("9"))
	r := NewREST(configlisters.NewExternalSecretLister(idx), client.ConfigV1alpha1(), resolver{}, Options{})
	served := func(rv string) (string, error) {
		obj, err := r.Get(inNamespace("app"), "db", &metav1.GetOptions{ResourceVersion: rv})
		if err != nil {
			return "", err
		}
		return obj.(*externalsecrets.ExternalSecretValue).ResourceVersion, nil
	}
	for rv, want := range map[string]string{"": "5", "0": "5", "4": "5", "5": "5", "6": "9", "9": "9"} {
		if got, err := served(rv); err != nil || got != want {
			t.Errorf("get at resourceVersion %q: served the ExternalSecret at %q (%v), want %q", rv, got, err, want)
		}
	}
	if _, err := served("12"); !storage.IsTooLargeResourceVersion(err) {
		t.Errorf("get at a version newer than the ExternalSecret's: %v, want Too large resource version", err)
	}
	if _, err := served("abc"); !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "is not a resource version") {
		t.Errorf("get at a resourceVersion that is not one: %v, want 400", err)
	}
}
