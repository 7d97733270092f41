package syncer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	veilfake "github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
)

// syncCanary is the remote value: no status, Event or error may carry it.
const syncCanary = "sync-canary-value-never-shown"

// secretServer answers Secret creates, JSON patches and deletes as
// kube-apiserver does for veil-syncer: metadata-only answers, 409 for a
// create of an existing Secret, 422 when a patch's test fails or it changes
// an immutable Secret, and a UID precondition on delete. client-go's fake
// clientset cannot stand in: the writer speaks raw JSON patch through a
// REST client, and the fake neither answers metadata-only nor refuses a
// failed test with 422.
type secretServer struct {
	mu      sync.Mutex
	secrets map[string]*corev1.Secret
	rv      int
	// writes counts the requests that changed a Secret.
	writes int
	// requests counts every request.
	requests int
	// ops holds the operations ("test", "add") of every patch received.
	ops [][]string
}

func newSecretServer(t *testing.T, existing ...*corev1.Secret) (*secretServer, *secretWriter) {
	t.Helper()
	s := &secretServer{secrets: map[string]*corev1.Secret{}}
	for _, e := range existing {
		s.rv++
		e = e.DeepCopy()
		e.UID, e.ResourceVersion = types.UID("uid-"+e.Name), fmt.Sprint(s.rv)
		s.secrets[e.Namespace+"/"+e.Name] = e
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	cfg := &rest.Config{Host: srv.URL}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, &secretWriter{core: kube.CoreV1().RESTClient(), meta: meta}
}

func (s *secretServer) get(ns, name string) *corev1.Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sec := s.secrets[ns+"/"+name]; sec != nil {
		return sec.DeepCopy()
	}
	return nil
}

// edit changes a Secret as someone other than veil-syncer would.
func (s *secretServer) edit(ns, name string, f func(*corev1.Secret)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.secrets[ns+"/"+name]
	f(sec)
	s.rv++
	sec.ResourceVersion = fmt.Sprint(s.rv)
}

// patchOps are the operations of the patches received since the call
// that returned from.
func (s *secretServer) patchOps(from int) [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.ops[min(from, len(s.ops)):]...)
}

func (s *secretServer) counts() (requests, writes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.writes
}

func (s *secretServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	// /api/v1/namespaces/{ns}/secrets[/{name}]
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/api/v1/namespaces/"), "/")
	if len(parts) < 2 || parts[1] != "secrets" {
		writeStatus(w, apierrors.NewBadRequest("unexpected path "+r.URL.Path))
		return
	}
	ns := parts[0]
	body, _ := io.ReadAll(r.Body)
	gr := corev1.Resource("secrets")
	switch {
	case r.Method == http.MethodPost && len(parts) == 2:
		var sec corev1.Secret
		if err := json.Unmarshal(body, &sec); err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		key := ns + "/" + sec.Name
		if s.secrets[key] != nil {
			writeStatus(w, apierrors.NewAlreadyExists(gr, sec.Name))
			return
		}
		s.rv++
		sec.Namespace, sec.UID, sec.ResourceVersion = ns, types.UID("uid-"+sec.Name), fmt.Sprint(s.rv)
		s.secrets[key] = &sec
		s.writes++
		writeMetadata(w, http.StatusCreated, &sec)
	case r.Method == http.MethodPatch && len(parts) == 3:
		old := s.secrets[ns+"/"+parts[2]]
		if old == nil {
			writeStatus(w, apierrors.NewNotFound(gr, parts[2]))
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != string(types.JSONPatchType) {
			writeStatus(w, apierrors.NewBadRequest("unexpected patch type "+ct))
			return
		}
		var decoded []struct{ Op string }
		_ = json.Unmarshal(body, &decoded)
		var ops []string
		for _, o := range decoded {
			ops = append(ops, o.Op)
		}
		s.ops = append(s.ops, ops)
		patch, err := jsonpatch.DecodePatch(body)
		if err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		doc, err := json.Marshal(old)
		if err != nil {
			writeStatus(w, apierrors.NewInternalError(err))
			return
		}
		patched, err := patch.Apply(doc)
		if err != nil {
			writeStatus(w, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Secret").GroupKind(), parts[2], nil))
			return
		}
		var sec corev1.Secret
		if err := json.Unmarshal(patched, &sec); err != nil {
			writeStatus(w, apierrors.NewInternalError(err))
			return
		}
		dataChanged := !maps.EqualFunc(sec.Data, old.Data, func(a, b []byte) bool { return string(a) == string(b) })
		if sec.Type != old.Type || (old.Immutable != nil && *old.Immutable && dataChanged) {
			writeStatus(w, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Secret").GroupKind(), parts[2], nil))
			return
		}
		// Compared re-encoded: a test-only patch leaves the object as it
		// was, but json-patch does not keep the bytes.
		if again, _ := json.Marshal(&sec); string(again) != string(doc) {
			s.rv++
			sec.ResourceVersion = fmt.Sprint(s.rv)
			s.secrets[ns+"/"+parts[2]] = &sec
			s.writes++
		}
		writeMetadata(w, http.StatusOK, &sec)
	case r.Method == http.MethodDelete && len(parts) == 3:
		old := s.secrets[ns+"/"+parts[2]]
		if old == nil {
			writeStatus(w, apierrors.NewNotFound(gr, parts[2]))
			return
		}
		var opts metav1.DeleteOptions
		_ = json.Unmarshal(body, &opts)
		if opts.Preconditions != nil && opts.Preconditions.UID != nil && *opts.Preconditions.UID != old.UID {
			writeStatus(w, apierrors.NewConflict(gr, parts[2], fmt.Errorf("the UID in the precondition does not match")))
			return
		}
		delete(s.secrets, ns+"/"+parts[2])
		s.writes++
		writeStatus(w, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusOK}})
	default:
		writeStatus(w, apierrors.NewMethodNotSupported(gr, r.Method))
	}
}

func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_ = json.NewEncoder(w).Encode(st)
}

func writeMetadata(w http.ResponseWriter, code int, sec *corev1.Secret) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(&metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"},
		ObjectMeta: sec.ObjectMeta,
	})
}

// syncFixture is a Controller whose ExternalSecret, values and Secrets are
// fakes: veil-apiserver a fake clientset, kube-apiserver a secretServer.
type syncFixture struct {
	c        *Controller
	veil     *veilfake.Clientset
	secrets  *secretServer
	recorder *record.FakeRecorder
}

func newSyncFixture(t *testing.T, es *configv1alpha1.ExternalSecret, values map[string][]byte, existing ...*corev1.Secret) *syncFixture {
	t.Helper()
	v := &esv1alpha1.ExternalSecretValue{ObjectMeta: metav1.ObjectMeta{Namespace: es.Namespace, Name: es.Name}, Type: "Opaque", Data: values}
	veil := newVeilClientset(es, v)
	secrets, writer := newSecretServer(t, existing...)
	recorder := record.NewFakeRecorder(100)
	return &syncFixture{
		c: &Controller{
			skeleton: newExternalSecretSkeleton(veil, recorder, 0),
			veil:     veil, writer: writer,
			key: []byte(strings.Repeat("k", 32)), excluded: sets.New[string](),
		},
		veil: veil, secrets: secrets, recorder: recorder,
	}
}

// sync syncs the ExternalSecret as it now is, status included, as the
// controller's next does.
func (f *syncFixture) sync(t *testing.T) (result, *configv1alpha1.ExternalSecret) {
	t.Helper()
	es := f.es(t)
	res := f.c.sync(context.Background(), f.c.current(es))
	return res, f.es(t)
}

func (f *syncFixture) es(t *testing.T) *configv1alpha1.ExternalSecret {
	t.Helper()
	es, err := f.veil.ConfigV1alpha1().ExternalSecrets("app").Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func (f *syncFixture) setValues(t *testing.T, values map[string][]byte) {
	t.Helper()
	v := &esv1alpha1.ExternalSecretValue{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"}, Type: "Opaque", Data: values}
	if err := f.veil.Tracker().Update(esv1alpha1.SchemeGroupVersion.WithResource("externalsecretvalues"), v, "app"); err != nil {
		t.Fatal(err)
	}
}

// events drains the Events recorded so far, failing on any that quotes
// the value.
func (f *syncFixture) events(t *testing.T) []string {
	t.Helper()
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			if strings.Contains(e, syncCanary) {
				t.Errorf("an Event quotes the value: %s", e)
			}
			out = append(out, e)
		default:
			return out
		}
	}
}

func esReady(t *testing.T, es *configv1alpha1.ExternalSecret) *metav1.Condition {
	t.Helper()
	c := apimeta.FindStatusCondition(es.Status.Conditions, configv1alpha1.ConditionReady)
	if c == nil {
		t.Fatal("no Ready condition")
	}
	if strings.Contains(c.Message, syncCanary) {
		t.Errorf("the Ready message quotes the value: %s", c.Message)
	}
	return c
}

func wantEvents(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("Events %q, want %d starting %q", got, len(want), want)
		return
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) {
			t.Errorf("Event %q, want it to start %q", got[i], w)
		}
	}
}

// TestSyncCreatesUpdatesAndRefreshes walks one ExternalSecret through a
// create, a refresh that finds nothing to do, new values, and a repair of
// an edit made by someone else.
func TestSyncCreatesUpdatesAndRefreshes(t *testing.T) {
	f := newSyncFixture(t, testES(configv1alpha1.ExternalSecretTarget{}), map[string][]byte{"password": []byte(syncCanary)})

	res, es := f.sync(t)
	if res.result != resultCreated || res.retry {
		t.Errorf("first sync: %+v, want %s", res, resultCreated)
	}
	s := f.secrets.get("app", "db")
	if s == nil || string(s.Data["password"]) != syncCanary || s.Labels[configv1alpha1.ManagedByLabel] != configv1alpha1.ManagedBySyncer || s.Annotations[configv1alpha1.ExternalSecretAnnotation] != "db" ||
		len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != "es-uid" || s.Type != corev1.SecretTypeOpaque {
		t.Fatalf("created Secret %+v", s)
	}
	if c := esReady(t, es); c.Status != metav1.ConditionTrue || c.Reason != configv1alpha1.ReasonSynced || c.ObservedGeneration != es.Generation {
		t.Errorf("Ready = %+v", c)
	}
	if es.Status.TargetUID != s.UID || es.Status.DataHMAC == "" || es.Status.DataHMAC != s.Annotations[configv1alpha1.DataHMACAnnotation] || es.Status.RefreshTime == nil {
		t.Errorf("status %+v", es.Status)
	}
	wantEvents(t, f.events(t), "Normal "+EventSynced+" Created Secret db")

	// Nothing changed: the write is a test-only patch, and nothing is written.
	_, writes := f.secrets.counts()
	patches := len(f.secrets.patchOps(0))
	res, _ = f.sync(t)
	if res.result != resultRefreshed {
		t.Errorf("unchanged sync: %+v, want %s", res, resultRefreshed)
	}
	if ops := f.secrets.patchOps(patches); len(ops) != 1 || slices.ContainsFunc(ops[0], func(op string) bool { return op != "test" }) {
		t.Errorf("an unchanged sync sent patches %v, want one of tests only", ops)
	}
	if _, after := f.secrets.counts(); after != writes {
		t.Errorf("an unchanged sync wrote %d times", after-writes)
	}
	if again := f.secrets.get("app", "db"); again.ResourceVersion != s.ResourceVersion {
		t.Errorf("an unchanged sync moved the Secret's resourceVersion %s -> %s", s.ResourceVersion, again.ResourceVersion)
	}
	wantEvents(t, f.events(t))

	// New values: the Secret is rewritten, and the status records the new HMAC.
	before := es.Status.DataHMAC
	f.setValues(t, map[string][]byte{"password": []byte(syncCanary + "-2")})
	res, es = f.sync(t)
	if res.result != resultUpdated {
		t.Errorf("sync of new values: %+v, want %s", res, resultUpdated)
	}
	if s := f.secrets.get("app", "db"); string(s.Data["password"]) != syncCanary+"-2" || s.Annotations[configv1alpha1.DataHMACAnnotation] != es.Status.DataHMAC {
		t.Errorf("the Secret does not hold the new values (HMAC %s, status %s)", s.Annotations[configv1alpha1.DataHMACAnnotation], es.Status.DataHMAC)
	}
	if es.Status.DataHMAC == before {
		t.Error("status.dataHMAC did not change with the data")
	}
	wantEvents(t, f.events(t), "Normal "+EventUpdated+" Wrote new data to Secret db")

	// Someone edits the data: the next sync writes it again and says so.
	f.secrets.edit("app", "db", func(s *corev1.Secret) { s.Data["password"] = []byte("tampered") })
	res, _ = f.sync(t)
	if res.result != resultRepaired {
		t.Errorf("sync after an edit: %+v, want %s", res, resultRepaired)
	}
	if s := f.secrets.get("app", "db"); string(s.Data["password"]) != syncCanary+"-2" {
		t.Error("the edit was not undone")
	}
	wantEvents(t, f.events(t), "Warning "+EventUpdated+" Secret db was changed outside veil-syncer")
}

// TestSyncCreationPolicyNone writes no Secret and reads no value.
func TestSyncCreationPolicyNone(t *testing.T) {
	f := newSyncFixture(t, testES(configv1alpha1.ExternalSecretTarget{CreationPolicy: configv1alpha1.CreatePolicyNone}), map[string][]byte{"k": []byte(syncCanary)})
	res, es := f.sync(t)
	if res.result != configv1alpha1.ReasonCreationPolicyNone || res.retry {
		t.Errorf("result %+v, want %s", res, configv1alpha1.ReasonCreationPolicyNone)
	}
	if c := esReady(t, es); c.Status != metav1.ConditionTrue || c.Reason != configv1alpha1.ReasonCreationPolicyNone {
		t.Errorf("Ready = %+v", c)
	}
	if requests, _ := f.secrets.counts(); requests != 0 {
		t.Errorf("%d requests for Secrets, want none", requests)
	}
	for _, a := range f.veil.Actions() {
		if a.GetResource().Resource == "externalsecretvalues" {
			t.Errorf("the values were read (%s)", a.GetVerb())
		}
	}
}

// TestSyncRefusesASecretItDoesNotOwn: a Secret of the target's name that
// veil-syncer did not create for this ExternalSecret is left as it is.
func TestSyncRefusesASecretItDoesNotOwn(t *testing.T) {
	for name, existing := range map[string]*corev1.Secret{
		"someone's own": {ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"}, Data: map[string][]byte{"password": []byte("theirs")}, Type: corev1.SecretTypeOpaque},
		"another ExternalSecret's": {ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db",
			Labels:      map[string]string{configv1alpha1.ManagedByLabel: configv1alpha1.ManagedBySyncer},
			Annotations: map[string]string{configv1alpha1.ExternalSecretAnnotation: "another"}}, Data: map[string][]byte{"password": []byte("theirs")}, Type: corev1.SecretTypeOpaque},
	} {
		t.Run(name, func(t *testing.T) {
			f := newSyncFixture(t, testES(configv1alpha1.ExternalSecretTarget{}), map[string][]byte{"password": []byte(syncCanary)}, existing)
			before := f.secrets.get("app", "db")
			res, es := f.sync(t)
			if res.result != configv1alpha1.ReasonTargetConflict || res.retry {
				t.Errorf("result %+v, want %s without retry", res, configv1alpha1.ReasonTargetConflict)
			}
			if c := esReady(t, es); c.Status != metav1.ConditionFalse || c.Reason != configv1alpha1.ReasonTargetConflict || !strings.Contains(c.Message, "was not created by veil-syncer for this ExternalSecret") {
				t.Errorf("Ready = %+v", c)
			}
			if after := f.secrets.get("app", "db"); after.ResourceVersion != before.ResourceVersion || string(after.Data["password"]) != "theirs" {
				t.Errorf("the Secret was changed: resourceVersion %s -> %s", before.ResourceVersion, after.ResourceVersion)
			}
			if es.Status.TargetUID != "" {
				t.Errorf("status claims the Secret: targetUID %s", es.Status.TargetUID)
			}
			wantEvents(t, f.events(t), "Warning "+EventSyncError+" "+configv1alpha1.ReasonTargetConflict)
		})
	}
}

// TestSyncTemplateErrorKeepsTheSecret: a template that fails to render
// leaves the last Secret written as it was, and says so.
func TestSyncTemplateErrorKeepsTheSecret(t *testing.T) {
	f := newSyncFixture(t, testES(configv1alpha1.ExternalSecretTarget{}), map[string][]byte{"password": []byte(syncCanary)})
	if res, _ := f.sync(t); res.result != resultCreated {
		t.Fatalf("first sync: %+v", res)
	}
	f.events(t)
	before := f.secrets.get("app", "db")

	es := f.es(t)
	es.Spec.Target.Template = &configv1alpha1.ExternalSecretTemplate{Data: map[string]string{"password": "{{ .password | b64dec }}"}}
	es.Generation++
	if _, err := f.veil.ConfigV1alpha1().ExternalSecrets("app").Update(context.Background(), es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, writes := f.secrets.counts()
	res, es := f.sync(t)
	if res.result != configv1alpha1.ReasonTemplateError || res.retry {
		t.Errorf("result %+v, want %s without retry", res, configv1alpha1.ReasonTemplateError)
	}
	if c := esReady(t, es); c.Status != metav1.ConditionFalse || c.Reason != configv1alpha1.ReasonTemplateError ||
		c.ObservedGeneration != es.Generation || !strings.Contains(c.Message, "the Secret was left as it was") {
		t.Errorf("Ready = %+v", c)
	}
	if _, after := f.secrets.counts(); after != writes {
		t.Errorf("a failed template wrote %d times", after-writes)
	}
	if after := f.secrets.get("app", "db"); after.ResourceVersion != before.ResourceVersion || string(after.Data["password"]) != syncCanary {
		t.Errorf("the Secret changed: resourceVersion %s -> %s", before.ResourceVersion, after.ResourceVersion)
	}
	if es.Status.TargetUID != before.UID || es.Status.DataHMAC != before.Annotations[configv1alpha1.DataHMACAnnotation] {
		t.Errorf("the status lost the Secret it wrote: %+v", es.Status)
	}
	wantEvents(t, f.events(t), "Warning "+EventSyncError+" "+configv1alpha1.ReasonTemplateError)
}

// TestSyncExcludedNamespaceMakesNoRequest: in an excluded namespace no
// Secret request is made at all (TestExcludedNamespaceIsNeverWritten has
// no writer; this one has one that counts).
func TestSyncExcludedNamespaceMakesNoRequest(t *testing.T) {
	es := testES(configv1alpha1.ExternalSecretTarget{})
	f := newSyncFixture(t, es, map[string][]byte{"password": []byte(syncCanary)})
	f.c.excluded = sets.New("app")
	res, got := f.sync(t)
	if res.result != configv1alpha1.ReasonNamespaceExcluded {
		t.Errorf("result %+v, want %s", res, configv1alpha1.ReasonNamespaceExcluded)
	}
	if c := esReady(t, got); c.Status != metav1.ConditionFalse || c.Reason != configv1alpha1.ReasonNamespaceExcluded {
		t.Errorf("Ready = %+v", c)
	}
	if requests, _ := f.secrets.counts(); requests != 0 {
		t.Errorf("%d requests for Secrets in an excluded namespace", requests)
	}
}

// TestSyncDeletionPolicyDeleteDeletesOnlyItsOwnSecret: when the values are
// gone, deletionPolicy Delete deletes the Secret veil-syncer wrote, by
// UID, and leaves one that replaced it in place.
func TestSyncDeletionPolicyDeleteDeletesOnlyItsOwnSecret(t *testing.T) {
	for _, replaced := range []bool{false, true} {
		t.Run(fmt.Sprintf("replaced=%v", replaced), func(t *testing.T) {
			f := newSyncFixture(t, testES(configv1alpha1.ExternalSecretTarget{DeletionPolicy: configv1alpha1.DeletionPolicyDelete}),
				map[string][]byte{"password": []byte(syncCanary)})
			if res, _ := f.sync(t); res.result != resultCreated {
				t.Fatalf("first sync: %+v", res)
			}
			f.events(t)
			if replaced {
				// Someone deletes it and creates their own of the same name.
				f.secrets.edit("app", "db", func(s *corev1.Secret) { s.UID = "someone-elses" })
			}
			if err := f.veil.Tracker().Delete(esv1alpha1.SchemeGroupVersion.WithResource("externalsecretvalues"), "app", "db"); err != nil {
				t.Fatal(err)
			}
			res, es := f.sync(t)
			c := esReady(t, es)
			if replaced {
				if res.result != configv1alpha1.ReasonRemoteNotFound || c.Reason != configv1alpha1.ReasonRemoteNotFound || !strings.Contains(c.Message, "was left in place") {
					t.Errorf("result %+v, Ready %+v; want the replacement left in place", res, c)
				}
				if f.secrets.get("app", "db") == nil {
					t.Error("a Secret veil-syncer did not write was deleted")
				}
				if es.Status.TargetUID == "" {
					t.Error("the status forgot the UID it wrote, so a later delete could not be held to it")
				}
				wantEvents(t, f.events(t), "Warning "+EventSyncError+" "+configv1alpha1.ReasonRemoteNotFound)
				return
			}
			if res.result != resultDeleted || c.Status != metav1.ConditionFalse || c.Reason != configv1alpha1.ReasonRemoteNotFound {
				t.Errorf("result %+v, Ready %+v; want %s", res, c, resultDeleted)
			}
			if f.secrets.get("app", "db") != nil {
				t.Error("the Secret was not deleted")
			}
			if es.Status.TargetUID != "" || es.Status.DataHMAC != "" {
				t.Errorf("status still names the deleted Secret: %+v", es.Status)
			}
			wantEvents(t, f.events(t), "Normal "+EventDeleted+" Deleted Secret db", "Warning "+EventSyncError+" "+configv1alpha1.ReasonRemoteNotFound)
		})
	}
}
