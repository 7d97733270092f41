package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	"github.com/veil-dev/veil/test/harness"
)

// TestHighAvailability runs two veil-apiserver replicas behind one
// Service with an EndpointSlice each, kube-apiserver routing to the
// endpoints as in a cluster, in a control plane of its own.
func TestHighAvailability(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append(withoutFeed(veilArgs),
		// As a Deployment should run it: a replica told to stop keeps
		// serving while its endpoint is withdrawn.
		"--shutdown-delay-duration=3s",
		// Each replica's audit feed on a port of its own; the leader
		// points veil-apiserver-leader at itself (a documentation
		// address: nothing connects to it here).
		"--vault-audit-feed=http://127.0.0.1:1@127.0.0.1:0", "--vault-audit-sources=127.0.0.1",
		"--leader-endpointslice="+leaderSlice, "--leader-address=192.0.2.10")
	ha, err := harness.Start(ctx, harness.Options{Progress: os.Stderr, Keep: *keep, VeilArgs: args, VeilReplicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ha.Stop)
	t.Cleanup(func() {
		if t.Failed() {
			ha.DumpLogs(os.Stderr, 40)
		}
	})
	replicas := make([]versioned.Interface, 2)
	for i := range replicas {
		if replicas[i], err = ha.VeilReplicaClient(i, "admin", "system:masters"); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("ReadsAfterAPushAgreeOnEveryReplica", func(t *testing.T) { haPushAgrees(t, ha, replicas) })
	t.Run("ReadsAndWatchesOutliveAReplica", func(t *testing.T) { haReadsOutliveAReplica(t, ha) })
	t.Run("AuditFeedFollowsTheLease", func(t *testing.T) { haFeedFollowsTheLease(t, ha) })
}

const leaderSlice = "veil-apiserver-leader"

// haFeedFollowsTheLease: only the replica holding the change detection
// Lease takes Vault's audit feed connections, and it points the leader's
// EndpointSlice at itself (with the chart's RBAC: get and update of that
// one slice); when it stops, the next leader does, and the connection Vault
// held to the old one is closed so that Vault reconnects to the new one.
func haFeedFollowsTheLease(t *testing.T, ha *harness.Cluster) {
	ctx := ctxFor(t)
	kube := ha.KubeClient
	ns := harness.VeilNamespace
	if _, err := kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: leaderSlice},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, ResourceNames: []string{leaderSlice}, Verbs: []string{"get", "update"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: leaderSlice},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: leaderSlice},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: harness.VeilServiceAccount, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// As the chart renders it: no endpoint until a leader writes one.
	if _, err := kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: leaderSlice, Labels: map[string]string{discoveryv1.LabelServiceName: "veil-apiserver-vault-audit", discoveryv1.LabelManagedBy: "veil-apiserver"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Each replica's feed port, from its log.
	feedPort := func(i int) int32 {
		name := "veil-apiserver"
		if i > 0 {
			name = fmt.Sprintf("veil-apiserver-%d", i)
		}
		var port int32
		eventually(t, func() error {
			b, err := os.ReadFile(filepath.Join(ha.Dir, "logs", name+".log"))
			if err != nil {
				return err
			}
			m := regexp.MustCompile(`Following Vault's socket audit device.*address="127\.0\.0\.1:(\d+)"`).FindAllSubmatch(b, -1)
			if len(m) == 0 {
				return fmt.Errorf("%s has not logged its audit feed's address", name)
			}
			p, _ := strconv.Atoi(string(m[len(m)-1][1]))
			port = int32(p)
			return nil
		})
		return port
	}
	// The slice's port, once a leader wrote it (and not old).
	sliceLeader := func(ports [2]int32, not int32) int {
		leader := -1
		eventually(t, func() error {
			s, err := kube.DiscoveryV1().EndpointSlices(ns).Get(ctx, leaderSlice, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(s.Endpoints) != 1 || len(s.Endpoints[0].Addresses) != 1 || s.Endpoints[0].Addresses[0] != "192.0.2.10" || len(s.Ports) != 1 || s.Ports[0].Port == nil {
				return fmt.Errorf("the leader's EndpointSlice is %+v %+v", s.Endpoints, s.Ports)
			}
			p := *s.Ports[0].Port
			if p == not {
				return fmt.Errorf("the leader's EndpointSlice still names port %d", p)
			}
			if *s.Ports[0].Name != "vault-audit-0" {
				return fmt.Errorf("the leader's EndpointSlice names port %q", *s.Ports[0].Name)
			}
			for i, q := range ports {
				if q == p {
					leader = i
					return nil
				}
			}
			return fmt.Errorf("the leader's EndpointSlice names port %d, no replica's feed (%v)", p, ports)
		})
		return leader
	}
	ports := [2]int32{feedPort(0), feedPort(1)}
	leader := sliceLeader(ports, 0)
	follower := 1 - leader
	lease, err := kube.CoordinationV1().Leases(ns).Get(ctx, "veil-apiserver-change-detection", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantHolder := "veil-apiserver"
	if leader > 0 {
		wantHolder = fmt.Sprintf("veil-apiserver-%d", leader)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != wantHolder {
		t.Fatalf("the leader's EndpointSlice names %s's feed, but the Lease is held by %v", wantHolder, lease.Spec.HolderIdentity)
	}

	// The follower turns a feed connection away; the leader keeps one.
	dial := func(port int32) net.Conn {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	closed := func(c net.Conn, within time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(within))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
	if !closed(dial(ports[follower]), 10*time.Second) {
		t.Error("the replica without the Lease kept an audit feed connection open")
	}
	held := dial(ports[leader])
	if closed(held, time.Second) {
		t.Fatal("the leader closed an audit feed connection")
	}

	// The leader stops: the follower takes the Lease and the slice, and
	// the connection to the old leader is gone.
	if err := ha.StopVeilReplica(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if !closed(held, 30*time.Second) {
		t.Error("the connection to a stopped leader's feed stayed open")
	}
	if got := sliceLeader(ports, ports[leader]); got != follower {
		t.Errorf("after the leader stopped, the leader's EndpointSlice names replica %d, want %d", got, follower)
	}
	if err := ha.StartVeilReplica(ctx, leader); err != nil {
		t.Fatal(err)
	}
}

func haNamespace(t *testing.T, ha *harness.Cluster) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique("ha-")}}
	if _, err := ha.KubeClient.CoreV1().Namespaces().Create(ctxFor(t), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// haPushAgrees: a push through one replica is read at once through the
// other, though both cached the value before with an hour to live.
func haPushAgrees(t *testing.T, ha *harness.Cluster, replicas []versioned.Interface) {
	ctx := ctxFor(t)
	v, err := ha.StartVault(ctx, unique("vault-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	if err := v.Policy(ctx, "writer", vaultWriterPolicy); err != nil {
		t.Fatal(err)
	}
	tok, err := v.Token(ctx, time.Hour, "writer")
	if err != nil {
		t.Fatal(err)
	}
	ns := haNamespace(t, ha)
	if _, err := ha.KubeClient.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "token"}, StringData: map[string]string{"token": tok}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	veil := ha.VeilClient.ConfigV1alpha1()
	if _, err := veil.SecretStores(ns).Create(ctx, &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "vault"},
		Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{
			Server: v.HTTPSURL, CABundle: v.CA.CertPEM,
			Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "token", Key: "token"}},
		}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := veil.PushSecrets(ns).Create(ctx, &configv1alpha1.PushSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: configv1alpha1.PushSecretSpec{
			SecretStoreRefs: []configv1alpha1.SecretStoreRef{storeRef("vault")},
			Selector:        configv1alpha1.PushSecretSelector{Secret: configv1alpha1.PushSecretSecret{Name: "unused"}},
			Data:            []configv1alpha1.PushSecretData{{Match: match("password", "ci/app", "password")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	push := func(via int, value string) {
		t.Helper()
		sp := &esv1alpha1.SecretPush{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: esv1alpha1.SecretPushSpec{Data: map[string][]byte{"password": []byte(value)}}}
		eventually(t, func() error {
			out, err := replicas[via].ExternalsecretsV1alpha1().SecretPushes(ns).Create(ctxFor(t), sp, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			if r := results(out); r != "ci/app/password=Pushed" {
				return fmt.Errorf("push through replica %d: %s", via, r)
			}
			return nil
		})
	}
	read := func(via int) (string, error) {
		v, err := replicas[via].ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), "reader", metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return string(v.Data["password"]), nil
	}

	push(0, "first")
	if _, err := veil.ExternalSecrets(ns).Create(ctx, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef: new(storeRef("vault")), RefreshInterval: &metav1.Duration{Duration: time.Hour},
			Data: []configv1alpha1.ExternalSecretData{dataRef("password", "ci/app", "password")},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range replicas {
		eventually(t, func() error {
			got, err := read(i)
			if err == nil && got != "first" {
				err = fmt.Errorf("replica %d reads %q", i, got)
			}
			return err
		})
	}
	for round := range 6 {
		via, other := round%2, (round+1)%2
		value := fmt.Sprintf("pushed-%d", round)
		push(via, value)
		got, err := read(other)
		if err != nil {
			t.Fatal(err)
		}
		if got != value {
			t.Fatalf("round %d: pushed %q through replica %d, and replica %d, read right after, answered %q", round, value, via, other, got)
		}
	}
}

// haReadsOutliveAReplica: while clients read through kube-apiserver and an
// informer watches, each replica in turn is stopped as Kubernetes stops a
// pod, then started again. No read fails (client-go's own retries
// counted), both replicas served reads, and the watch carries on.
func haReadsOutliveAReplica(t *testing.T, ha *harness.Cluster) {
	ctx := ctxFor(t)
	ns := haNamespace(t, ha)
	veil := ha.VeilClient.ConfigV1alpha1()
	if _, err := veil.SecretStores(ns).Create(ctx, &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "fake"},
		Spec:       configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{Data: []configv1alpha1.FakeProviderData{{Key: "k", Value: "v"}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := veil.ExternalSecrets(ns).Create(ctx, &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "es"},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef: new(storeRef("fake")),
			Data:           []configv1alpha1.ExternalSecretData{dataRef("value", "k", "")},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Readers as fast as the machine allows: client-go's default 5 QPS
	// would leave replicas idle between reads.
	cfg := rest.CopyConfig(ha.Admin)
	cfg.QPS, cfg.Burst = 1000, 1000
	fast, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	values := fast.ExternalsecretsV1alpha1().ExternalSecretValues(ns)
	eventually(t, func() error {
		_, err := values.Get(ctxFor(t), "es", metav1.GetOptions{})
		return err
	})
	informed := valueInformer(t, ha.VeilClient, ns)

	var (
		ok, failed atomic.Int64
		firstErr   atomic.Value
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				v, err := values.Get(rctx, "es", metav1.GetOptions{})
				cancel()
				switch {
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				case string(v.Data["value"]) != "v":
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("read %q", v.Data["value"]))
				default:
					ok.Add(1)
				}
			}
		}()
	}
	// Reads must be flowing before each stop, and after each start.
	flowing := func() {
		t.Helper()
		n := ok.Load()
		eventually(t, func() error {
			if ok.Load() < n+200 {
				return fmt.Errorf("%d reads so far", ok.Load())
			}
			return nil
		})
	}
	for i := range 2 {
		flowing()
		if err := ha.StopVeilReplica(ctx, i); err != nil {
			t.Fatal(err)
		}
		flowing()
		if err := ha.StartVeilReplica(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	flowing()
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d reads failed while replicas stopped and started; the first: %v", n, n+ok.Load(), firstErr.Load())
	}
	t.Logf("%d reads, none failed", ok.Load())

	// Both replicas answered reads.
	for i := range 2 {
		b, err := os.ReadFile(ha.VeilReplicaAuditLog(i))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), `"resource":"externalsecretvalues"`); n == 0 {
			t.Errorf("replica %d answered no read", i)
		}
	}

	// The informer's watch was ended by a replica stopping and resumed on
	// the other: a change made now reaches it.
	es, err := veil.ExternalSecrets(ns).Get(ctx, "es", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es.Labels = map[string]string{"after": "failover"}
	if _, err := veil.ExternalSecrets(ns).Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		v, err := informed("es")
		if err != nil {
			return err
		}
		if v.Labels["after"] != "failover" {
			return fmt.Errorf("the informer holds labels %v", v.Labels)
		}
		return nil
	})
}
