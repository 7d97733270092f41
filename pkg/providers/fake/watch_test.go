package fake

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/providers/remote"
	"github.com/veil-dev/veil/test/harness"
)

const watchCanary = "canary-fake-watch-51d2"

// fakeConfig is a veil-provider configuration serving SecretStore app/db
// from the fake provider, with app/db's value given.
func fakeConfig(value, other string) string {
	return `stores:
- kind: SecretStore
  namespace: app
  name: db
  keyPrefixes: ["app/"]
  provider:
    fake:
      data:
      - {key: app/db, value: "` + value + `"}
      - {key: app/other, value: "` + other + `"}
`
}

// The fake provider, served out of process by remote.Serve over mutual
// TLS, reports its initial state, then the change of a value made by
// rewriting the provider's configuration (the fake's values are its
// store's spec), and only that key's.
func TestWatchChangesOutOfProcess(t *testing.T) {
	dir := t.TempDir()
	ca, err := harness.NewCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	const serverName = "veil-provider-fake.veil-providers.svc"
	serving, err := ca.Issue(dir, "serving", "veil-provider-fake", nil, []string{serverName})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.IssueWorkload(dir, "client", harness.VeilProviderClientID)
	if err != nil {
		t.Fatal(err)
	}
	configPath := filepath.Join(dir, "config.yaml")
	writeConfig := func(value, other string) {
		t.Helper()
		tmp := configPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(fakeConfig(value, other)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, configPath); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(watchCanary+"-1", "o1")

	p, err := providers.For(&configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := remote.NewServer(p, configPath, providers.Env{})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := remote.ServerTLS(remote.TLSFiles{CertFile: serving.CertFile, KeyFile: serving.KeyFile, CAFile: ca.CertFile}, harness.VeilProviderClientID)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- remote.Serve(ctx, lis, srv, creds) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	rp, err := remote.NewProvider("fake", remote.Endpoint{Address: lis.Addr().String(), Identity: serverName,
		TLS: remote.TLSFiles{CertFile: client.CertFile, KeyFile: client.KeyFile, CAFile: ca.CertFile}})
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	store := &providers.Store{Kind: configv1alpha1.SecretStoreKind, Namespace: "app", Name: "db", Generation: 1,
		Spec: &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Remote: &configv1alpha1.RemoteProvider{Registration: "fake"}}}}
	hctx, hcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer hcancel()
	c, err := rp.NewClient(hctx, store, nil, providers.Env{})
	if err != nil {
		t.Fatal(err)
	}
	cw, ok := c.(providers.ChangeWatcher)
	if !ok {
		t.Fatal("the fake provider served out of process offers no ChangeWatcher")
	}
	if _, ok := c.(providers.VersionLister); ok {
		t.Error("the fake provider lists no versions, but its remote client is a VersionLister")
	}

	changes := make(chan providers.KeyChange, 16)
	wctx, wcancel := context.WithCancel(context.Background())
	watched := make(chan error, 1)
	go func() {
		watched <- cw.WatchChanges(wctx, []string{"app/db", "app/other", "app/missing"}, func(kc providers.KeyChange) error { changes <- kc; return nil })
	}()
	next := func() providers.KeyChange {
		t.Helper()
		select {
		case kc := <-changes:
			if strings.Contains(kc.Version.ID, watchCanary) {
				t.Errorf("the version of %s carries the value", kc.Key)
			}
			return kc
		case err := <-watched:
			t.Fatalf("the watch ended: %v", err)
		case <-time.After(15 * time.Second):
			t.Fatal("no change within 15s")
		}
		return providers.KeyChange{}
	}
	db, other, missing := next(), next(), next()
	if db.Key != "app/db" || !db.Exists || other.Key != "app/other" || !other.Exists || missing.Key != "app/missing" || missing.Exists {
		t.Fatalf("initial state: %+v %+v %+v", db, other, missing)
	}

	writeConfig(watchCanary+"-2", "o1")
	changed := next()
	if changed.Key != "app/db" || !changed.Exists || changed.Version.ID == db.Version.ID {
		t.Fatalf("after app/db's value changed: %+v (was %q)", changed, db.Version.ID)
	}
	if v, err := c.Get(hctx, providers.Ref{Key: "app/db"}); err != nil || string(v.Data) != watchCanary+"-2" {
		t.Fatalf("reading the changed value: %v", err)
	}
	// A configuration that changes app/other only: app/db, whose value
	// stayed, is not reported again.
	writeConfig(watchCanary+"-2", "o2")
	if kc := next(); kc.Key != "app/other" || kc.Version.ID == other.Version.ID {
		t.Fatalf("after only app/other changed: %+v", kc)
	}
	wcancel()
	if err := <-watched; err != nil {
		t.Errorf("a canceled watch returned %v", err)
	}
}
