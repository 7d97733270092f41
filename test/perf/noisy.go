package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/flowcontrol"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	"github.com/veil-dev/veil/test/harness"
)

var (
	noisyBacklog = flag.Int("noisy-backlog", 1000, "ExternalSecrets with targets the noisy tenant creates at once in P6")
	quietSyncs   = flag.Int("quiet-syncs", 50, "ExternalSecrets with targets the quiet tenant creates in each half of P6")
	quietRate    = flag.Float64("quiet-rate", 50, "reads per second tenant B makes in P6, paced (open loop), so that B alone leaves the machine room")
	noisyCases   = flag.String("noisy-cases", "huge,lists,templates,backlog", "the worst cases tenant A runs in P6, comma-separated (for a breakdown)")
)

func init() {
	scenarios = append(scenarios, scenario{"P6",
		"noisy neighbour: tenant B's reads and first syncs while tenant A runs every known worst case on the same servers and the same ClusterSecretStore, as ratios to B alone; peak RSS of both binaries against their shipped limits",
		noisyScenario})
}

const (
	quietNS, noisyNS = "perf-quiet", "perf-noisy"
	// shippedMemoryLimit is both Deployments' memory limit in
	// artifacts/base.
	shippedMemoryLimit = 512 << 20
)

func noisyScenario(ctx context.Context, c *harness.Cluster) error {
	kube, veil, err := unlimitedClients(c)
	if err != nil {
		return err
	}
	// Both tenants use client-go's defaults otherwise: a 429 is retried
	// after its Retry-After, as any client would.
	for _, ns := range []string{quietNS, noisyNS} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	big := printable(192 << 10)
	css := &configv1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "perf-shared"},
		Spec: configv1alpha1.ClusterSecretStoreSpec{
			SecretStoreSpec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{
				Data: []configv1alpha1.FakeProviderData{{Key: "small", Value: printable(*valueSize)}, {Key: "big", Value: big}},
			}}},
			Conditions: []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{quietNS, noisyNS}}},
		},
	}
	if _, err := veil.ConfigV1alpha1().ClusterSecretStores().Create(ctx, css, metav1.CreateOptions{}); err != nil {
		return err
	}
	shared := configv1alpha1.SecretStoreRef{Name: css.Name, Kind: configv1alpha1.ClusterSecretStoreKind}
	read := func(key string, n int) []configv1alpha1.ExternalSecretData {
		d := make([]configv1alpha1.ExternalSecretData, n)
		for i := range d {
			d[i] = configv1alpha1.ExternalSecretData{SecretKey: fmt.Sprintf("k%03d", i), RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: key}}
		}
		return d
	}
	// Each tenant is an ordinary user with the roles a namespace grants its
	// team, not the admin: kube-apiserver's API Priority and Fairness then
	// treats them as the two flows they are, as in a real cluster (the
	// admin is exempt from it). Neither client limits itself.
	tenants := map[string]versioned.Interface{}
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "perf-shared-user"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"config.veil.dev"}, Resources: []string{"clustersecretstores"},
			ResourceNames: []string{css.Name}, Verbs: []string{"use"}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for ns, user := range map[string]string{quietNS: "tenant-b", noisyNS: "tenant-a"} {
		for _, role := range []string{"veil:definitions-editor", "veil:values-reader", "perf-shared-user"} {
			if _, err := kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: strings.ReplaceAll(role, ":", "-")},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{Kind: "User", Name: user, APIGroup: "rbac.authorization.k8s.io"}},
			}, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		cfg, err := c.UserConfig(user)
		if err != nil {
			return err
		}
		cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
		if tenants[ns], err = versioned.NewForConfig(cfg); err != nil {
			return err
		}
	}
	// The native control first, before A has any ExternalSecret for the
	// syncer to work on.
	var nat native
	if *noisyNative {
		if nat, err = nativeControl(ctx, c, kube); err != nil {
			return fmt.Errorf("the native control: %w", err)
		}
	}
	es := func(ns, name string, data []configv1alpha1.ExternalSecretData, target *configv1alpha1.ExternalSecretTarget) error {
		_, err := tenants[ns].ConfigV1alpha1().ExternalSecrets(ns).Create(ctx, &configv1alpha1.ExternalSecret{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(shared), Data: data, Target: target},
		}, metav1.CreateOptions{})
		return err
	}
	if err := es(quietNS, "b-read", read("small", 1), nil); err != nil {
		return err
	}
	quietValues, noisyValues := tenants[quietNS].ExternalsecretsV1alpha1(), tenants[noisyNS].ExternalsecretsV1alpha1()
	readB := func(ctx context.Context) error {
		_, err := quietValues.ExternalSecretValues(quietNS).Get(ctx, "b-read", metav1.GetOptions{})
		return err
	}
	// The store is usable once veil-apiserver has seen its conditions.
	if err := waitFor(ctx, 100*time.Millisecond, func() (bool, error) { return readB(ctx) == nil, nil }); err != nil {
		return fmt.Errorf("the shared store never became usable: %w", err)
	}

	syncer, err := c.StartSyncer(ctx, "veil-syncer-perf-p6", strings.Fields(*syncerFlags)...)
	if err != nil {
		return err
	}
	defer syncer.Stop()
	if err := waitLease(ctx, kube, syncer.Name); err != nil {
		return err
	}
	createB := func(ctx context.Context, name string) error {
		return es(quietNS, name, read("small", 1), &configv1alpha1.ExternalSecretTarget{})
	}
	names := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s-%04d", prefix, i)
		}
		return out
	}

	// Who uses the CPU, in each half: the servers share the machine with
	// each other and with the load.
	procs := []*harness.Process{c.Etcd, c.KubeAPIServer, c.ControllerManager, c.Veil, syncer.Process}
	cpu := func() []time.Duration {
		out := make([]time.Duration, len(procs))
		for i, p := range procs {
			if p != nil {
				out[i], _ = p.CPUTime()
			}
		}
		return out
	}

	// B alone.
	cpuStart, tStart := cpu(), time.Now()
	quietRead := paced(ctx, *quietRate, *duration, readB)
	quietSync, err := timeFirstSyncsIn(ctx, kube, quietNS, names("quiet", *quietSyncs), createB)
	if err != nil {
		return err
	}
	cpuQuiet, tQuiet := cpu(), time.Now()
	apiQuiet, _ := c.Veil.PeakRSS()
	syncQuiet, _ := syncer.PeakRSS()

	// A's worst cases, all at once, for as long as B measures.
	a := newHammers(ctx)
	defer a.stop()
	hammer := a.loop
	setup := []struct {
		name   string
		data   []configv1alpha1.ExternalSecretData
		target *configv1alpha1.ExternalSecretTarget
	}{
		// Values over the 1 MiB bound: 500 entries of 192 KiB.
		{"a-huge", read("big", 500), nil},
		// Templates that would take forever, or gigabytes.
		{"a-loop", read("small", 1), &configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
			Data: map[string]string{"x": "{{range 100000}}{{range 100000}}{{end}}{{end}}"}}}},
		{"a-wide", read("small", 1), &configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
			Data: map[string]string{"x": `{{range 100}}{{printf "%01000000d" 0}}{{end}}`}}}},
	}
	for i := range 20 {
		// Values just under the bound, for lists: 5 × 192 KiB each.
		setup = append(setup, struct {
			name   string
			data   []configv1alpha1.ExternalSecretData
			target *configv1alpha1.ExternalSecretTarget
		}{fmt.Sprintf("a-big-%02d", i), read("big", 5), nil})
	}
	for _, s := range setup {
		if err := es(noisyNS, s.name, s.data, s.target); err != nil {
			return fmt.Errorf("tenant A's %s: %w", s.name, err)
		}
	}
	cases := noisyCaseSet()
	for range 4 {
		if !cases["huge"] {
			break
		}
		hammer(func(ctx context.Context) error {
			_, err := noisyValues.ExternalSecretValues(noisyNS).Get(ctx, "a-huge", metav1.GetOptions{})
			return err
		})
	}
	for range 2 {
		if !cases["lists"] {
			break
		}
		hammer(func(ctx context.Context) error {
			_, err := noisyValues.ExternalSecretValues(noisyNS).List(ctx, metav1.ListOptions{})
			return err
		})
	}
	if cases["templates"] {
		for _, name := range []string{"a-loop", "a-wide"} {
			// A spec change makes the syncer render the bomb again at once.
			var n atomic.Int64
			hammer(func(ctx context.Context) error {
				_, err := tenants[noisyNS].ConfigV1alpha1().ExternalSecrets(noisyNS).Patch(ctx, name, types.MergePatchType,
					[]byte(fmt.Sprintf(`{"spec":{"refreshInterval":"%ds"}}`, 60+n.Add(1))), metav1.PatchOptions{})
				return err
			})
		}
	}
	a.once(func(noisyCtx context.Context) {
		if !cases["backlog"] {
			return
		}
		// The syncer's backlog: A's ExternalSecrets with targets, at once.
		_ = createAll(noisyCtx, names("backlog", *noisyBacklog), func(ctx context.Context, name string) error {
			err := es(noisyNS, name, read("small", 1), &configv1alpha1.ExternalSecretTarget{})
			if errors.Is(err, context.Canceled) || apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err
		}, nil)
	})

	noisyRead := paced(ctx, *quietRate, *duration, readB)
	noisySync, err := timeFirstSyncsIn(ctx, kube, quietNS, names("noisy", *quietSyncs), createB)
	aRequests, aRefused := a.stop()
	if err != nil {
		return err
	}
	cpuNoisy, tNoisy := cpu(), time.Now()
	apiPeak, apiErr := c.Veil.PeakRSS()
	syncPeak, syncErr := syncer.PeakRSS()
	if err := errors.Join(apiErr, syncErr); err != nil {
		return err
	}

	fmt.Printf("tenant B with tenant A quiet, then running %s (%d requests, %d refused)\n", *noisyCases, aRequests, aRefused)
	if err := compare(fmt.Sprintf("B: ExternalSecretValue get, %.0f/s", *quietRate), noisyRead, quietRead, "with A noisy", "A quiet"); err != nil {
		return err
	}
	if *noisyNative {
		fmt.Printf("native control: tenant B's Secret get with tenant A quiet, then running %s on Secrets (%d requests, %d refused)\n", *noisyCases, nat.aRequests, nat.aRefused)
		if err := compare(fmt.Sprintf("B: Secret get, %.0f/s", *quietRate), nat.noisy, nat.quiet, "with A noisy", "A quiet"); err != nil {
			return err
		}
		fmt.Printf("%-34s %9.2fx %9.2fx (Veil's noisy/quiet ratio over the native one)\n\n", "B: get, Veil against native",
			ratio(noisyRead.p50, quietRead.p50)/ratio(nat.noisy.p50, nat.quiet.p50),
			ratio(noisyRead.p99, quietRead.p99)/ratio(nat.noisy.p99, nat.quiet.p99))
	}
	printSyncs(fmt.Sprintf("B: %d first syncs", *quietSyncs), noisySync, quietSync, "(goal <= 1.5x)")
	if *noisyNative {
		printSyncs(fmt.Sprintf("native control: B: %d Secret creates", *quietSyncs), nat.noisyCreates, nat.quietCreates, "")
		fmt.Printf("%-34s %11.2fx %9.2fx %9.2fx (Veil's noisy/quiet ratio over the native one)\n\n", "B: first syncs against creates",
			ratio(noisySync.total, quietSync.total)/ratio(nat.noisyCreates.total, nat.quietCreates.total),
			ratio(noisySync.p50, quietSync.p50)/ratio(nat.noisyCreates.p50, nat.quietCreates.p50),
			ratio(noisySync.p99, quietSync.p99)/ratio(nat.noisyCreates.p99, nat.quietCreates.p99))
	}
	fmt.Printf("%-34s %12s %12s %12s\n", "peak RSS (VmHWM)", "A quiet", "A noisy", "limit")
	fmt.Printf("  %-32s %12s %12s %12s\n", "veil-apiserver", mib(apiQuiet), mib(apiPeak), mib(shippedMemoryLimit))
	fmt.Printf("  %-32s %12s %12s %12s\n\n", "veil-syncer", mib(syncQuiet), mib(syncPeak), mib(shippedMemoryLimit))
	fmt.Printf("%-34s %12s %12s\n", "CPU seconds (2 cores)", "A quiet", "A noisy")
	fmt.Printf("  %-32s %12.1f %12.1f\n", "wall time of the half", tQuiet.Sub(tStart).Seconds(), tNoisy.Sub(tQuiet).Seconds())
	for i, p := range procs {
		if p != nil {
			fmt.Printf("  %-32s %12.1f %12.1f\n", p.Name, (cpuQuiet[i] - cpuStart[i]).Seconds(), (cpuNoisy[i] - cpuQuiet[i]).Seconds())
		}
	}
	fmt.Println()
	return nil
}

// printSyncs prints B's times in both halves and their ratios.
func printSyncs(title string, noisy, quiet syncTimes, goal string) {
	fmt.Printf("%-34s %12s %10s %10s %10s\n", title, "total", "p50", "p99", "max")
	fmt.Printf("  %-32s %12s %10s %10s %10s\n", "with A noisy", round(noisy.total), round(noisy.p50), round(noisy.p99), round(noisy.max))
	fmt.Printf("  %-32s %12s %10s %10s %10s\n", "A quiet", round(quiet.total), round(quiet.p50), round(quiet.p99), round(quiet.max))
	fmt.Printf("  %-32s %11.2fx %9.2fx %9.2fx %s\n\n", "ratio", ratio(noisy.total, quiet.total), ratio(noisy.p50, quiet.p50), ratio(noisy.p99, quiet.p99), goal)
}

// hammers are a noisy tenant's loops, each making one kind of request
// again and again until stop, counting requests and refusals.
type hammers struct {
	ctx               context.Context
	cancel            context.CancelFunc
	wg                sync.WaitGroup
	requests, refused atomic.Int64
}

func newHammers(ctx context.Context) *hammers {
	h := &hammers{}
	h.ctx, h.cancel = context.WithCancel(ctx)
	return h
}

// loop makes f's request until stop.
func (h *hammers) loop(f func(context.Context) error) {
	h.wg.Go(func() {
		for h.ctx.Err() == nil {
			err := f(h.ctx)
			h.requests.Add(1)
			if err != nil && h.ctx.Err() == nil {
				h.refused.Add(1)
			}
		}
	})
}

// once runs f beside the loops, until it returns or stop.
func (h *hammers) once(f func(context.Context)) { h.wg.Go(func() { f(h.ctx) }) }

// stop ends the loops, waits for them and says how many requests they
// made and how many were refused.
func (h *hammers) stop() (requests, refused int64) {
	h.cancel()
	h.wg.Wait()
	return h.requests.Load(), h.refused.Load()
}

// noisyCaseSet is -noisy-cases as a set.
func noisyCaseSet() map[string]bool {
	cases := map[string]bool{}
	for _, c := range strings.Split(*noisyCases, ",") {
		cases[c] = true
	}
	return cases
}

func mib(b int64) string { return fmt.Sprintf("%.0fMi", float64(b)/(1<<20)) }
