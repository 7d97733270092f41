package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	"github.com/veil-dev/veil/pkg/syncer"
	"github.com/veil-dev/veil/test/harness"
)

var (
	syncCount   = flag.Int("sync-count", 1000, "ExternalSecrets created at once in P4")
	syncerFlags = flag.String("syncer-flags", "", "extra flags for veil-syncer in P4 and P6, space-separated (default: its defaults)")
)

func init() {
	scenarios = append(scenarios, scenario{"P4",
		"veil-syncer: time to first sync of many ExternalSecrets created at once vs as many plain Secret creates from the same client; a new ExternalSecret while as many refreshes are queued",
		syncScenario})
}

// p4Refresh is the refresh interval of the ExternalSecrets of P4: long
// enough that no refresh competes with the first syncs, short enough that
// all are due for the second part.
const p4Refresh = 20 * time.Second

func syncScenario(ctx context.Context, c *harness.Cluster) error {
	// One client for both paths, with no client-side rate limit, so what is
	// measured is the servers and the syncer.
	kube, veil, err := unlimitedClients(c)
	if err != nil {
		return err
	}
	value := printable(*valueSize)
	for _, ns := range []string{"perf-native", "perf-plain", "perf-sync"} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if _, err := veil.ConfigV1alpha1().SecretStores("perf-sync").Create(ctx, &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "store"},
		Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{
			Fake: &configv1alpha1.FakeProvider{Data: []configv1alpha1.FakeProviderData{{Key: "value", Value: value}}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}

	first, err := c.StartSyncer(ctx, "veil-syncer-perf-1", strings.Fields(*syncerFlags)...)
	if err != nil {
		return err
	}
	defer first.Stop()
	if err := waitLease(ctx, kube, first.Name); err != nil {
		return err
	}

	n := *syncCount
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("p4-%04d", i)
	}
	// Who uses the CPU in each part: on a machine of few cores, the
	// servers share it with each other and with the client.
	procs := []*harness.Process{c.Etcd, c.KubeAPIServer, c.Veil, first.Process}
	cpu := func() []time.Duration {
		out := make([]time.Duration, len(procs))
		for i, p := range procs {
			out[i], _ = p.CPUTime()
		}
		return out
	}
	cpu0 := cpu()
	native, err := timeCreates(ctx, names, func(ctx context.Context, name string) error {
		_, err := kube.CoreV1().Secrets("perf-native").Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Data:       map[string][]byte{"value": []byte(value)},
		}, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	cpuNative := cpu()
	// For scale: ExternalSecrets without a target, which the syncer
	// ignores, cost kube-apiserver a CRD create each (schema and CEL
	// validation) and nothing else.
	plain, err := timeCreates(ctx, names, func(ctx context.Context, name string) error {
		es := perfES(name)
		es.Spec.Target = nil
		_, err := veil.ConfigV1alpha1().ExternalSecrets("perf-plain").Create(ctx, es, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	cpu1 := cpu()
	req1, err := kubeRequests(ctx, kube)
	if err != nil {
		return err
	}
	synced, err := timeFirstSyncs(ctx, kube, names, createES(veil))
	if err != nil {
		return err
	}
	// The last status writes and Events follow the last Secret.
	if err := waitFor(ctx, 250*time.Millisecond, func() (bool, error) {
		m, err := first.Metrics(ctx)
		return err == nil && m.Sum("veil_syncer_queue_depth", map[string]string{"priority": "urgent"}) == 0, err
	}); err != nil {
		return err
	}
	cpu2 := cpu()
	req2, err := kubeRequests(ctx, kube)
	if err != nil {
		return err
	}
	fmt.Printf("%d at once, %d concurrent creates            %12s %10s %10s %10s\n", n, *concurrency, "total", "p50", "p99", "max")
	fmt.Printf("  %-48s %12s\n", "kube-apiserver: Secret creates", round(native))
	fmt.Printf("  %-48s %12s\n", "for scale: ExternalSecret creates, no target", round(plain))
	fmt.Printf("  %-48s %12s %10s %10s %10s\n", "veil-syncer: ExternalSecret creates to Secrets", round(synced.total), round(synced.p50), round(synced.p99), round(synced.max))
	fmt.Printf("  %-48s %11.2fx (goal <= 1.5x)\n", "ratio", ratio(synced.total, native))
	apiPeak, err := c.Veil.PeakRSS()
	if err != nil {
		return err
	}
	syncPeak, err := first.PeakRSS()
	if err != nil {
		return err
	}
	fmt.Printf("  %-48s %12s %10s (limit %s)\n", "peak RSS: veil-apiserver, veil-syncer", mib(apiPeak), mib(syncPeak), mib(shippedMemoryLimit))
	fmt.Printf("  CPU per object (ms)        %12s %14s %14s %14s\n", "etcd", "kube-apiserver", "veil-apiserver", "veil-syncer")
	for _, part := range []struct {
		name     string
		from, to []time.Duration
	}{{"Secret creates", cpu0, cpuNative}, {"ExternalSecrets to Secrets", cpu1, cpu2}} {
		fmt.Printf("  %-26s", part.name)
		for i := range procs {
			fmt.Printf(" %14.2f", float64(part.to[i]-part.from[i])/float64(time.Millisecond)/float64(n))
		}
		fmt.Println()
	}
	fmt.Println("  (the second part includes the ExternalSecret creates, and the syncer's status writes and Events)")
	if m, err := first.Metrics(ctx); err == nil {
		watched, got := m.Sum("veil_syncer_value_reads_total", map[string]string{"source": "watch"}), m.Sum("veil_syncer_value_reads_total", map[string]string{"source": "get"})
		fmt.Printf("  %-48s %12.0f %10.0f\n", "values read: sent by the watch, by GET", watched, got)
	}
	fmt.Printf("  kube-apiserver requests in the second part, per ExternalSecret:  %8s %12s\n", "requests", "time (ms)")
	for _, r := range requestsBetween(req1, req2, n) {
		fmt.Printf("    %-60s %8.2f %12.2f\n", r.what, r.count, r.ms)
	}
	fmt.Println()

	return newWhileRefreshesQueued(ctx, c, kube, veil, first, n)
}

// newWhileRefreshesQueued: every ExternalSecret of the first part becomes
// due while no syncer leads; a fresh syncer lists them all into its refresh
// queue as a follower; once it leads, a new ExternalSecret is created and
// timed to its Secret.
func newWhileRefreshesQueued(ctx context.Context, c *harness.Cluster, kube kubernetes.Interface, veil versioned.Interface, first *harness.Syncer, n int) error {
	first.Stop()
	// Hold the Lease as nobody, so the next syncer queues without acting.
	if err := setLease(ctx, kube, "perf-hold", 3600); err != nil {
		return err
	}
	time.Sleep(p4Refresh + 2*time.Second)
	second, err := c.StartSyncer(ctx, "veil-syncer-perf-2", strings.Fields(*syncerFlags)...)
	if err != nil {
		return err
	}
	defer second.Stop()
	// Each is queued as a refresh, except one whose last sync the stop
	// interrupted, which is urgent again. Polled seldom: rendering /metrics
	// costs the syncer CPU it would take from syncing.
	if err := waitFor(ctx, 250*time.Millisecond, func() (bool, error) {
		m, err := second.Metrics(ctx)
		return err == nil && m.Sum("veil_syncer_queue_depth", nil) >= float64(n), err
	}); err != nil {
		return fmt.Errorf("waiting for %d queued ExternalSecrets: %w", n, err)
	}
	// Release it as leader election does: no holder.
	if err := setLease(ctx, kube, "", 1); err != nil {
		return err
	}
	if err := waitLease(ctx, kube, second.Name); err != nil {
		return err
	}
	leading := time.Now()
	m, err := second.Metrics(ctx)
	if err != nil {
		return err
	}
	queued := m.Sum("veil_syncer_queue_depth", map[string]string{"priority": "refresh"})
	urgent := m.Sum("veil_syncer_queue_depth", map[string]string{"priority": "urgent"})
	one, err := timeFirstSyncs(ctx, kube, []string{"p4-new"}, createES(veil))
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 250*time.Millisecond, func() (bool, error) {
		m, err := second.Metrics(ctx)
		return err == nil && m.Sum("veil_syncer_queue_depth", nil) == 0, err
	}); err != nil {
		return err
	}
	drained := time.Since(leading)
	fmt.Printf("new ExternalSecret created with %.0f refreshes (and %.0f other urgent) queued\n", queued, urgent)
	fmt.Printf("  %-48s %12s (goal < 2s)\n", "time to first sync", round(one.total))
	fmt.Printf("  %-48s %12s\n\n", fmt.Sprintf("for scale: draining the %d refreshes took", n), round(drained))
	return nil
}

// unlimitedClients are the admin's clients without client-side rate limit.
func unlimitedClients(c *harness.Cluster) (kubernetes.Interface, versioned.Interface, error) {
	cfg := rest.CopyConfig(c.Admin)
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	veil, err := versioned.NewForConfig(cfg)
	return kube, veil, err
}

func createES(veil versioned.Interface) func(context.Context, string) error {
	return func(ctx context.Context, name string) error {
		_, err := veil.ConfigV1alpha1().ExternalSecrets("perf-sync").Create(ctx, perfES(name), metav1.CreateOptions{})
		return err
	}
}

func perfES(name string) *configv1alpha1.ExternalSecret {
	return &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: configv1alpha1.ExternalSecretSpec{
			SecretStoreRef:  new(configv1alpha1.SecretStoreRef{Name: "store", Kind: configv1alpha1.SecretStoreKind}),
			RefreshInterval: &metav1.Duration{Duration: p4Refresh},
			Data:            []configv1alpha1.ExternalSecretData{{SecretKey: "value", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "value"}}},
			Target:          &configv1alpha1.ExternalSecretTarget{},
		},
	}
}

// timeCreates creates every name from *concurrency workers and returns the
// time until the last create returned.
func timeCreates(ctx context.Context, names []string, create func(context.Context, string) error) (time.Duration, error) {
	start := time.Now()
	err := createAll(ctx, names, create, nil)
	return time.Since(start), err
}

func createAll(ctx context.Context, names []string, create func(context.Context, string) error, created func(string, time.Time)) error {
	next := make(chan string)
	errs := make(chan error, *concurrency)
	var wg sync.WaitGroup
	for range *concurrency {
		wg.Go(func() {
			for name := range next {
				if err := create(ctx, name); err != nil {
					errs <- err
					return
				}
				if created != nil {
					created(name, time.Now())
				}
			}
		})
	}
	go func() {
		defer close(next)
		for _, name := range names {
			select {
			case next <- name:
			case err := <-errs:
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

type syncTimes struct{ total, p50, p99, max time.Duration }

// timeFirstSyncs creates an ExternalSecret of each name in perf-sync and
// returns the time until veil-syncer has created all their Secrets (seen by
// a watch), and the distribution of each one's time from its create to its
// Secret.
func timeFirstSyncs(ctx context.Context, kube kubernetes.Interface, names []string, create func(context.Context, string) error) (syncTimes, error) {
	return timeFirstSyncsIn(ctx, kube, "perf-sync", names, create)
}

// timeFirstSyncsIn is timeFirstSyncs in namespace ns.
func timeFirstSyncsIn(ctx context.Context, kube kubernetes.Interface, ns string, names []string, create func(context.Context, string) error) (syncTimes, error) {
	n := len(names)
	want := map[string]bool{}
	for _, name := range names {
		want[name] = true
	}
	w, err := kube.CoreV1().Secrets(ns).Watch(ctx, metav1.ListOptions{LabelSelector: configv1alpha1.ManagedByLabel + "=veil-syncer"})
	if err != nil {
		return syncTimes{}, err
	}
	defer w.Stop()
	var mu sync.Mutex
	createdAt := map[string]time.Time{}
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		errc <- createAll(ctx, names, create, func(name string, t time.Time) {
			mu.Lock()
			createdAt[name] = t
			mu.Unlock()
		})
	}()
	seen := map[string]time.Time{}
	deadline := time.After(10 * time.Minute)
	for len(seen) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return syncTimes{}, fmt.Errorf("the watch of Secrets ended after %d of %d", len(seen), n)
			}
			// A watch from now starts with an ADDED event for every Secret
			// that exists: only the ones of names is counted.
			if s, ok := ev.Object.(*corev1.Secret); ok && ev.Type == watch.Added && want[s.Name] {
				if _, dup := seen[s.Name]; !dup {
					seen[s.Name] = time.Now()
				}
			}
		case err := <-errc:
			if err != nil {
				return syncTimes{}, err
			}
			errc = nil
		case <-deadline:
			return syncTimes{}, fmt.Errorf("only %d of %d Secrets after 10 minutes", len(seen), n)
		}
	}
	total := time.Since(start)
	if errc != nil {
		if err := <-errc; err != nil {
			return syncTimes{}, err
		}
	}
	var lat []time.Duration
	mu.Lock()
	for name, t := range createdAt {
		lat = append(lat, seen[name].Sub(t))
	}
	mu.Unlock()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return syncTimes{total: total, p50: lat[len(lat)/2], p99: lat[min(len(lat)-1, len(lat)*99/100)], max: lat[len(lat)-1]}, nil
}

func waitLease(ctx context.Context, kube kubernetes.Interface, holder string) error {
	// Often: the time to first sync is measured from when the lease is seen.
	return waitFor(ctx, 5*time.Millisecond, func() (bool, error) {
		l, err := kube.CoordinationV1().Leases(harness.VeilNamespace).Get(ctx, syncer.LeaseName, metav1.GetOptions{})
		return err == nil && ptr.Deref(l.Spec.HolderIdentity, "") == holder, nil
	})
}

// setLease writes the syncer's Lease as the admin: a holder that renewed
// just now keeps every syncer following; no holder lets one take it at once.
func setLease(ctx context.Context, kube kubernetes.Interface, holder string, seconds int32) error {
	l, err := kube.CoordinationV1().Leases(harness.VeilNamespace).Get(ctx, syncer.LeaseName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.NewMicroTime(time.Now())
	l.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &seconds, AcquireTime: &now, RenewTime: &now}
	_, err = kube.CoordinationV1().Leases(harness.VeilNamespace).Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// waitFor polls cond every interval for up to two minutes.
func waitFor(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out (last error: %v)", last)
		case <-time.After(interval):
		}
	}
}

// kubeRequests scrapes kube-apiserver's request durations.
func kubeRequests(ctx context.Context, kube kubernetes.Interface) (*harness.Metrics, error) {
	body, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	return harness.ParseMetrics(body)
}

type requestCost struct {
	what      string
	count, ms float64
}

// requestsBetween is what kube-apiserver served between two scrapes, by
// verb and resource, per object of n, most time first; watches are left
// out (their duration is how long they stayed open).
func requestsBetween(from, to *harness.Metrics, n int) []requestCost {
	key := func(l map[string]string) string {
		r := l["resource"]
		if l["subresource"] != "" {
			r += "/" + l["subresource"]
		}
		if l["group"] != "" {
			r += "." + l["group"]
		}
		return l["verb"] + " " + r
	}
	before := map[string]requestCost{}
	for _, s := range from.Histograms("apiserver_request_duration_seconds") {
		c := before[key(s.Labels)]
		c.count, c.ms = c.count+s.Count, c.ms+s.Sum*1000
		before[key(s.Labels)] = c
	}
	after := map[string]requestCost{}
	for _, s := range to.Histograms("apiserver_request_duration_seconds") {
		if s.Labels["verb"] == "WATCH" {
			continue
		}
		k := key(s.Labels)
		c := after[k]
		c.what, c.count, c.ms = k, c.count+s.Count, c.ms+s.Sum*1000
		after[k] = c
	}
	var out []requestCost
	for k, c := range after {
		c.count, c.ms = (c.count-before[k].count)/float64(n), (c.ms-before[k].ms)/float64(n)
		if c.count >= 0.01 {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ms > out[j].ms })
	return out
}
