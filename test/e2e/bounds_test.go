package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestListsPage: through the aggregator, kubectl's chunked lists and
// client-go's limit/continue page through every value exactly once.
func TestListsPage(t *testing.T) {
	ns := newNamespace(t, nil)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})
	var want []string
	for i := range 7 {
		name := fmt.Sprintf("es-%d", i)
		createExternalSecret(t, ns, name, storeRef("store"), nil, dataRef("k", "k", ""))
		want = append(want, name)
	}
	values := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns)
	var got []string
	eventually(t, func() error {
		got = got[:0]
		opts := metav1.ListOptions{Limit: 3}
		for pages := 0; pages < 10; pages++ {
			l, err := values.List(ctxFor(t), opts)
			if err != nil {
				return err
			}
			if len(l.Items) > 3 {
				t.Fatalf("limit 3 gave a page of %d", len(l.Items))
			}
			for _, v := range l.Items {
				got = append(got, v.Name)
			}
			if l.Continue == "" {
				break
			}
			opts.Continue = l.Continue
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("pages gave %v, want %v", got, want)
		}
		return nil
	})

	out := kubectl(t, "", "get", "externalsecretvalues", "-n", ns, "--chunk-size=2", "-o", "name")
	lines := strings.Fields(out)
	sort.Strings(lines)
	if len(lines) != 7 || lines[0] != "externalsecretvalue.externalsecrets.veil.dev/es-0" {
		t.Errorf("kubectl --chunk-size=2 listed %v", lines)
	}
	if _, err := values.List(ctxFor(t), metav1.ListOptions{Limit: 3, Continue: "forged"}); !apierrors.IsBadRequest(err) {
		t.Errorf("a forged continue token: %v, want 400", err)
	}
}

// TestValuesAreBoundedBeforeEncoding: an ExternalSecret whose values add
// up to more than a Secret can hold is refused with 422 naming the bound,
// whether it is read alone or in a list, rather than encoded for every
// reader.
func TestValuesAreBoundedBeforeEncoding(t *testing.T) {
	ns := newNamespace(t, nil)
	big := strings.Repeat("x", 300<<10)
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "big", Value: big})
	var data []configv1alpha1.ExternalSecretData
	for i := range 4 {
		data = append(data, dataRef(fmt.Sprintf("k%d", i), "big", ""))
	}
	createExternalSecret(t, ns, "huge", storeRef("store"), nil, data...)
	createExternalSecret(t, ns, "fine", storeRef("store"), nil, data[0])
	values := cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns)
	eventually(t, func() error {
		_, err := values.Get(ctxFor(t), "huge", metav1.GetOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "1 MiB") {
			return fmt.Errorf("get: %v, want 422 naming the 1 MiB bound", err)
		}
		return nil
	})
	l, err := values.List(ctxFor(t), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 || l.Items[0].Name != "fine" || len(l.Items[0].Data["k0"]) != len(big) {
		t.Errorf("the list should hold only fine, whole; it holds %d items", len(l.Items))
	}
}
