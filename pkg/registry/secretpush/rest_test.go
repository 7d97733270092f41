package secretpush

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/warning"
	"k8s.io/client-go/tools/cache"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// canary is a pushed value: no answer, error or warning may carry it.
const canary = "p4ss-canary-that-must-not-show"

// pusher records what it was asked and answers with results or err.
type pusher struct {
	calls   int
	ps      *configv1alpha1.PushSecret
	spec    externalsecrets.SecretPushSpec
	dryRun  bool
	results []externalsecrets.SecretPushResult
	err     error
}

func (p *pusher) Push(_ context.Context, ps *configv1alpha1.PushSecret, spec externalsecrets.SecretPushSpec, dryRun bool) ([]externalsecrets.SecretPushResult, error) {
	p.calls++
	p.ps, p.spec, p.dryRun = ps, spec, dryRun
	return p.results, p.err
}

func pushSecret(ns, name string) *configv1alpha1.PushSecret {
	return &configv1alpha1.PushSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: "ps-uid"}}
}

// newREST serves the informer's PushSecrets, and live ones the informer
// has not seen yet.
func newREST(t *testing.T, p *pusher, informer []*configv1alpha1.PushSecret, liveOnly ...*configv1alpha1.PushSecret) *REST {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, ps := range informer {
		if err := idx.Add(ps); err != nil {
			t.Fatal(err)
		}
	}
	client := fake.NewSimpleClientset()
	for _, ps := range append(informer, liveOnly...) {
		if _, err := client.ConfigV1alpha1().PushSecrets(ps.Namespace).Create(context.Background(), ps, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return NewREST(configlisters.NewPushSecretLister(idx), client.ConfigV1alpha1(), p)
}

func inNamespace(ns string) context.Context {
	return genericapirequest.WithNamespace(genericapirequest.NewContext(), ns)
}

func request(name string) *externalsecrets.SecretPush {
	return &externalsecrets.SecretPush{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       externalsecrets.SecretPushSpec{Action: externalsecrets.SecretPushActionPush, Data: map[string][]byte{"password": []byte(canary)}},
	}
}

// noCanary fails the test if err's message carries the pushed value.
func noCanary(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), canary) {
		t.Errorf("%s: the error carries the pushed value: %v", what, err)
	}
}

// TestCreatePushes: the PushSecret named is handed to the pusher with the
// request's values, and the answer has the results but not the values.
func TestCreatePushes(t *testing.T) {
	p := &pusher{results: []externalsecrets.SecretPushResult{{
		StoreRef: externalsecrets.StoreRef{Kind: "SecretStore", Name: "vault"}, SecretKey: "password", RemoteKey: "ci/app", Result: "Pushed",
	}}}
	r := newREST(t, p, []*configv1alpha1.PushSecret{pushSecret("app", "ci")})

	obj, err := r.Create(inNamespace("app"), request("ci"), nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.calls != 1 || p.ps.Name != "ci" || p.ps.Namespace != "app" || p.dryRun || string(p.spec.Data["password"]) != canary {
		t.Errorf("pusher asked %d times for %v (dry run %v) with keys %d", p.calls, p.ps, p.dryRun, len(p.spec.Data))
	}
	sp := obj.(*externalsecrets.SecretPush)
	if sp.Name != "ci" || sp.Namespace != "app" || sp.Spec.Action != externalsecrets.SecretPushActionPush || sp.CreationTimestamp.IsZero() {
		t.Errorf("answer %+v", sp.ObjectMeta)
	}
	if len(sp.Spec.Data) != 0 {
		t.Errorf("the answer carries the pushed data (%d keys)", len(sp.Spec.Data))
	}
	if len(sp.Status.Results) != 1 || sp.Status.Results[0].Result != "Pushed" {
		t.Errorf("results %+v", sp.Status.Results)
	}
}

// TestCreateReadsALivePushSecret: a PushSecret created a moment ago, not
// yet in the informer, is read from kube-apiserver.
func TestCreateReadsALivePushSecret(t *testing.T) {
	p := &pusher{}
	r := newREST(t, p, nil, pushSecret("app", "fresh"))
	if _, err := r.Create(inNamespace("app"), request("fresh"), nil, &metav1.CreateOptions{}); err != nil {
		t.Fatalf("a PushSecret the informer has not seen: %v", err)
	}
	if p.calls != 1 || p.ps.Name != "fresh" {
		t.Errorf("pusher asked %d times for %v", p.calls, p.ps)
	}
}

// TestCreateDryRun: a dry run is passed to the pusher, which writes
// nothing, and is answered like a real push.
func TestCreateDryRun(t *testing.T) {
	p := &pusher{results: []externalsecrets.SecretPushResult{{RemoteKey: "ci/app", Result: "Pushed"}}}
	r := newREST(t, p, []*configv1alpha1.PushSecret{pushSecret("app", "ci")})
	obj, err := r.Create(inNamespace("app"), request("ci"), nil, &metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if p.calls != 1 || !p.dryRun {
		t.Errorf("pusher asked %d times, dry run %v; want once, as a dry run", p.calls, p.dryRun)
	}
	if res := obj.(*externalsecrets.SecretPush).Status.Results; len(res) != 1 {
		t.Errorf("results %+v", res)
	}
}

// TestCreateRefusesBeforePushing: a request that cannot be served is
// answered with a typed error, and the pusher is never asked.
func TestCreateRefusesBeforePushing(t *testing.T) {
	refuse := func(context.Context, runtime.Object) error {
		return apierrors.NewForbidden(resource, "ci", errors.New("admission says no"))
	}
	for _, c := range []struct {
		name     string
		ctx      context.Context
		req      *externalsecrets.SecretPush
		validate func(context.Context, runtime.Object) error
		check    func(error) bool
		says     string
	}{
		{"no namespace", genericapirequest.NewContext(), request("ci"), nil, apierrors.IsBadRequest, "name a namespace"},
		{"no name", inNamespace("app"), request(""), nil, apierrors.IsInvalid, "metadata.name must name the PushSecret"},
		{"validation refuses", inNamespace("app"), request("ci"), refuse, apierrors.IsForbidden, "admission says no"},
		{"no such PushSecret", inNamespace("app"), request("missing"), nil, apierrors.IsNotFound, `there is no PushSecret "missing" in namespace "app"`},
		{"another namespace's PushSecret", inNamespace("other"), request("ci"), nil, apierrors.IsNotFound, `in namespace "other"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := &pusher{}
			r := newREST(t, p, []*configv1alpha1.PushSecret{pushSecret("app", "ci")})
			_, err := r.Create(c.ctx, c.req, c.validate, &metav1.CreateOptions{})
			if !c.check(err) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("got %v, want an error saying %q", err, c.says)
			}
			noCanary(t, c.name, err)
			if p.calls != 0 {
				t.Errorf("the pusher was asked %d times", p.calls)
			}
		})
	}
}

// TestCreateMapsPushErrors: a provider error from the pusher becomes the
// API error of its reason, named after the PushSecret; any other error is
// an internal error that says nothing of its cause.
func TestCreateMapsPushErrors(t *testing.T) {
	for _, c := range []struct {
		err   error
		check func(error) bool
		says  string
	}{
		{providers.Errorf(providers.NotFound, "SecretStore %q does not exist", "vault"), apierrors.IsNotFound, `PushSecret app/ci: SecretStore "vault" does not exist`},
		{providers.Errorf(providers.Forbidden, "SecretStore vault is read-only"), apierrors.IsForbidden, "PushSecret app/ci: SecretStore vault is read-only"},
		{providers.Errorf(providers.Invalid, "no data[].match for key %q", "x"), apierrors.IsInvalid, `PushSecret app/ci: no data[].match for key "x"`},
		{providers.Errorf(providers.Conflict, "written meanwhile"), apierrors.IsConflict, "PushSecret app/ci: written meanwhile"},
		{&providers.Error{Reason: providers.Throttled, Message: "over its share", RetryAfter: 3 * time.Second}, apierrors.IsTooManyRequests, "over its share"},
		{providers.Errorf(providers.Unavailable, "vault is down"), apierrors.IsServiceUnavailable, "PushSecret app/ci: vault is down"},
		{fmt.Errorf("a bug quoting %s", canary), apierrors.IsInternalError, "unexpected error"},
	} {
		p := &pusher{err: c.err}
		r := newREST(t, p, []*configv1alpha1.PushSecret{pushSecret("app", "ci")})
		_, err := r.Create(inNamespace("app"), request("ci"), nil, &metav1.CreateOptions{})
		if !c.check(err) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("pusher error %q: got %v, want an error saying %q", c.err, err, c.says)
		}
		noCanary(t, c.err.Error(), err)
	}
	p := &pusher{err: &providers.Error{Reason: providers.Throttled, Message: "over its share", RetryAfter: 3 * time.Second}}
	r := newREST(t, p, []*configv1alpha1.PushSecret{pushSecret("app", "ci")})
	_, err := r.Create(inNamespace("app"), request("ci"), nil, &metav1.CreateOptions{})
	if s, ok := apierrors.SuggestsClientDelay(err); !ok || s != 3 {
		t.Errorf("a throttled push suggests a delay of %d (%v), want 3", s, ok)
	}
}

type warnings struct{ list []string }

func (w *warnings) AddWarning(_, text string) { w.list = append(w.list, text) }

// TestCreateWarnsOfFailedKeys: a push that fails for some remote keys is
// answered with every result, and a warning for each failed key.
func TestCreateWarnsOfFailedKeys(t *testing.T) {
	p := &pusher{results: []externalsecrets.SecretPushResult{
		{StoreRef: externalsecrets.StoreRef{Kind: "SecretStore", Name: "vault"}, RemoteKey: "ci/app", Result: "Pushed"},
		{StoreRef: externalsecrets.StoreRef{Kind: "ClusterSecretStore", Name: "aws"}, RemoteKey: "ci-app", Result: "Failed", Reason: "Forbidden", Message: "not allowed"},
	}}
	r := newREST(t, p, []*configv1alpha1.PushSecret{pushSecret("app", "ci")})
	var w warnings
	obj, err := r.Create(warning.WithWarningRecorder(inNamespace("app"), &w), request("ci"), nil, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res := obj.(*externalsecrets.SecretPush).Status.Results; len(res) != 2 {
		t.Errorf("results %+v, want both", res)
	}
	if len(w.list) != 1 || w.list[0] != "ClusterSecretStore/aws ci-app: not allowed" {
		t.Errorf("warnings %q, want one for the failed key", w.list)
	}
}
