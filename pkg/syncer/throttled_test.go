package syncer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/veil-dev/veil/pkg/generated/clientset/versioned"
)

// A 429 from veil-apiserver returns to the syncer at once, with its delay,
// instead of holding the worker through client-go's retries; kube-apiserver's
// own 429s keep client-go's handling.
func TestThrottledValueReadsDoNotHoldTheWorker(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests","code":429,` +
			`"message":"namespace app is using more than its share","details":{"retryAfterSeconds":7}}`))
	}))
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL}
	cfg.Wrap(noWaitOnThrottle)
	veil, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = veil.ExternalsecretsV1alpha1().ExternalSecretValues("app").Get(ctx, "db", metav1.GetOptions{})
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("got %v, want 429", err)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("veil-apiserver was asked %d times, want once", n)
	}
	if s, ok := apierrors.SuggestsClientDelay(err); !ok || s != 7 {
		t.Errorf("the delay %d (%v) did not reach the syncer", s, ok)
	}

	// Other groups keep client-go's retries after Retry-After.
	hits.Store(0)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel2()
	_, _ = kube.CoreV1().Secrets("app").Get(short, "s", metav1.GetOptions{})
	if n := hits.Load(); n < 2 {
		t.Errorf("kube-apiserver's 429 was tried %d times, want client-go's retries", n)
	}
}
