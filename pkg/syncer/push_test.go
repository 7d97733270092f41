package syncer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	veilfake "github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
)

const pushCanary = "pw-canary-0xdeadbeef"

// pushFixture is a PushController on fake clientsets. SecretPushes are
// answered by answer, which sees each request.
type pushFixture struct {
	c        *PushController
	veil     *veilfake.Clientset
	kube     *fake.Clientset
	clock    *clocktesting.FakePassiveClock
	recorder *record.FakeRecorder
	pushes   []*esv1alpha1.SecretPush
	answer   func(*esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error)
	// mayPush answers SelfSubjectAccessReviews.
	mayPush bool
}

func newPushFixture(t *testing.T, ps *configv1alpha1.PushSecret, objs ...runtime.Object) *pushFixture {
	t.Helper()
	f := &pushFixture{
		veil:     newVeilClientset(ps),
		kube:     fake.NewClientset(objs...),
		clock:    clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		recorder: record.NewFakeRecorder(100),
		mayPush:  true,
	}
	f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
		return answerAll(ps, sp, "Pushed"), nil
	}
	f.veil.PrependReactor("create", "secretpushes", func(a clienttesting.Action) (bool, runtime.Object, error) {
		sp := a.(clienttesting.CreateAction).GetObject().(*esv1alpha1.SecretPush).DeepCopy()
		f.pushes = append(f.pushes, sp)
		out, err := f.answer(sp)
		return true, out, err
	})
	f.kube.PrependReactor("create", "selfsubjectaccessreviews", func(a clienttesting.Action) (bool, runtime.Object, error) {
		r := a.(clienttesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		ra := r.Spec.ResourceAttributes
		r.Status.Allowed = f.mayPush && ra.Verb == "create" && ra.Resource == "secretpushes" && ra.Group == "externalsecrets.veil.dev" && ra.Namespace == ps.Namespace
		return true, r, nil
	})
	f.c = &PushController{
		skeleton: newPushSecretSkeleton(f.veil, f.recorder),
		veil:     f.veil, secrets: f.kube.CoreV1(), namespaces: f.kube.CoreV1(), reviews: f.kube.AuthorizationV1(),
		key: []byte(strings.Repeat("k", 32)),
	}
	f.c.clock = f.clock
	return f
}

// answerAll answers a SecretPush with one result for every store and key.
func answerAll(ps *configv1alpha1.PushSecret, sp *esv1alpha1.SecretPush, result string) *esv1alpha1.SecretPush {
	out := &esv1alpha1.SecretPush{ObjectMeta: sp.ObjectMeta, Spec: esv1alpha1.SecretPushSpec{Action: sp.Spec.Action}}
	for _, s := range ps.Spec.SecretStoreRefs {
		for _, d := range ps.Spec.Data {
			out.Status.Results = append(out.Status.Results, esv1alpha1.SecretPushResult{
				StoreRef: esv1alpha1.StoreRef{Kind: string(s.Kind), Name: s.Name}, SecretKey: d.Match.SecretKey,
				RemoteKey: d.Match.RemoteRef.RemoteKey, Property: d.Match.RemoteRef.Property, Result: result,
			})
		}
	}
	return out
}

func testPushSecret(policy configv1alpha1.PushSecretDeletionPolicy) *configv1alpha1.PushSecret {
	return &configv1alpha1.PushSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "team", UID: "ps-uid", Generation: 2, ResourceVersion: "10"},
		Spec: configv1alpha1.PushSecretSpec{
			SecretStoreRefs: []configv1alpha1.SecretStoreRef{{Kind: configv1alpha1.SecretStoreKind, Name: "vault"}},
			DeletionPolicy:  policy,
			Selector:        configv1alpha1.PushSecretSelector{Secret: configv1alpha1.PushSecretSecret{Name: "src"}},
			Data: []configv1alpha1.PushSecretData{
				{Match: configv1alpha1.PushSecretMatch{SecretKey: "password", RemoteRef: configv1alpha1.PushSecretRemoteRef{RemoteKey: "ci/app", Property: "password"}}},
				{Match: configv1alpha1.PushSecretMatch{SecretKey: "token", RemoteRef: configv1alpha1.PushSecretRemoteRef{RemoteKey: "ci/token"}}},
			},
		},
	}
}

func sourceSecret(rv string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "src", Namespace: "team", ResourceVersion: rv}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

// sync runs one sync of the PushSecret as the controller's worker would:
// with the status this process last wrote.
func (f *pushFixture) sync(t *testing.T) (result, *configv1alpha1.PushSecret) {
	t.Helper()
	live, err := f.veil.ConfigV1alpha1().PushSecrets("team").Get(context.Background(), "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := f.c.sync(context.Background(), f.c.current(live))
	after, err := f.veil.ConfigV1alpha1().PushSecrets("team").Get(context.Background(), "app", metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return res, after
}

func (f *pushFixture) setSource(t *testing.T, s *corev1.Secret) {
	t.Helper()
	if _, err := f.kube.CoreV1().Secrets("team").Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// events drains the recorded Events, failing on any that carries the canary.
func (f *pushFixture) events(t *testing.T) []string {
	t.Helper()
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			if strings.Contains(e, pushCanary) {
				t.Errorf("an Event carries the value: %s", e)
			}
			out = append(out, e)
		default:
			return out
		}
	}
}

func ready(t *testing.T, ps *configv1alpha1.PushSecret) *metav1.Condition {
	t.Helper()
	c := apimeta.FindStatusCondition(ps.Status.Conditions, configv1alpha1.ConditionReady)
	if c == nil {
		t.Fatal("no Ready condition")
	}
	if c.ObservedGeneration != ps.Generation {
		t.Errorf("Ready is for generation %d, want %d", c.ObservedGeneration, ps.Generation)
	}
	if strings.Contains(c.Message, pushCanary) {
		t.Errorf("the Ready message carries the value: %s", c.Message)
	}
	return c
}

func TestPushSyncPushesOnlyWhatChanged(t *testing.T) {
	ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyNone)
	ps.Spec.RefreshInterval = &metav1.Duration{Duration: time.Hour}
	f := newPushFixture(t, ps, sourceSecret("5", map[string]string{"password": pushCanary, "token": "t1", "unmapped": "never sent"}))

	res, got := f.sync(t)
	if res.result != resultPushed || res.retry {
		t.Fatalf("first sync: %+v", res)
	}
	if len(f.pushes) != 1 {
		t.Fatalf("%d SecretPushes, want 1", len(f.pushes))
	}
	sp := f.pushes[0]
	if sp.Name != "app" || sp.Spec.Action != esv1alpha1.SecretPushActionPush || len(sp.Spec.Data) != 2 ||
		string(sp.Spec.Data["password"]) != pushCanary || string(sp.Spec.Data["token"]) != "t1" {
		t.Errorf("SecretPush %s action %s with keys %d: want exactly the mapped keys", sp.Name, sp.Spec.Action, len(sp.Spec.Data))
	}
	if c := ready(t, got); c.Status != metav1.ConditionTrue || c.Reason != configv1alpha1.ReasonSynced {
		t.Errorf("Ready = %s %s: %s", c.Status, c.Reason, c.Message)
	}
	st := got.Status
	if st.SyncedResourceVersion != "2-5" || st.RefreshTime == nil ||
		st.DataHMAC != pushHMAC(f.c.key, ps, map[string][]byte{"password": []byte(pushCanary), "token": []byte("t1")}) {
		t.Errorf("status: syncedResourceVersion %q, refreshTime %v, dataHMAC %q", st.SyncedResourceVersion, st.RefreshTime, st.DataHMAC)
	}
	entry := st.SyncedPushSecrets["SecretStore/vault"]["ci/app#password"]
	if entry.Result != "Pushed" || entry.PushTime == nil || entry.Match.SecretKey != "password" || entry.Match.RemoteRef.Property != "password" {
		t.Errorf("syncedPushSecrets = %+v", st.SyncedPushSecrets)
	}
	if ev := f.events(t); len(ev) != 1 || !strings.HasPrefix(ev[0], "Normal Pushed Pushed Secret src (resourceVersion 5") {
		t.Errorf("events %q", ev)
	}

	// Triggered again (a label of the source changed): same data, no refresh
	// due, so no SecretPush — only the new resourceVersion is recorded.
	f.setSource(t, sourceSecret("6", map[string]string{"password": pushCanary, "token": "t1", "unmapped": "other"}))
	if res, got = f.sync(t); res.result != resultUnchanged || len(f.pushes) != 1 {
		t.Fatalf("unchanged data: %+v, %d SecretPushes", res, len(f.pushes))
	}
	if got.Status.SyncedResourceVersion != "2-6" {
		t.Errorf("syncedResourceVersion %q, want 2-6", got.Status.SyncedResourceVersion)
	}

	// The refresh is due: a SecretPush, which finds everything in place.
	f.clock.SetTime(f.clock.Now().Add(time.Hour))
	f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
		return answerAll(ps, sp, "Unchanged"), nil
	}
	if res, got = f.sync(t); res.result != resultRefreshed || len(f.pushes) != 2 {
		t.Fatalf("refresh: %+v, %d SecretPushes", res, len(f.pushes))
	}
	if e := got.Status.SyncedPushSecrets["SecretStore/vault"]["ci/token"]; e.Result != "Unchanged" || e.PushTime == nil || !e.PushTime.Time.Before(f.clock.Now()) {
		t.Errorf("an unchanged key keeps the time it was pushed: %+v", e)
	}
	if ev := f.events(t); len(ev) != 0 {
		t.Errorf("a refresh that wrote nothing recorded %q", ev)
	}

	// New data is pushed at once.
	f.setSource(t, sourceSecret("7", map[string]string{"password": "new", "token": "t1"}))
	if res, _ = f.sync(t); res.result != resultRefreshed || len(f.pushes) != 3 || string(f.pushes[2].Spec.Data["password"]) != "new" {
		t.Fatalf("changed data: %+v, %d SecretPushes", res, len(f.pushes))
	}
}

func TestPushSyncNeverDeletesForAMissingSource(t *testing.T) {
	for _, c := range []struct {
		name   string
		source *corev1.Secret
		get    error
		reason string
		says   string
		retry  bool
	}{
		{name: "no Secret", reason: configv1alpha1.ReasonSourceNotFound, says: "Secret src does not exist"},
		{name: "no key", source: sourceSecret("1", map[string]string{"password": pushCanary}), reason: configv1alpha1.ReasonKeyNotFound, says: `has no key "token"`},
		{name: "not granted", get: apierrors.NewForbidden(corev1.Resource("secrets"), "src", errors.New("RBAC says no")),
			reason: configv1alpha1.ReasonNotPermitted, says: "bind the ClusterRole veil-syncer:push-source", retry: true},
		{name: "API down", get: apierrors.NewServiceUnavailable("etcd is sad"), reason: configv1alpha1.ReasonSourceUnavailable, says: "etcd is sad", retry: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyDelete)
			var objs []runtime.Object
			if c.source != nil {
				objs = append(objs, c.source)
			}
			f := newPushFixture(t, ps, objs...)
			if c.get != nil {
				f.kube.PrependReactor("get", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) { return true, nil, c.get })
			}
			res, got := f.sync(t)
			if res.result != c.reason || res.retry != c.retry {
				t.Errorf("result %+v, want %s retry %v", res, c.reason, c.retry)
			}
			if r := ready(t, got); r.Status != metav1.ConditionFalse || r.Reason != c.reason || !strings.Contains(r.Message, c.says) {
				t.Errorf("Ready = %s %s: %s", r.Status, r.Reason, r.Message)
			}
			if len(f.pushes) != 0 {
				t.Errorf("%d SecretPushes (first %s), want none", len(f.pushes), f.pushes[0].Spec.Action)
			}
			f.events(t)
		})
	}
}

func TestPushSyncFailures(t *testing.T) {
	ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyNone)
	src := sourceSecret("5", map[string]string{"password": pushCanary, "token": "t"})

	t.Run("a failed remote key is retried, and the data is pushed again", func(t *testing.T) {
		f := newPushFixture(t, ps, src)
		f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
			out := answerAll(ps, sp, "Pushed")
			out.Status.Results[1].Result, out.Status.Results[1].Reason, out.Status.Results[1].Message = "Failed", "Unavailable", "could not reach Vault"
			return out, nil
		}
		res, got := f.sync(t)
		if res.result != configv1alpha1.ReasonPushFailed || !res.retry {
			t.Errorf("result %+v", res)
		}
		r := ready(t, got)
		if r.Status != metav1.ConditionFalse || !strings.Contains(r.Message, "SecretStore/vault ci/token: Unavailable: could not reach Vault") {
			t.Errorf("Ready = %s: %s", r.Status, r.Message)
		}
		if got.Status.DataHMAC != "" || got.Status.RefreshTime != nil || got.Status.SyncedPushSecrets["SecretStore/vault"]["ci/token"].Result != "Failed" {
			t.Errorf("status after a failure: %+v", got.Status)
		}
		f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
			return answerAll(ps, sp, "Unchanged"), nil
		}
		if res, got = f.sync(t); res.result != resultRefreshed || len(f.pushes) != 2 || ready(t, got).Status != metav1.ConditionTrue {
			t.Errorf("retry: %+v, %d SecretPushes", res, len(f.pushes))
		}
		if e := got.Status.SyncedPushSecrets["SecretStore/vault"]["ci/app#password"]; e.PushTime == nil {
			t.Error("the key pushed by the failed attempt lost its push time")
		}
	})

	for _, c := range []struct {
		name    string
		err     error
		mayPush bool
		reason  string
		says    string
	}{
		{"RBAC refuses", apierrors.NewForbidden(esv1alpha1.Resource("secretpushes"), "app", errors.New("no RBAC")), false, configv1alpha1.ReasonNotPermitted, "may not create secretpushes in namespace team"},
		{"a read-only store", apierrors.NewForbidden(esv1alpha1.Resource("secretpushes"), "app", errors.New("SecretStore team/frozen is read-only (spec.readOnly)")), true, configv1alpha1.ReasonPushRefused, "is read-only (spec.readOnly)"},
		{"no such store", apierrors.NewNotFound(esv1alpha1.Resource("secretpushes"), "app"), true, configv1alpha1.ReasonPushRefused, "not found"},
		{"veil-apiserver down", apierrors.NewServiceUnavailable("the service is unavailable"), true, configv1alpha1.ReasonPushFailed, "the service is unavailable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newPushFixture(t, ps, src)
			f.mayPush = c.mayPush
			f.answer = func(*esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) { return nil, c.err }
			res, got := f.sync(t)
			if res.result != c.reason || !res.retry {
				t.Errorf("result %+v, want %s and a retry", res, c.reason)
			}
			if r := ready(t, got); r.Reason != c.reason || !strings.Contains(r.Message, c.says) || !strings.Contains(r.Message, "nothing was pushed") {
				t.Errorf("Ready %s: %s", r.Reason, r.Message)
			}
			f.events(t)
		})
	}
}

func TestPushFinalizer(t *testing.T) {
	src := sourceSecret("5", map[string]string{"password": "p", "token": "t"})
	hasFinalizer := func(ps *configv1alpha1.PushSecret) bool {
		for _, f := range ps.Finalizers {
			if f == configv1alpha1.PushSecretFinalizer {
				return true
			}
		}
		return false
	}

	t.Run("added for Delete, removed for None, others kept", func(t *testing.T) {
		ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyDelete)
		ps.Finalizers = []string{"example.com/other"}
		f := newPushFixture(t, ps, src)
		_, got := f.sync(t)
		if !hasFinalizer(got) || len(got.Finalizers) != 2 {
			t.Errorf("finalizers %v", got.Finalizers)
		}
		got.Spec.DeletionPolicy = configv1alpha1.PushSecretDeletionPolicyNone
		got.Generation++
		if _, err := f.veil.ConfigV1alpha1().PushSecrets("team").Update(context.Background(), got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, got = f.sync(t); hasFinalizer(got) || len(got.Finalizers) != 1 {
			t.Errorf("finalizers %v", got.Finalizers)
		}
	})

	t.Run("a stale PushSecret is retried, not forced", func(t *testing.T) {
		ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyDelete)
		f := newPushFixture(t, ps, src)
		f.veil.PrependReactor("patch", "pushsecrets", func(a clienttesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() == "" && strings.Contains(string(a.(clienttesting.PatchAction).GetPatch()), `"resourceVersion":"10"`) {
				return true, nil, apierrors.NewConflict(configv1alpha1.Resource("pushsecrets"), "app", errors.New("changed"))
			}
			return false, nil, nil
		})
		if res, _ := f.sync(t); res.result != configv1alpha1.ReasonFinalizerFailed || !res.retry || len(f.pushes) != 0 {
			t.Errorf("result %+v with %d SecretPushes", res, len(f.pushes))
		}
	})

	// deleted pushes once, then marks ps deleted as kube-apiserver would.
	deleted := func(t *testing.T, policy configv1alpha1.PushSecretDeletionPolicy) *pushFixture {
		t.Helper()
		f := newPushFixture(t, testPushSecret(policy), src)
		_, got := f.sync(t)
		now := metav1.NewTime(f.clock.Now())
		got.DeletionTimestamp = &now
		got.Finalizers = []string{configv1alpha1.PushSecretFinalizer}
		if _, err := f.veil.ConfigV1alpha1().PushSecrets("team").Update(context.Background(), got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		f.events(t)
		return f
	}

	t.Run("Delete deletes the remote keys, then releases", func(t *testing.T) {
		f := deleted(t, configv1alpha1.PushSecretDeletionPolicyDelete)
		f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
			out := answerAll(testPushSecret(""), sp, "Deleted")
			out.Status.Results[0].Result, out.Status.Results[0].Reason, out.Status.Results[0].Message = "Failed", "Unavailable", "Vault is sealed"
			return out, nil
		}
		res, got := f.sync(t)
		if res.result != configv1alpha1.ReasonDeleteFailed || !res.retry || !hasFinalizer(got) {
			t.Fatalf("a failed delete: %+v, finalizers %v", res, got.Finalizers)
		}
		if r := ready(t, got); !strings.Contains(r.Message, "Vault is sealed") || !strings.Contains(r.Message, "finalizer veil.dev/pushsecret stays") {
			t.Errorf("Ready: %s", r.Message)
		}
		f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
			return answerAll(testPushSecret(""), sp, "Deleted"), nil
		}
		if res, got = f.sync(t); res.result != resultDeleted || res.retry || hasFinalizer(got) {
			t.Errorf("delete: %+v, finalizers %v", res, got.Finalizers)
		}
		if len(f.pushes) != 3 || f.pushes[1].Spec.Action != esv1alpha1.SecretPushActionDelete || len(f.pushes[1].Spec.Data) != 0 {
			t.Errorf("SecretPushes: %d", len(f.pushes))
		}
		if ev := f.events(t); len(ev) != 2 || !strings.HasPrefix(ev[1], "Normal Deleted Deleted SecretStore/vault ci/app#password, SecretStore/vault ci/token") {
			t.Errorf("events %q", ev)
		}
	})

	t.Run("a delete RBAC refuses keeps the finalizer", func(t *testing.T) {
		f := deleted(t, configv1alpha1.PushSecretDeletionPolicyDelete)
		f.mayPush = false
		f.answer = func(*esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
			return nil, apierrors.NewForbidden(esv1alpha1.Resource("secretpushes"), "app", errors.New("no RBAC"))
		}
		res, got := f.sync(t)
		if res.result != configv1alpha1.ReasonNotPermitted || !res.retry || !hasFinalizer(got) {
			t.Errorf("%+v, finalizers %v", res, got.Finalizers)
		}
	})

	t.Run("a delete RBAC refuses in a namespace being deleted releases the finalizer", func(t *testing.T) {
		f := deleted(t, configv1alpha1.PushSecretDeletionPolicyDelete)
		f.mayPush = false
		f.answer = func(*esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
			return nil, apierrors.NewForbidden(esv1alpha1.Resource("secretpushes"), "app", errors.New("no RBAC"))
		}
		gone := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testPushSecret("").Namespace, DeletionTimestamp: &gone, Finalizers: []string{"kubernetes"}}}
		if _, err := f.kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		res, got := f.sync(t)
		if res.result != configv1alpha1.ReasonDeleteRefused || res.retry || hasFinalizer(got) {
			t.Errorf("%+v, finalizers %v", res, got.Finalizers)
		}
		if ev := f.events(t); len(ev) == 0 || !strings.Contains(ev[len(ev)-1], "is being deleted") {
			t.Errorf("events %q: want the release reported", ev)
		}
	})

	t.Run("keys not its own are left, reported, and released", func(t *testing.T) {
		f := deleted(t, configv1alpha1.PushSecretDeletionPolicyDelete)
		f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
			out := answerAll(testPushSecret(""), sp, "Deleted")
			out.Status.Results[0].Result, out.Status.Results[0].Reason, out.Status.Results[0].Message = "NotOwner", "NotOwner", "remote key belongs to another PushSecret"
			return out, nil
		}
		res, got := f.sync(t)
		if res.result != configv1alpha1.ReasonDeleteRefused || res.retry || hasFinalizer(got) {
			t.Fatalf("%+v, finalizers %v; want released", res, got.Finalizers)
		}
		r := ready(t, got)
		if r.Reason != configv1alpha1.ReasonDeleteRefused || !strings.Contains(r.Message, "1 of 2 remote keys are not this PushSecret's") || !strings.Contains(r.Message, "deleted SecretStore/vault ci/token") {
			t.Errorf("Ready: %+v", r)
		}
		if got.Status.SyncedPushSecrets["SecretStore/vault"]["ci/app#password"].Result != "NotOwner" {
			t.Errorf("syncedPushSecrets: %+v", got.Status.SyncedPushSecrets)
		}
		if ev := f.events(t); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning DeleteRefused 1 of 2 remote keys are not this PushSecret's") {
			t.Errorf("events %q", ev)
		}
	})

	t.Run("a store that refuses for good releases; an outage does not", func(t *testing.T) {
		for _, c := range []struct {
			name    string
			err     error
			release bool
		}{
			{"store gone", apierrors.NewNotFound(esv1alpha1.Resource("secretpushes"), "app"), true},
			{"store refuses", apierrors.NewForbidden(esv1alpha1.Resource("secretpushes"), "app", errors.New(`remote key "x" is outside the prefix`)), true},
			{"veil-apiserver unavailable", apierrors.NewServiceUnavailable("provider down"), false},
			{"timeout", apierrors.NewTimeoutError("slow", 1), false},
		} {
			f := deleted(t, configv1alpha1.PushSecretDeletionPolicyDelete)
			f.answer = func(*esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) { return nil, c.err }
			res, got := f.sync(t)
			if hasFinalizer(got) == c.release || res.retry == c.release {
				t.Errorf("%s: %+v, finalizers %v; want released %v", c.name, res, got.Finalizers, c.release)
			}
			if c.release && ready(t, got).Reason != configv1alpha1.ReasonDeleteRefused {
				t.Errorf("%s: Ready %+v", c.name, ready(t, got))
			}
		}
	})

	t.Run("None keeps the remote keys", func(t *testing.T) {
		f := deleted(t, configv1alpha1.PushSecretDeletionPolicyNone)
		if res, got := f.sync(t); res.result != resultReleased || hasFinalizer(got) || len(f.pushes) != 1 {
			t.Errorf("%+v, finalizers %v, %d SecretPushes", res, got.Finalizers, len(f.pushes))
		}
	})

	t.Run("nothing pushed, nothing deleted", func(t *testing.T) {
		ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyDelete)
		now := metav1.NewTime(time.Now())
		ps.DeletionTimestamp, ps.Finalizers = &now, []string{configv1alpha1.PushSecretFinalizer}
		// Every key existed and was left alone (IfNotExists): none is ours.
		ps.Status.SyncedPushSecrets = map[string]map[string]configv1alpha1.PushSecretSyncedData{"SecretStore/vault": {"ci/token": {Result: "SkippedExists"}}}
		f := newPushFixture(t, ps, src)
		if res, got := f.sync(t); res.result != resultReleased || hasFinalizer(got) || len(f.pushes) != 0 {
			t.Errorf("%+v, finalizers %v, %d SecretPushes", res, got.Finalizers, len(f.pushes))
		}
	})
}

func TestPushHMAC(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	ps := testPushSecret("")
	data := map[string][]byte{"password": []byte("p"), "token": []byte("t")}
	h := pushHMAC(key, ps, data)
	if h != pushHMAC(key, ps.DeepCopy(), map[string][]byte{"token": []byte("t"), "password": []byte("p")}) {
		t.Error("not deterministic")
	}
	changed := func(change func(*configv1alpha1.PushSecret)) *configv1alpha1.PushSecret {
		c := ps.DeepCopy()
		change(c)
		return c
	}
	es := &configv1alpha1.ExternalSecret{ObjectMeta: ps.ObjectMeta}
	for name, other := range map[string]string{
		"another remote key": pushHMAC(key, changed(func(c *configv1alpha1.PushSecret) { c.Spec.Data[1].Match.RemoteRef.RemoteKey = "elsewhere" }), data),
		"another store":      pushHMAC(key, changed(func(c *configv1alpha1.PushSecret) { c.Spec.SecretStoreRefs[0].Name = "other" }), data),
		"another value":      pushHMAC(key, ps, map[string][]byte{"password": []byte("p"), "token": []byte("u")}),
		"another HMAC key":   pushHMAC([]byte(strings.Repeat("x", 32)), ps, data),
		"another namespace":  pushHMAC(key, changed(func(c *configv1alpha1.PushSecret) { c.Namespace = "other" }), data),
		"another name":       pushHMAC(key, changed(func(c *configv1alpha1.PushSecret) { c.Name = "other" }), data),
		"another UID":        pushHMAC(key, changed(func(c *configv1alpha1.PushSecret) { c.UID = "other" }), data),
		"an ExternalSecret":  dataHMAC(key, es, data),
	} {
		if other == h {
			t.Errorf("%s: same HMAC", name)
		}
	}
}

func TestPushRefresh(t *testing.T) {
	clock := clocktesting.NewFakePassiveClock(time.Now())
	c := &PushController{skeleton: newPushSecretSkeleton(nil, nil)}
	c.clock = clock
	ps := testPushSecret("")
	if d := c.refreshInterval(ps); d != time.Hour {
		t.Errorf("default interval %s, want 1h", d)
	}
	if !c.refreshDue(ps) {
		t.Error("never pushed: due")
	}
	last := metav1.NewTime(clock.Now())
	ps.Status.RefreshTime = &last
	c.setReady(&ps.Status, ps, metav1.ConditionTrue, configv1alpha1.ReasonSynced, "pushed")
	clock.SetTime(last.Add(50 * time.Minute))
	if c.refreshDue(ps) {
		t.Error("due 50 minutes after a push, interval 1h")
	}
	if d, ok := c.refreshAfter(ps); !ok || d < 4*time.Minute || d > 16*time.Minute {
		t.Errorf("next refresh in %s, want about 10 minutes", d)
	}
	// A jittered timer may fire up to 10% early: that is the refresh.
	clock.SetTime(last.Add(54 * time.Minute))
	if !c.refreshDue(ps) {
		t.Error("not due 54 minutes after a push, interval 1h")
	}
	// Failing for long without retries (a missing source): the next
	// refresh counts from now, never from the last push.
	clock.SetTime(last.Add(5 * time.Hour))
	if d, _ := c.refreshAfter(ps); d < minRefresh {
		t.Errorf("next refresh in %s, long past due", d)
	}
	c.setReady(&ps.Status, ps, metav1.ConditionFalse, configv1alpha1.ReasonSourceNotFound, "gone")
	if d, _ := c.refreshAfter(ps); d < 54*time.Minute {
		t.Errorf("next refresh after a failure in %s, want about an hour", d)
	}
	ps.Spec.RefreshInterval = &metav1.Duration{}
	if _, ok := c.refreshAfter(ps); ok || c.refreshDue(ps) {
		t.Error("refreshInterval 0 refreshes")
	}
}

func TestSourceWatches(t *testing.T) {
	scheme := metadatafake.NewTestScheme()
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	secret := func(ns, name, rv string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv,
				Annotations: map[string]string{"kubectl.kubernetes.io/last-applied-configuration": pushCanary}}}
	}
	client := metadatafake.NewSimpleMetadataClient(scheme, secret("a", "src", "1"), secret("a", "other", "2"), secret("b", "src", "3"))
	type change struct {
		src types.NamespacedName
		rv  string
	}
	changes := make(chan change, 10)
	// The fake's watches see only what happens after they start, and a
	// watch starts a moment after its list: each is reported here once the
	// tracker holds it, so that a change is made only when it will be seen.
	watchStarted := make(chan string, 100)
	client.PrependWatchReactor("secrets", func(action clienttesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if w, ok := action.(clienttesting.WatchActionImpl); ok {
			opts = w.ListOptions
		}
		w, err := client.Tracker().Watch(action.GetResource(), action.GetNamespace(), opts)
		if err == nil {
			select { // never blocks a watch: the test reads only the first few
			case watchStarted <- action.GetNamespace():
			default:
			}
		}
		return true, w, err
	})
	waitWatch := func(ns string) {
		t.Helper()
		for got := range watchStarted {
			if got == ns {
				return
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newSourceWatches(ctx, client, func(src types.NamespacedName, rv string) { changes <- change{src, rv} })

	a := types.NamespacedName{Namespace: "a", Name: "src"}
	s.use("a/one", a, "")
	s.use("a/two", a, "")
	if got := <-changes; got != (change{a, "1"}) {
		t.Errorf("listed %+v", got)
	}
	b := types.NamespacedName{Namespace: "b", Name: "src"}
	s.use("a/two", b, "")
	if got := <-changes; got != (change{b, "3"}) {
		t.Errorf("listed %+v", got)
	}
	if len(s.watches) != 2 || s.watches[a].users != 1 || s.watches[b].users != 1 {
		t.Errorf("watches %v", s.watches)
	}
	s.release("a/one")
	s.release("a/one")
	if _, ok := s.watches[a]; ok || len(s.watches) != 1 {
		t.Errorf("a watch nobody uses runs on: %v", s.watches)
	}

	waitWatch("b")
	if err := client.Tracker().Delete(secretsResource, "b", "src"); err != nil {
		t.Fatal(err)
	}
	if got := <-changes; got != (change{b, ""}) {
		t.Errorf("deleted %+v", got)
	}
	select {
	case got := <-changes:
		t.Errorf("unexpected change %+v: only the named Secrets are reported", got)
	default:
	}
	// A watch kube-apiserver refuses is stopped, not retried for ever,
	// and its users are told, so that their syncs report it.
	client.PrependReactor("list", "secrets", func(action clienttesting.Action) (bool, runtime.Object, error) {
		if action.GetNamespace() == "c" {
			return true, nil, apierrors.NewForbidden(secretsResource.GroupResource(), "src", errors.New("no grant"))
		}
		return false, nil, nil
	})
	c := types.NamespacedName{Namespace: "c", Name: "src"}
	s.use("c/one", c, "")
	if got := <-changes; got != (change{c, ""}) {
		t.Errorf("refused watch reported %+v", got)
	}
	s.mu.Lock()
	_, watching := s.watches[c]
	_, user := s.users["c/one"]
	s.mu.Unlock()
	if watching || user {
		t.Errorf("a refused watch is kept (watch %v, user %v)", watching, user)
	}

	for _, action := range client.Actions() {
		if l, ok := action.(clienttesting.ListActionImpl); ok && l.ListOptions.FieldSelector != "metadata.name=src" {
			t.Errorf("a list without the name's field selector: %+v", l.ListOptions)
		}
		if w, ok := action.(clienttesting.WatchActionImpl); ok && w.WatchRestrictions.Fields.String() != "metadata.name=src" {
			t.Errorf("a watch without the name's field selector: %v", w.WatchRestrictions.Fields)
		}
	}
}
