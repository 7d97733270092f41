package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

func TestDataHMAC(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	es := &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "db", UID: "u1"}}
	a := dataHMAC(key, es, map[string][]byte{"a": []byte("bc")})
	if a != dataHMAC(key, es.DeepCopy(), map[string][]byte{"a": []byte("bc")}) {
		t.Error("not deterministic")
	}
	elsewhere := func(namespace, name, uid string) *configv1alpha1.ExternalSecret {
		return &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID(uid)}}
	}
	for name, other := range map[string]string{
		"keys and values are length-prefixed": dataHMAC(key, es, map[string][]byte{"ab": []byte("c")}),
		"another key":                         dataHMAC([]byte(strings.Repeat("x", 32)), es, map[string][]byte{"a": []byte("bc")}),
		"another value":                       dataHMAC(key, es, map[string][]byte{"a": []byte("bd")}),
		// The same data in another place is another HMAC, so status.dataHMAC
		// cannot confirm a guess made with an ExternalSecret elsewhere.
		"another namespace": dataHMAC(key, elsewhere("b", "db", "u1"), map[string][]byte{"a": []byte("bc")}),
		"another name":      dataHMAC(key, elsewhere("a", "db2", "u1"), map[string][]byte{"a": []byte("bc")}),
		"another UID":       dataHMAC(key, elsewhere("a", "db", "u2"), map[string][]byte{"a": []byte("bc")}),
		"fields are framed": dataHMAC(key, elsewhere("ad", "b", "u1"), map[string][]byte{"a": []byte("bc")}),
	} {
		if other == a {
			t.Errorf("%s: same HMAC", name)
		}
	}
	if len(a) != 64 {
		t.Errorf("HMAC %q is not hex SHA-256", a)
	}
}

func TestLoadHMACKey(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	secrets := client.CoreV1().Secrets("veil-system")
	first, err := loadHMACKey(ctx, secrets, "veil-system")
	if err != nil {
		t.Fatal(err)
	}
	second, err := loadHMACKey(ctx, secrets, "veil-system")
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 32 || string(first) != string(second) {
		t.Errorf("a restart must read the key created on the first start")
	}
	s, err := secrets.Get(ctx, HMACKeySecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Immutable == nil || !*s.Immutable {
		t.Error("the key Secret should be immutable")
	}

	broken := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: HMACKeySecret, Namespace: "veil-system"}, Data: map[string][]byte{"key": []byte("short")}})
	if _, err := loadHMACKey(ctx, broken.CoreV1().Secrets("veil-system"), "veil-system"); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("a key of the wrong size: %v", err)
	}
}

func testES(target configv1alpha1.ExternalSecretTarget) *configv1alpha1.ExternalSecret {
	return &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "app", UID: "es-uid", Generation: 3},
		Spec:       configv1alpha1.ExternalSecretSpec{Target: &target},
	}
}

func TestDesired(t *testing.T) {
	c := &Controller{key: []byte(strings.Repeat("k", 32))}
	v := &esv1alpha1.ExternalSecretValue{Type: "Opaque", Data: map[string][]byte{"user": []byte("app")}}

	es := testES(configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
		Type: corev1.SecretTypeBasicAuth,
		Metadata: configv1alpha1.ExternalSecretTemplateMetadata{
			// A template cannot take Veil's marks over.
			Labels:      map[string]string{"team": "a", configv1alpha1.ManagedByLabel: "someone"},
			Annotations: map[string]string{configv1alpha1.ExternalSecretAnnotation: "other"},
		},
		Data: map[string]string{"username": "{{ .user | upper }}"},
	}})
	d, err := c.desired(context.Background(), es, v, "db")
	if err != nil {
		t.Fatal(err)
	}
	if d.policy != configv1alpha1.CreatePolicyOwner || d.secretType != corev1.SecretTypeBasicAuth || string(d.data["username"]) != "APP" || len(d.data) != 1 {
		t.Errorf("desired = %+v", d)
	}
	if d.labels["team"] != "a" || d.labels[configv1alpha1.ManagedByLabel] != "veil-syncer" || d.annotations[configv1alpha1.ExternalSecretAnnotation] != "db" ||
		d.annotations[configv1alpha1.DataHMACAnnotation] != d.hmac || d.hmac != dataHMAC(c.key, es, d.data) {
		t.Errorf("marks: labels %v annotations %v", d.labels, d.annotations)
	}

	tokenES := testES(configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{Type: corev1.SecretTypeServiceAccountToken}})
	if _, err := c.desired(context.Background(), tokenES, v, "db"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("a ServiceAccount token target: %v, want refused", err)
	}

	badES := testES(configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{Data: map[string]string{"x": "{{ .missing }}"}}})
	var te *template.Error
	if _, err := c.desired(context.Background(), badES, v, "db"); !errors.As(err, &te) {
		t.Errorf("a template error: %v", err)
	}
}

func TestPatchesTestOwnershipFirst(t *testing.T) {
	for _, policy := range []configv1alpha1.CreationPolicy{configv1alpha1.CreatePolicyOwner, configv1alpha1.CreatePolicyOrphan} {
		d := &desired{es: testES(configv1alpha1.ExternalSecretTarget{}), policy: policy, secretType: corev1.SecretTypeOpaque,
			labels:      map[string]string{configv1alpha1.ManagedByLabel: configv1alpha1.ManagedBySyncer, "a/b": "c"},
			annotations: map[string]string{configv1alpha1.DataHMACAnnotation: "h"},
			data:        map[string][]byte{"k": []byte("v")}}
		ops := ownedPatch(d)
		body, err := json.Marshal(ops)
		if err != nil {
			t.Fatal(err)
		}
		var decoded []map[string]any
		if err := json.Unmarshal(body, &decoded); err != nil {
			t.Fatal(err)
		}
		want := []map[string]any{
			{"op": "test", "path": "/metadata/labels/veil.dev~1managed-by", "value": "veil-syncer"},
			{"op": "test", "path": "/metadata/annotations/veil.dev~1external-secret", "value": "db"},
		}
		for i, w := range want {
			if decoded[i]["op"] != w["op"] || decoded[i]["path"] != w["path"] || decoded[i]["value"] != w["value"] {
				t.Errorf("%s: op %d = %v, want %v", policy, i, decoded[i], w)
			}
		}
		paths := map[string]any{}
		for _, op := range decoded[2:] {
			if op["op"] != "add" {
				t.Errorf("%s: %v after the tests", policy, op)
			}
			paths[op["path"].(string)] = op["value"]
		}
		if paths["/metadata/labels/a~1b"] != "c" || paths["/data"].(map[string]any)["k"] != "dg==" || paths["/type"] != "Opaque" {
			t.Errorf("%s: adds %v", policy, paths)
		}
		refs := paths["/metadata/ownerReferences"].([]any)
		if (policy == configv1alpha1.CreatePolicyOwner) != (len(refs) == 1) {
			t.Errorf("%s: owner references %v", policy, refs)
		}
	}
}

func TestEscape(t *testing.T) {
	if got := escape("a~b/c"); got != "a~0b~1c" {
		t.Errorf("escape = %q", got)
	}
}

func TestDecodeMetadataRefusesAFullObject(t *testing.T) {
	if _, err := decodeMetadata([]byte(`{"kind":"Secret","apiVersion":"v1","metadata":{"name":"x"},"data":{"k":"dg=="}}`)); err == nil {
		t.Error("a full Secret was accepted")
	}
	m, err := decodeMetadata([]byte(`{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"x","uid":"u","resourceVersion":"7"}}`))
	if err != nil || m.UID != "u" || m.ResourceVersion != "7" {
		t.Errorf("got %+v, %v", m, err)
	}
}

// TestCreateDecodesRefusals runs the writer's create against a server that
// answers like kube-apiserver, so that a refusal's Status is read (an
// AlreadyExists must lead to the ownership-testing patch) and only
// metadata is ever asked for.
func TestCreateDecodesRefusals(t *testing.T) {
	var accept []string
	code := http.StatusConflict
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accept = append(accept, r.Header.Get("Accept"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code == http.StatusCreated {
			fmt.Fprint(w, `{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"db","uid":"u1","resourceVersion":"9"}}`)
			return
		}
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":%q,"code":%d,"message":"refused"}`,
			map[int]string{http.StatusConflict: "AlreadyExists", http.StatusForbidden: "Forbidden"}[code], code)
	}))
	defer srv.Close()
	kube, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	w := &secretWriter{core: kube.CoreV1().RESTClient()}
	d := &desired{namespace: "app", name: "db", es: testES(configv1alpha1.ExternalSecretTarget{}), policy: configv1alpha1.CreatePolicyOwner,
		secretType: corev1.SecretTypeOpaque, data: map[string][]byte{"k": []byte("v")}}

	if _, err := w.create(context.Background(), d); !apierrors.IsAlreadyExists(err) {
		t.Errorf("409: %v, want AlreadyExists", err)
	}
	code = http.StatusForbidden
	if _, err := w.create(context.Background(), d); !apierrors.IsForbidden(err) {
		t.Errorf("403: %v, want Forbidden", err)
	}
	code = http.StatusCreated
	m, err := w.create(context.Background(), d)
	if err != nil || m.UID != "u1" || m.ResourceVersion != "9" {
		t.Errorf("201: %+v, %v", m, err)
	}
	for _, a := range accept {
		if a != metadataOnly {
			t.Errorf("Accept %q, want metadata only", a)
		}
	}
}
