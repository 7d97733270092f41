package syncer

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	kubeinformers "k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	configinformers "github.com/veil-dev/veil/pkg/generated/informers/externalversions"
)

// fanOutFixture is a ClusterExternalSecret controller over fake clients,
// with the statuses it applied.
type fanOutFixture struct {
	c        *fanOutController[*ces, *es]
	veil     *fake.Clientset
	statuses []configv1alpha1.ClusterSecretFanOutStatus
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func newFanOutFixture(t *testing.T, namespaces []runtime.Object, objs ...runtime.Object) *fanOutFixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	veil := fake.NewSimpleClientset(objs...)
	kube := kubefake.NewSimpleClientset(namespaces...)
	vi := configinformers.NewSharedInformerFactory(veil, 0)
	ki := kubeinformers.NewSharedInformerFactory(kube, 0)
	v1 := vi.Config().V1alpha1()
	f := &fanOutFixture{veil: veil}
	k := clusterExternalSecretKind(veil, v1.ClusterExternalSecrets(), v1.ExternalSecrets())
	k.applyStatus = func(_ context.Context, _ string, body []byte, _ metav1.PatchOptions) error {
		var applied struct {
			Status configv1alpha1.ClusterSecretFanOutStatus `json:"status"`
		}
		if err := json.Unmarshal(body, &applied); err != nil {
			t.Fatal(err)
		}
		f.statuses = append(f.statuses, applied.Status)
		return nil
	}
	c, err := newFanOutController(k, v1.ClusterExternalSecrets().Informer(), v1.ExternalSecrets().Informer(),
		ki.Core().V1().Namespaces().Informer(), ki.Core().V1().Namespaces().Lister(), record.NewFakeRecorder(100), sets.New("kube-system"))
	if err != nil {
		t.Fatal(err)
	}
	vi.Start(ctx.Done())
	ki.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		t.Fatal("caches did not sync")
	}
	f.c = c
	return f
}

func testCES(selector map[string]string, names ...string) *ces {
	return &ces{
		ObjectMeta: metav1.ObjectMeta{Name: "shared", UID: "uid-1", Generation: 3},
		Spec: configv1alpha1.ClusterExternalSecretSpec{
			ExternalSecretName:     "app",
			ExternalSecretMetadata: configv1alpha1.ClusterSecretMetadata{Labels: map[string]string{"team": "a", configv1alpha1.ClusterExternalSecretLabel: "forged"}},
			NamespaceSelection: configv1alpha1.NamespaceSelection{
				NamespaceSelectors: []*metav1.LabelSelector{{MatchLabels: selector}},
				Namespaces:         names,
			},
			ExternalSecretSpec: configv1alpha1.ExternalSecretSpec{
				SecretStoreRef: &configv1alpha1.SecretStoreRef{Name: "store", Kind: configv1alpha1.SecretStoreKind},
				Data:           []configv1alpha1.ExternalSecretData{{SecretKey: "k", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "remote"}}},
			},
		},
	}
}

// child is an ExternalSecret of the ClusterExternalSecret "shared" with this UID.
func child(ns, name string, uid string) *es {
	return &es{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name,
		Labels:          map[string]string{configv1alpha1.ClusterExternalSecretLabel: "shared"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "config.veil.dev/v1alpha1", Kind: "ClusterExternalSecret", Name: "shared", UID: types.UID("uid-" + uid), Controller: ptr.To(true)}},
	}}
}

func (f *fanOutFixture) externalSecrets(t *testing.T) []string {
	t.Helper()
	l, err := f.veil.ConfigV1alpha1().ExternalSecrets("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range l.Items {
		out = append(out, e.Namespace+"/"+e.Name)
	}
	slices.Sort(out)
	return out
}

// TestFanOutProvisions: the ExternalSecret is created, with the
// ClusterExternalSecret's spec, labels (its own label winning) and a
// controller owner reference, in the namespaces a selector or the list
// names; not in others, nor in an excluded or terminating one; one of the
// same name that is not its own is reported and left alone; and its
// children in namespaces no longer selected, or under another name, are
// deleted, while someone else's are not.
func TestFanOutProvisions(t *testing.T) {
	terminating := namespace("going", map[string]string{"env": "prod"})
	terminating.Status.Phase = corev1.NamespaceTerminating
	nss := []runtime.Object{
		namespace("a", map[string]string{"env": "prod"}), namespace("b", map[string]string{"env": "prod"}),
		namespace("c", map[string]string{"env": "dev"}), namespace("named", nil), terminating,
		namespace("kube-system", map[string]string{"env": "prod"}), namespace("taken", map[string]string{"env": "prod"}),
		namespace("left", nil),
	}
	theirs := &es{ObjectMeta: metav1.ObjectMeta{Namespace: "taken", Name: "app"}}
	// Not the parent's (no controller reference), though labelled.
	labelledOnly := &es{ObjectMeta: metav1.ObjectMeta{Namespace: "left", Name: "mine",
		Labels: map[string]string{configv1alpha1.ClusterExternalSecretLabel: "shared"}}}
	p := testCES(map[string]string{"env": "prod"}, "named")
	f := newFanOutFixture(t, nss, p, theirs, child("left", "app", "1"), child("a", "old-name", "1"), labelledOnly)

	after, err := f.c.sync(context.Background(), "shared")
	if err != nil {
		t.Fatal(err)
	}
	if after != defaultFanOutRefresh {
		t.Errorf("requeued after %v, want %v", after, defaultFanOutRefresh)
	}
	want := []string{"a/app", "b/app", "left/mine", "named/app", "taken/app"}
	if got := f.externalSecrets(t); !slices.Equal(got, want) {
		t.Errorf("ExternalSecrets %v, want %v", got, want)
	}
	got, err := f.veil.ConfigV1alpha1().ExternalSecrets("a").Get(context.Background(), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[configv1alpha1.ClusterExternalSecretLabel] != "shared" || got.Labels["team"] != "a" {
		t.Errorf("labels %v, want the spec's with veil-syncer's own label winning", got.Labels)
	}
	if ref := metav1.GetControllerOf(got); ref == nil || ref.UID != "uid-1" || ref.Kind != "ClusterExternalSecret" {
		t.Errorf("controller %+v, want the ClusterExternalSecret", ref)
	}
	if got.Spec.SecretStoreRef.Name != "store" || len(got.Spec.Data) != 1 {
		t.Errorf("spec %+v, want the ClusterExternalSecret's", got.Spec)
	}
	if theirs, _ := f.veil.ConfigV1alpha1().ExternalSecrets("taken").Get(context.Background(), "app", metav1.GetOptions{}); len(theirs.OwnerReferences) != 0 || theirs.Spec.SecretStoreRef != nil {
		t.Errorf("someone else's ExternalSecret was changed: %+v", theirs)
	}

	st := f.statuses[len(f.statuses)-1]
	if !slices.Equal(st.ProvisionedNamespaces, []string{"a", "b", "named"}) {
		t.Errorf("provisioned %v", st.ProvisionedNamespaces)
	}
	failed := map[string]string{}
	for _, x := range st.FailedNamespaces {
		failed[x.Namespace] = x.Reason
	}
	if len(failed) != 2 || !strings.Contains(failed["taken"], "already exists") || !strings.Contains(failed["kube-system"], "never writes") {
		t.Errorf("failed %v, want taken (already exists) and kube-system (excluded)", failed)
	}
	ready := apimeta.FindStatusCondition(st.Conditions, configv1alpha1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != ReasonNamespacesFailed || ready.ObservedGeneration != 3 {
		t.Errorf("Ready %+v, want False, %s, generation 3", ready, ReasonNamespacesFailed)
	}
}

// TestFanOutTooManyNamespaces: past the bound, the first namespaces by
// name are provisioned and Ready says how many were selected.
func TestFanOutTooManyNamespaces(t *testing.T) {
	var nss []runtime.Object
	for _, n := range []string{"d", "a", "c", "b"} {
		nss = append(nss, namespace(n, map[string]string{"all": "yes"}))
	}
	f := newFanOutFixture(t, nss, testCES(map[string]string{"all": "yes"}))
	f.c.max = 2
	if _, err := f.c.sync(context.Background(), "shared"); err != nil {
		t.Fatal(err)
	}
	if got := f.externalSecrets(t); !slices.Equal(got, []string{"a/app", "b/app"}) {
		t.Errorf("ExternalSecrets %v, want a and b only", got)
	}
	ready := apimeta.FindStatusCondition(f.statuses[len(f.statuses)-1].Conditions, configv1alpha1.ConditionReady)
	if ready == nil || ready.Reason != ReasonTooManyNamespaces || !strings.Contains(ready.Message, "4 namespaces are selected") {
		t.Errorf("Ready %+v, want %s naming 4 namespaces", ready, ReasonTooManyNamespaces)
	}
}

// TestFanOutUpdatesAndReleases: a child that drifted from the spec is put
// back, one of an earlier parent of the same name (another UID) is
// replaced, and when the parent is gone every child of its name goes.
func TestFanOutUpdatesAndReleases(t *testing.T) {
	nss := []runtime.Object{namespace("a", map[string]string{"env": "prod"}), namespace("b", map[string]string{"env": "prod"})}
	drifted := child("a", "app", "1")
	drifted.Spec.SecretStoreRef = &configv1alpha1.SecretStoreRef{Name: "elsewhere", Kind: configv1alpha1.SecretStoreKind}
	stale := child("b", "app", "0")
	p := testCES(map[string]string{"env": "prod"})
	f := newFanOutFixture(t, nss, p, drifted, stale)

	ctx := context.Background()
	if _, err := f.c.sync(ctx, "shared"); err == nil {
		t.Error("replacing the child of an earlier parent: no error, want one to come back")
	}
	got, err := f.veil.ConfigV1alpha1().ExternalSecrets("a").Get(ctx, "app", metav1.GetOptions{})
	if err != nil || got.Spec.SecretStoreRef.Name != "store" {
		t.Errorf("drifted child: %v, store %q, want put back to store", err, got.Spec.SecretStoreRef.Name)
	}
	if got := f.externalSecrets(t); !slices.Equal(got, []string{"a/app"}) {
		t.Errorf("ExternalSecrets %v, want the stale one in b deleted", got)
	}

	// Gone: everything of its name is released.
	f2 := newFanOutFixture(t, nss, child("a", "app", "1"), child("b", "app", "7"))
	if _, err := f2.c.sync(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	if got := f2.externalSecrets(t); len(got) != 0 {
		t.Errorf("ExternalSecrets %v left after their ClusterExternalSecret went", got)
	}
}
