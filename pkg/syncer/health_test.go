package syncer

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/server/healthz"
	clienttesting "k8s.io/client-go/testing"

	veilfake "github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	configinformers "github.com/veil-dev/veil/pkg/generated/informers/externalversions"
)

// TestReadyzWaitsForInformers: /readyz fails while the ExternalSecret and
// PushSecret informers have not listed, and passes once they have;
// /healthz follows the leader election check alone.
func TestReadyzWaitsForInformers(t *testing.T) {
	veil := veilfake.NewSimpleClientset()
	listed := make(chan struct{})
	veil.PrependReactor("list", "*", func(clienttesting.Action) (bool, runtime.Object, error) {
		<-listed
		return false, nil, nil
	})
	informers := configinformers.NewSharedInformerFactory(veil, 0)
	es := informers.Config().V1alpha1().ExternalSecrets().Informer()
	ps := informers.Config().V1alpha1().PushSecrets().Informer()
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		cancel()
		informers.Shutdown()
	}()
	informers.Start(ctx.Done())

	var leaderErr atomic.Pointer[error]
	leader := healthz.NamedCheck("leaderElection", func(*http.Request) error {
		if err := leaderErr.Load(); err != nil {
			return *err
		}
		return nil
	})
	srv := httptest.NewServer(monitoring(leader, informers))
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	if code, body := get("/readyz"); code == http.StatusOK || !strings.Contains(body, "[-]informer-sync failed") {
		t.Errorf("/readyz before the informers listed: %d\n%s\nwant a failure naming informer-sync", code, body)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz of a healthy leader: %d\n%s", code, body)
	}

	close(listed)
	deadline := time.Now().Add(30 * time.Second)
	for !es.HasSynced() || !ps.HasSynced() {
		if time.Now().After(deadline) {
			t.Fatal("the informers never synced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once the informers listed: %d\n%s", code, body)
	}

	err := errors.New("failed to renew the lease")
	leaderErr.Store(&err)
	if code, body := get("/healthz"); code == http.StatusOK || !strings.Contains(body, "[-]leaderElection failed") || strings.Contains(body, "renew") {
		t.Errorf("/healthz of a leader that cannot renew: %d\n%s\nwant a failure naming the check, its error withheld", code, body)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz depends on leader election: %d", code)
	}
}
