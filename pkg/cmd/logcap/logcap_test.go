package logcap

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

const canary = "logcap-canary-3f9a1c"

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) take() string {
	klog.Flush()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

// A Secret read and written through client-go at -v=10 --vmodule=*=10:
// without the cap, its value is in the log (so the test sees client-go's
// logging); with it, neither the value nor a curl command is, and other
// files still log at V(10).
func TestClientBodiesAreNeverLogged(t *testing.T) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for name, value := range map[string]string{"logtostderr": "false", "alsologtostderr": "false", "stderrthreshold": "FATAL", "v": "10", "vmodule": "*=10"} {
		if err := fs.Set(name, value); err != nil {
			t.Fatal(err)
		}
	}
	logs := &syncBuffer{}
	klog.SetOutput(logs)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "app"},
			StringData: map[string]string{"password": canary},
		})
	}))
	defer srv.Close()
	useClient := func() {
		t.Helper()
		// A new client each time: client-go decides whether to wrap its
		// transport in a logging one when the client is made.
		// JSON both ways, so that the canary is one string in a logged body.
		kube, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, BearerToken: "token-" + canary,
			ContentConfig: rest.ContentConfig{ContentType: "application/json", AcceptContentTypes: "application/json"}})
		if err != nil {
			t.Fatal(err)
		}
		secrets := kube.CoreV1().Secrets("app")
		ctx := context.Background()
		if _, err := secrets.Get(ctx, "db", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": canary}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	useClient()
	if out := logs.take(); !strings.Contains(out, canary) {
		t.Fatalf("without the cap, client-go should log the bodies at -v=10; the test cannot see its logging:\n%s", out)
	}

	if err := Apply(); err != nil {
		t.Fatal(err)
	}
	useClient()
	klog.V(10).InfoS("Still verbose", "marker", "v10-marker")
	out := logs.take()
	for _, leak := range []string{canary, "curl -v", "Response Body", "Request Body"} {
		if strings.Contains(out, leak) {
			t.Errorf("with the cap, the log still has %q:\n%s", leak, out)
		}
	}
	if !strings.Contains(out, "v10-marker") {
		t.Errorf("other files should keep -v=10:\n%s", out)
	}
	if !strings.Contains(out, srv.URL) {
		t.Errorf("client-go should still log URLs (V(6)):\n%s", out)
	}
}
