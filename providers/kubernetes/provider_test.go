package kubeprovider_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/veil-dev/veil/pkg/providers/remote"
	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
	"github.com/veil-dev/veil/test/harness"
)

// dial is a client of p with the certificate cert.
func dial(t *testing.T, p *provider, cert *harness.Pair) providerv1.ProviderClient {
	t.Helper()
	creds, err := remote.ClientTLS(remote.TLSFiles{CertFile: cert.CertFile, KeyFile: cert.KeyFile, CAFile: p.ca.CertFile}, providerIdentity)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.address, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return providerv1.NewProviderClient(conn)
}

// reasonOf is the ErrorDetail reason of a call's error.
func reasonOf(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if e, ok := d.(*providerv1.ErrorDetail); ok {
			return e.Reason
		}
	}
	return ""
}

func wantRefused(t *testing.T, err error, what string, code codes.Code, reason, says string) {
	t.Helper()
	if status.Code(err) != code || reasonOf(err) != reason || !strings.Contains(err.Error(), says) {
		t.Errorf("%s: %v, want %s with reason %s saying %q", what, err, code, reason, says)
	}
}

func ref(ns, name string) *providerv1.StoreRef {
	return &providerv1.StoreRef{Kind: "SecretStore", Namespace: ns, Name: name}
}

func createSecret(t *testing.T, ns, name string, data map[string]string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: data}
	out, err := cluster.KubeClient.CoreV1().Secrets(ns).Create(ctxFor(t), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func version(s *corev1.Secret) string { return string(s.UID) + "/" + s.ResourceVersion }

// change is a Change received, and when.
type change struct {
	c  *providerv1.Change
	at time.Time
}

// TestWatchChanges: a stream opened on keys sends their initial state in
// the order asked, then a Change within seconds of each write to one of
// them, of the creation of one, and of a deletion (without a version); a
// Secret not watched moves nothing. The provider runs as the shipped
// Role's ServiceAccount: watch is in it.
func TestWatchChanges(t *testing.T) {
	source, providerNS := namespace(t, "source-"), namespace(t, "providers-")
	kubeconfig := installRBAC(t, providerNS, source)
	p := startProvider(t, "stores:\n"+storeConfig("SecretStore", "team-a", "shared", source, kubeconfig, ""))
	c := dial(t, p, p.client)
	canary := "watch-canary-" + rand.String(8)
	db := createSecret(t, source, "db", map[string]string{"password": canary + "-first"})
	createSecret(t, source, "unwatched", map[string]string{"password": canary + "-unwatched"})

	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	dup, err := c.WatchChanges(ctx, &providerv1.WatchChangesRequest{Store: ref("team-a", "shared"), Keys: []string{"db", "db"}})
	if err == nil {
		_, err = dup.Recv()
	}
	wantRefused(t, err, "a watch naming a key twice", codes.InvalidArgument, "Invalid", `names key "db" twice`)

	keys := []string{"db", "later", "not/a/secret"}
	stream, err := c.WatchChanges(ctx, &providerv1.WatchChangesRequest{Store: ref("team-a", "shared"), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	changes := make(chan change, 64)
	streamErr := make(chan error, 1)
	go func() {
		for {
			ch, err := stream.Recv()
			if err != nil {
				streamErr <- err
				close(changes)
				return
			}
			changes <- change{ch, time.Now()}
		}
	}()
	recv := func(within time.Duration) (change, bool) {
		t.Helper()
		select {
		case ch, ok := <-changes:
			if !ok {
				t.Fatalf("the stream ended: %v", <-streamErr)
			}
			return ch, true
		case <-time.After(within):
			return change{}, false
		}
	}
	for i, want := range []string{version(db), "", ""} {
		ch, ok := recv(10 * time.Second)
		if !ok {
			t.Fatalf("initial state: %d of %d keys within 10s", i, len(keys))
		}
		if ch.c.GetKey() != keys[i] || ch.c.GetVersion().GetId() != want {
			t.Fatalf("initial state %d: key %q version %q, want key %q version %q", i, ch.c.GetKey(), ch.c.GetVersion().GetId(), keys[i], want)
		}
	}

	// next waits for the Change of key at version want; any other
	// Change fails the test: a key that did not move sends nothing.
	next := func(key, want string, at time.Time) *providerv1.Change {
		t.Helper()
		ch, ok := recv(5 * time.Second)
		if !ok {
			t.Fatalf("no Change of %q within 5s", key)
		}
		if ch.c.GetKey() != key || ch.c.GetVersion().GetId() != want {
			t.Fatalf("a Change of %q at %q, want %q at %q", ch.c.GetKey(), ch.c.GetVersion().GetId(), key, want)
		}
		t.Logf("%s at %q reached the stream %s after the write", key, want, ch.at.Sub(at).Round(time.Millisecond))
		return ch.c
	}
	update := func(name, value string) (*corev1.Secret, time.Time) {
		t.Helper()
		secrets := cluster.KubeClient.CoreV1().Secrets(source)
		s, err := secrets.Get(ctxFor(t), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Data = map[string][]byte{"password": []byte(value)}
		at := time.Now()
		out, err := secrets.Update(ctxFor(t), s, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return out, at
	}

	s, at := update("db", canary+"-second")
	if ch := next("db", version(s), at); ch.GetVersion().GetChangedUnixNano() == 0 {
		t.Error("the Change carries no time of change, though the Secret's managed fields have one")
	}
	update("unwatched", canary+"-unwatched-2")
	s, at = update("db", canary+"-third")
	next("db", version(s), at)
	at = time.Now()
	later := createSecret(t, source, "later", map[string]string{"k": canary + "-later"})
	next("later", version(later), at)
	at = time.Now()
	if err := cluster.KubeClient.CoreV1().Secrets(source).Delete(ctxFor(t), "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if ch := next("db", "", at); ch.Version != nil {
		t.Errorf("the deletion of a watched key: a Change with version %v, want none", ch.Version)
	}
	if strings.Contains(p.logs.String(), canary) {
		t.Error("a value written is in the provider's log")
	}
}

// TestRefusesUnlistedStore: a store the configuration does not list is
// refused (Forbidden) on every call, whoever asks; a stream open on a
// store the configuration stops serving ends, refused the same way.
func TestRefusesUnlistedStore(t *testing.T) {
	source, providerNS := namespace(t, "source-"), namespace(t, "providers-")
	kubeconfig := installRBAC(t, providerNS, source)
	createSecret(t, source, "db", map[string]string{"password": "v"})
	served := "stores:\n" + storeConfig("SecretStore", "team-a", "shared", source, kubeconfig, "")
	p := startProvider(t, served)
	c := dial(t, p, p.client)
	ctx := ctxFor(t)

	for _, r := range []*providerv1.StoreRef{ref("team-b", "shared"), ref("team-a", "other"), {Kind: "ClusterSecretStore", Name: "shared"}} {
		_, err := c.Handshake(ctx, &providerv1.HandshakeRequest{ProtocolVersions: []uint32{1}, Store: r})
		wantRefused(t, err, "a handshake for "+r.String(), codes.PermissionDenied, "Forbidden", "does not serve")
		_, err = c.Get(ctx, &providerv1.GetRequest{Store: r, Ref: &providerv1.Ref{Key: "db"}})
		wantRefused(t, err, "a read for "+r.String(), codes.PermissionDenied, "Forbidden", "does not serve")
		_, err = c.Find(ctx, &providerv1.FindRequest{Store: r})
		wantRefused(t, err, "a find for "+r.String(), codes.PermissionDenied, "Forbidden", "does not serve")
		stream, err := c.WatchChanges(ctx, &providerv1.WatchChangesRequest{Store: r, Keys: []string{"db"}})
		if err == nil {
			_, err = stream.Recv()
		}
		wantRefused(t, err, "a watch for "+r.String(), codes.PermissionDenied, "Forbidden", "does not serve")
	}

	// The listed store is served: a handshake says what it does.
	hs, err := c.Handshake(ctx, &providerv1.HandshakeRequest{ProtocolVersions: []uint32{7, 1}, Store: ref("team-a", "shared")})
	if err != nil {
		t.Fatal(err)
	}
	if caps := hs.GetCapabilities(); hs.GetProtocolVersion() != 1 || hs.GetProvider() != "kubernetes" || !caps.GetReadOnly() || !caps.GetChangeStream() || !caps.GetVersions() || !caps.GetBatchGet() {
		t.Errorf("handshake: %v", hs)
	}
	_, err = c.Handshake(ctx, &providerv1.HandshakeRequest{ProtocolVersions: []uint32{2, 3}, Store: ref("team-a", "shared")})
	wantRefused(t, err, "a handshake in versions the provider does not speak", codes.InvalidArgument, "Invalid", "speaks provider protocol versions [2 3]")
	_, err = c.Push(ctx, &providerv1.PushRequest{Store: ref("team-a", "shared"), Key: "db", Value: []byte("x")})
	wantRefused(t, err, "a push", codes.PermissionDenied, "Forbidden", "read-only")
	_, err = c.Delete(ctx, &providerv1.DeleteRequest{Store: ref("team-a", "shared"), Key: "db"})
	wantRefused(t, err, "a delete", codes.PermissionDenied, "Forbidden", "read-only")

	// A stream on the store, which the configuration then drops.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.WatchChanges(wctx, &providerv1.WatchChangesRequest{Store: ref("team-a", "shared"), Keys: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	// The stream is open once a read shows the configuration in force.
	if _, err := c.Get(ctx, &providerv1.GetRequest{Store: ref("team-a", "shared"), Ref: &providerv1.Ref{Key: "db"}}); err != nil {
		t.Fatal(err)
	}
	p.writeConfig(t, "stores:\n"+storeConfig("SecretStore", "team-a", "elsewhere", source, kubeconfig, ""))
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		// "no longer serves" if the stream was open, "does not serve" if
		// the change came first: refused either way.
		wantRefused(t, err, "a stream on a store the configuration dropped", codes.PermissionDenied, "Forbidden", "serve")
	case <-time.After(15 * time.Second):
		t.Fatal("a stream on a store the configuration dropped is still open 15s later")
	}
}

// TestRBACIsLeast: the shipped RBAC is a Role of get, list and watch on
// secrets and nothing more; under it the provider reads its source
// namespace and nothing else: another namespace's Secrets are refused to
// it, by kube-apiserver, whatever its configuration says.
func TestRBACIsLeast(t *testing.T) {
	raw, err := os.ReadFile("deploy/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		switch o := obj.(type) {
		case *rbacv1.Role:
			if len(o.Rules) != 1 {
				t.Fatalf("the Role has %d rules, want 1", len(o.Rules))
			}
			r := o.Rules[0]
			if fmt.Sprint(r.APIGroups, r.Resources, r.Verbs, r.NonResourceURLs) != "[] [secrets] [get list watch] []" {
				t.Errorf("the Role grants %v %v %v %v, want get, list and watch on secrets", r.APIGroups, r.Resources, r.Verbs, r.NonResourceURLs)
			}
		case *rbacv1.RoleBinding:
			if o.RoleRef.Kind != "Role" {
				t.Errorf("the RoleBinding binds a %s: only the Role", o.RoleRef.Kind)
			}
		case *corev1.ServiceAccount:
		default:
			t.Errorf("deploy/rbac.yaml holds a %T: a ClusterRole or anything cluster-wide has no place there", obj)
		}
	}

	source, other, providerNS := namespace(t, "source-"), namespace(t, "other-"), namespace(t, "providers-")
	kubeconfig := installRBAC(t, providerNS, source)
	createSecret(t, source, "db", map[string]string{"password": "readable"})
	createSecret(t, other, "db", map[string]string{"password": "not-for-the-provider"})

	// Directly, as its ServiceAccount.
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	as, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	if _, err := as.CoreV1().Secrets(source).Get(ctx, "db", metav1.GetOptions{}); err != nil {
		t.Errorf("the ServiceAccount cannot get a Secret of its source namespace: %v", err)
	}
	if _, err := as.CoreV1().Secrets(source).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("the ServiceAccount cannot list the Secrets of its source namespace: %v", err)
	}
	for what, err := range map[string]error{
		"get another namespace's Secret": func() error { _, err := as.CoreV1().Secrets(other).Get(ctx, "db", metav1.GetOptions{}); return err }(),
		"list Secrets cluster-wide":      func() error { _, err := as.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); return err }(),
		"create a Secret": func() error {
			_, err := as.CoreV1().Secrets(source).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "new"}}, metav1.CreateOptions{})
			return err
		}(),
		"update a Secret": func() error {
			_, err := as.CoreV1().Secrets(source).Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}}, metav1.UpdateOptions{})
			return err
		}(),
		"delete a Secret": as.CoreV1().Secrets(source).Delete(ctx, "db", metav1.DeleteOptions{}),
		"read a ConfigMap": func() error {
			_, err := as.CoreV1().ConfigMaps(source).List(ctx, metav1.ListOptions{})
			return err
		}(),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("the ServiceAccount may %s: %v, want Forbidden", what, err)
		}
	}

	// Through the provider: a store whose configuration names the other
	// namespace is refused by kube-apiserver, and says what to grant.
	p := startProvider(t, "stores:\n"+
		storeConfig("SecretStore", "team-a", "shared", source, kubeconfig, "")+
		storeConfig("SecretStore", "team-a", "other", other, kubeconfig, ""))
	c := dial(t, p, p.client)
	got, err := c.Get(ctx, &providerv1.GetRequest{Store: ref("team-a", "shared"), Ref: &providerv1.Ref{Key: "db"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"password":"readable"}`; string(got.GetValue().GetData()) != want {
		t.Errorf("read %d bytes, not the Secret's data as one JSON object", len(got.GetValue().GetData()))
	}
	_, err = c.Get(ctx, &providerv1.GetRequest{Store: ref("team-a", "other"), Ref: &providerv1.Ref{Key: "db"}})
	wantRefused(t, err, "a read of another namespace", codes.PermissionDenied, "Forbidden", `grant it get, list and watch on secrets in namespace "`+other+`"`)
	_, err = c.Validate(ctx, &providerv1.ValidateRequest{Store: ref("team-a", "other")})
	wantRefused(t, err, "validating a store of another namespace", codes.PermissionDenied, "Forbidden", "refused this provider's identity")
	if strings.Contains(p.logs.String(), "not-for-the-provider") || strings.Contains(p.logs.String(), "readable") {
		t.Error("a value is in the provider's log")
	}
}

// TestMutualTLS: the provider serves only the pinned client identity,
// only over TLS 1.3, and takes a rotated certificate without a restart.
func TestMutualTLS(t *testing.T) {
	source, providerNS := namespace(t, "source-"), namespace(t, "providers-")
	kubeconfig := installRBAC(t, providerNS, source)
	p := startProvider(t, "stores:\n"+storeConfig("SecretStore", "team-a", "shared", source, kubeconfig, ""))
	ctx := ctxFor(t)
	hello := func(c providerv1.ProviderClient) error {
		_, err := c.Handshake(ctx, &providerv1.HandshakeRequest{ProtocolVersions: []uint32{1}, Store: ref("team-a", "shared")})
		return err
	}
	if err := hello(dial(t, p, p.client)); err != nil {
		t.Fatalf("the allowed client: %v", err)
	}
	dir := t.TempDir()
	other, err := p.ca.IssueWorkload(dir, "other", "spiffe://cluster.local/ns/team-a/sa/intruder")
	if err != nil {
		t.Fatal(err)
	}
	if err := hello(dial(t, p, other)); status.Code(err) != codes.Unavailable {
		t.Errorf("a client of another identity, signed by the same CA: %v, want the handshake refused", err)
	}
	foreign, err := harness.NewCA(dir, "foreign")
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := foreign.IssueWorkload(dir, "impostor", clientIdentity)
	if err != nil {
		t.Fatal(err)
	}
	if err := hello(dial(t, p, impostor)); status.Code(err) != codes.Unavailable {
		t.Errorf("the right identity from another CA: %v, want the handshake refused", err)
	}
	cert, err := tls.LoadX509KeyPair(p.client.CertFile, p.client.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	old := &tls.Config{MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ServerName: providerIdentity, RootCAs: poolOf(t, p.ca.CertPEM)}
	if conn, err := tls.Dial("tcp", p.address, old); err == nil {
		conn.Close()
		t.Error("a TLS 1.2 handshake succeeded")
	}

	// Rotation: a new CA for clients, files renamed in place; the old
	// client certificate stops working and the new one works, no restart.
	rotated, err := harness.NewCA(dir, "rotated")
	if err != nil {
		t.Fatal(err)
	}
	newClient, err := rotated.IssueWorkload(dir, "new-client", clientIdentity)
	if err != nil {
		t.Fatal(err)
	}
	clientCA := p.ca.CertFile // the provider's --client-ca-file
	if err := os.WriteFile(clientCA+".tmp", rotated.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(clientCA+".tmp", clientCA); err != nil {
		t.Fatal(err)
	}
	// dial verifies the provider against p.ca.CertFile, now the rotated
	// CA: the provider's own certificate is the old CA's, so keep that
	// one for verifying it.
	serverCA := dir + "/server-ca.crt"
	if err := os.WriteFile(serverCA, p.ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	dialWith := func(pair *harness.Pair) error {
		creds, err := remote.ClientTLS(remote.TLSFiles{CertFile: pair.CertFile, KeyFile: pair.KeyFile, CAFile: serverCA}, providerIdentity)
		if err != nil {
			return err
		}
		conn, err := grpc.NewClient(p.address, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		return hello(providerv1.NewProviderClient(conn))
	}
	if err := dialWith(newClient); err != nil {
		t.Errorf("a client of the rotated CA: %v", err)
	}
	if err := dialWith(p.client); status.Code(err) != codes.Unavailable {
		t.Errorf("a client of the CA rotated out: %v, want refused", err)
	}
}

func poolOf(t *testing.T, pemData []byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatal("no certificate in the CA's PEM")
	}
	return pool
}

// TestLimits: a store's rate, its open change streams and the size of a
// response are bounded, and what is over them is refused with the reason
// and, for the rate, when to try again.
func TestLimits(t *testing.T) {
	source, providerNS := namespace(t, "source-"), namespace(t, "providers-")
	kubeconfig := installRBAC(t, providerNS, source)
	big := make([]byte, 900<<10)
	for i := range big {
		big[i] = byte(i%251) | 0x80 // not UTF-8: carried as base64, a third larger
	}
	for _, name := range []string{"big-a", "big-b"} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{"blob": big}}
		if _, err := cluster.KubeClient.CoreV1().Secrets(source).Create(ctxFor(t), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	p := startProvider(t, "stores:\n"+
		storeConfig("SecretStore", "team-a", "slow", source, kubeconfig, "  limits: {qps: 0.2, burst: 2}\n")+
		storeConfig("SecretStore", "team-a", "one-stream", source, kubeconfig, "  limits: {watches: 1}\n"))
	c := dial(t, p, p.client)
	ctx := ctxFor(t)

	get := func() error {
		_, err := c.Get(ctx, &providerv1.GetRequest{Store: ref("team-a", "slow"), Ref: &providerv1.Ref{Key: "big-a"}})
		return err
	}
	for i := range 2 {
		if err := get(); err != nil {
			t.Fatalf("call %d, within the burst: %v", i+1, err)
		}
	}
	err := get()
	wantRefused(t, err, "a call over the store's rate", codes.ResourceExhausted, "Throttled", "calls per second")
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if e, ok := d.(*providerv1.ErrorDetail); ok && e.RetryAfterMillis != 5000 {
			t.Errorf("retry after %dms, want 5000 (one call at 0.2 a second)", e.RetryAfterMillis)
		}
	}

	// Two values of 1.2 MiB of JSON each: more than one response carries.
	_, err = c.GetBatch(ctx, &providerv1.GetBatchRequest{Store: ref("team-a", "one-stream"), Refs: []*providerv1.Ref{{Key: "big-a"}, {Key: "big-b"}}})
	wantRefused(t, err, "a batch larger than a message", codes.InvalidArgument, "Invalid", "ask for fewer")
	_, err = c.Find(ctx, &providerv1.FindRequest{Store: ref("team-a", "one-stream"), Path: "big-"})
	wantRefused(t, err, "a find larger than a message", codes.InvalidArgument, "Invalid", "ask for fewer")
	one, err := c.Get(ctx, &providerv1.GetRequest{Store: ref("team-a", "one-stream"), Ref: &providerv1.Ref{Key: "big-b"}})
	if err != nil {
		t.Fatalf("one value within a message: %v", err)
	}
	if n := len(one.GetValue().GetData()); n < len(big) {
		t.Errorf("the value is %d bytes, less than the %d of the Secret", n, len(big))
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first, err := c.WatchChanges(wctx, &providerv1.WatchChangesRequest{Store: ref("team-a", "one-stream"), Keys: []string{"big-a"}})
	if err == nil {
		_, err = first.Recv() // its initial state: the stream is open
	}
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.WatchChanges(wctx, &providerv1.WatchChangesRequest{Store: ref("team-a", "one-stream"), Keys: []string{"big-b"}})
	if err == nil {
		_, err = second.Recv()
	}
	wantRefused(t, err, "a second stream where one is admitted", codes.ResourceExhausted, "Throttled", "change streams open")
}

// TestWatchResync: a stream whose watch of kube-apiserver is cut ends as
// Unavailable (the client opens it again), and the new stream's initial
// state carries the write made while no stream was open: no change is
// lost to a lost connection.
func TestWatchResync(t *testing.T) {
	source, providerNS := namespace(t, "source-"), namespace(t, "providers-")
	proxy := startProxy(t, strings.TrimPrefix(cluster.APIServerURL, "https://"))
	kubeconfig := throughProxy(t, installRBAC(t, providerNS, source), proxy.address)
	db := createSecret(t, source, "db", map[string]string{"password": "first"})
	p := startProvider(t, "stores:\n"+storeConfig("SecretStore", "team-a", "shared", source, kubeconfig, ""))
	c := dial(t, p, p.client)
	ctx := ctxFor(t)
	open := func() (grpc.ServerStreamingClient[providerv1.Change], string) {
		t.Helper()
		stream, err := c.WatchChanges(ctx, &providerv1.WatchChangesRequest{Store: ref("team-a", "shared"), Keys: []string{"db"}})
		if err != nil {
			t.Fatal(err)
		}
		initial, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return stream, initial.GetVersion().GetId()
	}
	stream, v := open()
	if v != version(db) {
		t.Fatalf("initial state at %q, want %q", v, version(db))
	}

	proxy.stop()
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		wantRefused(t, err, "a stream whose watch was cut", codes.Unavailable, "Unavailable", "listing the Secrets")
	case <-time.After(30 * time.Second):
		t.Fatal("a stream whose watch of kube-apiserver was cut is still open 30s later")
	}
	cur, err := cluster.KubeClient.CoreV1().Secrets(source).Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.StringData = map[string]string{"password": "while-cut"}
	s, err := cluster.KubeClient.CoreV1().Secrets(source).Update(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	proxy.start(t)
	if _, v := open(); v != version(s) {
		t.Errorf("the new stream's initial state is at %q, not %q, the write made while none was open", v, version(s))
	}
}
