package externalsecretvalue

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	"github.com/veil-dev/veil/pkg/providers"
)

// TestListPages: limit and continue page through every value once, in
// order, with failures left out as before, as client-go's pager expects.
func TestListPages(t *testing.T) {
	var ess []*configv1alpha1.ExternalSecret
	var want []string
	for _, ns := range []string{"a", "b"} {
		for i := range 6 {
			ess = append(ess, es(ns, fmt.Sprintf("v%02d", i), nil))
			if !(ns == "a" && i == 3) {
				want = append(want, fmt.Sprintf("%s/v%02d", ns, i))
			}
		}
	}
	r := newREST(t, resolver{fail: map[string]error{"v03": providers.Errorf(providers.NotFound, "gone")}}, ess)
	// v03 fails in namespace b too (the fake fails by name): leave it out.
	want = without(want, "b/v03")

	var got []string
	opts := &metainternalversion.ListOptions{Limit: 4}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("the continue tokens never end")
		}
		obj, err := r.List(inNamespace(""), opts)
		if err != nil {
			t.Fatal(err)
		}
		l := obj.(*externalsecrets.ExternalSecretValueList)
		if len(l.Items) > 4 {
			t.Fatalf("a page of %d items for limit 4", len(l.Items))
		}
		for _, i := range l.Items {
			got = append(got, i.Namespace+"/"+i.Name)
		}
		if l.Continue == "" {
			if l.RemainingItemCount != nil {
				t.Errorf("the last page says %d remain", *l.RemainingItemCount)
			}
			break
		}
		if l.RemainingItemCount == nil || *l.RemainingItemCount <= 0 {
			t.Errorf("a page with a continue token says none remain")
		}
		opts = &metainternalversion.ListOptions{Limit: 4, Continue: l.Continue}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("pages gave %v, want %v", got, want)
	}

	for _, bad := range []string{"not-base64!", "eyJ2IjoidjAifQ", strings.Repeat("A", 2000)} {
		if _, err := r.List(inNamespace(""), &metainternalversion.ListOptions{Limit: 4, Continue: bad}); !apierrors.IsBadRequest(err) {
			t.Errorf("continue %.20q: %v, want 400", bad, err)
		}
	}
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

// bigResolver serves 1 MiB of data for every ExternalSecret.
type bigResolver struct{}

func (bigResolver) Resolve(_ context.Context, es *configv1alpha1.ExternalSecret) (*externalsecrets.ExternalSecretValue, error) {
	return &externalsecrets.ExternalSecretValue{
		ObjectMeta: metav1.ObjectMeta{Name: es.Name, Namespace: es.Namespace},
		Data:       map[string][]byte{"k": make([]byte, 1<<20)},
	}, nil
}

// TestListIsBounded: a list never builds more than maxListBytes of values
// or maxListItems items; with a limit it pages, without one it says how to.
func TestListIsBounded(t *testing.T) {
	var ess []*configv1alpha1.ExternalSecret
	for i := range 40 {
		ess = append(ess, es("big", fmt.Sprintf("v%02d", i), nil))
	}
	r := newREST(t, resolver{}, ess)
	r.resolver = bigResolver{}
	obj, err := r.List(inNamespace("big"), &metainternalversion.ListOptions{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	l := obj.(*externalsecrets.ExternalSecretValueList)
	if n := len(l.Items); n != maxListBytes>>20-1 && n != maxListBytes>>20 {
		t.Errorf("a page of %d values of 1 MiB: want it to stop at %d MiB", n, maxListBytes>>20)
	}
	if l.Continue == "" {
		t.Error("a page cut short by its size has no continue token")
	}
	if _, err := r.List(inNamespace("big"), nil); !apierrors.IsRequestEntityTooLargeError(err) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("no limit: %v, want 413 saying to page", err)
	}

	var many []*configv1alpha1.ExternalSecret
	for i := range maxListItems + 1 {
		many = append(many, es("many", fmt.Sprintf("v%04d", i), nil))
	}
	r = newREST(t, resolver{}, many)
	if _, err := r.List(inNamespace("many"), nil); !apierrors.IsRequestEntityTooLargeError(err) {
		t.Errorf("%d items, no limit: %v, want 413", maxListItems+1, err)
	}
	obj, err = r.List(inNamespace("many"), &metainternalversion.ListOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if l := obj.(*externalsecrets.ExternalSecretValueList); len(l.Items) != maxListItems || l.Continue == "" {
		t.Errorf("limit 1000: %d items, continue %q; want %d and a token", len(l.Items), l.Continue, maxListItems)
	}
}
