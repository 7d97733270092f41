package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

var (
	watchers        = flag.Int("watchers", 1000, "concurrent watches opened in P8, on each path")
	watchNamespaces = flag.Int("watch-namespaces", 10, "namespaces P8 spreads its watchers over (veil-apiserver allows 100 watches of values per namespace by default)")
	watchRounds     = flag.Int("watch-rounds", 10, "changes P8 times to every watcher")
)

func init() {
	scenarios = append(scenarios, scenario{"P8",
		"concurrent watchers through the aggregator: a change of an ExternalSecret to every watch of its values vs a change of a Secret to as many watches of it, event delivery p50/p99, and memory per watcher of veil-apiserver and kube-apiserver",
		watchersScenario})
}

// p8Path is one side of P8: how to open a watch of the watched object of a
// namespace, and how to change that object so every watcher sees round r.
type p8Path struct {
	name   string
	open   func(ctx context.Context, ns string) (watch.Interface, error)
	round  func(obj any) (string, bool) // the round label of an event's object
	change func(ctx context.Context, ns string, r int) error
}

const p8Object, p8Label = "watched", "perf.veil.dev/round"

func watchersScenario(ctx context.Context, c *harness.Cluster) error {
	kube, veil, err := unlimitedClients(c)
	if err != nil {
		return err
	}
	if *watchers/max(*watchNamespaces, 1) > 100 {
		return fmt.Errorf("-watchers %d over -watch-namespaces %d is more than the 100 watches of values veil-apiserver allows per namespace", *watchers, *watchNamespaces)
	}
	nss := make([]string, *watchNamespaces)
	for i := range nss {
		nss[i] = fmt.Sprintf("perf-watch-%d", i)
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nss[i]}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if _, err := veil.ConfigV1alpha1().ClusterSecretStores().Create(ctx, &configv1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "perf-watch"},
		Spec: configv1alpha1.ClusterSecretStoreSpec{
			SecretStoreSpec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{
				Data: []configv1alpha1.FakeProviderData{{Key: "value", Value: printable(*valueSize)}},
			}}},
			Conditions: []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: nss}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, ns := range nss {
		if _, err := veil.ConfigV1alpha1().ExternalSecrets(ns).Create(ctx, &configv1alpha1.ExternalSecret{
			ObjectMeta: metav1.ObjectMeta{Name: p8Object},
			Spec: configv1alpha1.ExternalSecretSpec{
				SecretStoreRef: new(configv1alpha1.SecretStoreRef{Name: "perf-watch", Kind: configv1alpha1.ClusterSecretStoreKind}),
				Data:           []configv1alpha1.ExternalSecretData{{SecretKey: "value", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "value"}}},
			},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: p8Object},
			Data:       map[string][]byte{"value": []byte(printable(*valueSize))},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	// A watch sends no event for a value it cannot resolve (a store not
	// yet ready): wait until every value reads, so each watch's first
	// event is its initial one.
	for _, ns := range nss {
		if err := waitFor(ctx, 100*time.Millisecond, func() (bool, error) {
			_, err := veil.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctx, p8Object, metav1.GetOptions{})
			return err == nil, err
		}); err != nil {
			return fmt.Errorf("reading the watched value in %s: %w", ns, err)
		}
	}
	byName := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", p8Object).String()}
	label := func(obj any) (string, bool) {
		m, ok := obj.(metav1.Object)
		if !ok {
			return "", false
		}
		r, ok := m.GetLabels()[p8Label]
		return r, ok
	}
	patch := func(r int) []byte { return fmt.Appendf(nil, `{"metadata":{"labels":{%q:"%d"}}}`, p8Label, r) }
	paths := []p8Path{
		{
			name: "veil: watches of externalsecretvalues",
			open: func(ctx context.Context, ns string) (watch.Interface, error) {
				return veil.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Watch(ctx, byName)
			},
			round: label,
			change: func(ctx context.Context, ns string, r int) error {
				_, err := veil.ConfigV1alpha1().ExternalSecrets(ns).Patch(ctx, p8Object, types.MergePatchType, patch(r), metav1.PatchOptions{})
				return err
			},
		},
		{
			name: "native: watches of secrets",
			open: func(ctx context.Context, ns string) (watch.Interface, error) {
				return kube.CoreV1().Secrets(ns).Watch(ctx, byName)
			},
			round: label,
			change: func(ctx context.Context, ns string, r int) error {
				_, err := kube.CoreV1().Secrets(ns).Patch(ctx, p8Object, types.MergePatchType, patch(r), metav1.PatchOptions{})
				return err
			},
		},
	}
	fmt.Printf("%d watchers over %d namespaces, %d changes each  %10s %10s %10s %8s %22s %22s\n", *watchers, len(nss), *watchRounds,
		"p50", "p99", "max", "missed", "veil-apiserver RSS/w", "kube-apiserver RSS/w")
	var results []p8Result
	for _, p := range paths {
		res, err := p8Run(ctx, c, kube, nss, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		results = append(results, res)
		fmt.Printf("  %-48s %10s %10s %10s %8d %22s %22s\n", p.name, round(res.p50), round(res.p99), round(res.max), res.missed,
			bytesPer(res.veilRSS, *watchers), bytesPer(res.kubeRSS, *watchers))
	}
	fmt.Printf("  %-48s %9.2fx %9.2fx\n", "ratio", ratio(results[0].p50, results[1].p50), ratio(results[0].p99, results[1].p99))
	fmt.Printf("  for scale: veil_value_watches while the watches were open: %.0f (values), %.0f (secrets)\n\n",
		results[0].valueWatches, results[1].valueWatches)
	return nil
}

type p8Result struct {
	p50, p99, max    time.Duration
	missed           int
	valueWatches     float64 // veil_value_watches while every watch was open
	veilRSS, kubeRSS int64   // growth of resident memory while the watches were open
}

// p8Run opens every watch of one path, waits until each has its initial
// event, then makes one change per namespace per round and times it to
// every watcher of that namespace.
func p8Run(ctx context.Context, c *harness.Cluster, kube kubernetes.Interface, nss []string, p p8Path) (p8Result, error) {
	var res p8Result
	veilBefore, err := c.Veil.RSS()
	if err != nil {
		return res, err
	}
	kubeBefore, err := c.KubeAPIServer.RSS()
	if err != nil {
		return res, err
	}

	type delivery struct {
		watcher int
		round   string
		at      time.Time
	}
	deliveries := make(chan delivery, *watchers)
	ready := make(chan error, *watchers)
	var wg sync.WaitGroup
	wctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	for i := range *watchers {
		ns := nss[i%len(nss)]
		wg.Go(func() {
			w, err := p.open(wctx, ns)
			if err != nil {
				ready <- err
				return
			}
			defer w.Stop()
			first := true
			for {
				select {
				case <-wctx.Done():
					return
				case ev, ok := <-w.ResultChan():
					if !ok {
						if first {
							ready <- errors.New("the watch ended before its first event")
						}
						return
					}
					if ev.Type == watch.Error {
						if first {
							ready <- fmt.Errorf("watch error: %v", ev.Object)
							first = false
						}
						continue
					}
					at := time.Now()
					if first {
						ready <- nil
						first = false
						continue
					}
					if r, ok := p.round(ev.Object); ok {
						select {
						case deliveries <- delivery{i, r, at}:
						case <-wctx.Done():
							return
						}
					}
				}
			}
		})
	}
	opened := time.After(2 * time.Minute)
	for i := range *watchers {
		select {
		case err := <-ready:
			if err != nil {
				return res, err
			}
		case <-opened:
			return res, fmt.Errorf("only %d of %d watches had their initial event after 2m", i, *watchers)
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	veilOpen, err := c.Veil.RSS()
	if err != nil {
		return res, err
	}
	kubeOpen, err := c.KubeAPIServer.RSS()
	if err != nil {
		return res, err
	}
	res.veilRSS, res.kubeRSS = veilOpen-veilBefore, kubeOpen-kubeBefore
	m, err := c.VeilMetrics(ctx)
	if err != nil {
		return res, err
	}
	res.valueWatches = m.Sum("veil_value_watches", nil)

	var lat []time.Duration
	for r := range *watchRounds {
		want := fmt.Sprint(r)
		starts := map[string]time.Time{}
		for _, ns := range nss {
			starts[ns] = time.Now()
			if err := p.change(ctx, ns, r); err != nil {
				return res, err
			}
		}
		got := map[int]bool{}
		deadline := time.After(30 * time.Second)
	collect:
		for len(got) < *watchers {
			select {
			case d := <-deliveries:
				if d.round != want || got[d.watcher] {
					continue
				}
				got[d.watcher] = true
				lat = append(lat, d.at.Sub(starts[nss[d.watcher%len(nss)]]))
			case <-deadline:
				res.missed += *watchers - len(got)
				break collect
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
	}
	if len(lat) == 0 {
		return res, errors.New("no watcher saw any change")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.p50, res.p99, res.max = pct(lat, 50), pct(lat, 99), lat[len(lat)-1]
	return res, nil
}

// bytesPer formats total/n bytes.
func bytesPer(total int64, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f KiB", float64(total)/float64(n)/1024)
}
