package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/veil-dev/veil/test/harness"
)

var noisyNative = flag.Bool("noisy-native", true, "in P6, first measure the native path: tenant B's Secret gets while tenant A runs the same worst cases on Secrets, so that Veil's ratios can be read against what kube-apiserver alone gives on this machine")

// nativeControl is P6's control: the same two tenants, the same pacing and
// the same kinds of abuse, on plain Secrets and kube-apiserver alone. A
// reads a Secret near the 1 MiB bound, lists twenty of them, patches two
// in a loop and creates a backlog of small ones as fast as eight clients
// can, while B gets one small Secret at the quiet rate. Neither veil
// server is involved (nor charged): the ratios show how far kube-apiserver
// and etcd alone, on these cores, keep B from A. After its reads in each
// half, B creates as many plain Secrets as it creates ExternalSecrets in
// Veil's halves, the native counterpart of its first syncs.
func nativeControl(ctx context.Context, c *harness.Cluster, kube kubernetes.Interface) (n native, err error) {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "perf-native-secrets"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"},
			Verbs: []string{"get", "list", "create", "patch"}}},
	}
	if _, err = kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return
	}
	tenants := map[string]kubernetes.Interface{}
	for ns, user := range map[string]string{quietNS: "tenant-b", noisyNS: "tenant-a"} {
		if _, err = kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: user, APIGroup: "rbac.authorization.k8s.io"}},
		}, metav1.CreateOptions{}); err != nil {
			return
		}
		cfg, cerr := c.UserConfig(user)
		if cerr != nil {
			err = cerr
			return
		}
		cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
		if tenants[ns], err = kubernetes.NewForConfig(cfg); err != nil {
			return
		}
	}
	secret := func(ctx context.Context, ns, name string, size, n int) error {
		data := map[string][]byte{}
		for i := range n {
			data[fmt.Sprintf("k%03d", i)] = []byte(printable(size))
		}
		_, err := tenants[ns].CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{})
		return err
	}
	if err = secret(ctx, quietNS, "b-native", *valueSize, 1); err != nil {
		return
	}
	// Near the 1 MiB bound: 5 × 192 KiB, as A's ExternalSecrets for lists.
	for i := range 20 {
		if err = secret(ctx, noisyNS, fmt.Sprintf("a-native-big-%02d", i), 192<<10, 5); err != nil {
			return
		}
	}
	for _, name := range []string{"a-native-patch-0", "a-native-patch-1"} {
		if err = secret(ctx, noisyNS, name, *valueSize, 1); err != nil {
			return
		}
	}
	readB := func(ctx context.Context) error {
		_, err := tenants[quietNS].CoreV1().Secrets(quietNS).Get(ctx, "b-native", metav1.GetOptions{})
		return err
	}
	if err = waitFor(ctx, 100*time.Millisecond, func() (bool, error) { return readB(ctx) == nil, nil }); err != nil {
		return
	}
	createB := func(prefix string) (syncTimes, error) {
		names := make([]string, *quietSyncs)
		for i := range names {
			names[i] = fmt.Sprintf("%s-%04d", prefix, i)
		}
		return timeEachCreate(ctx, names, func(ctx context.Context, name string) error {
			return secret(ctx, quietNS, name, *valueSize, 1)
		})
	}
	n.quiet = paced(ctx, *quietRate, *duration, readB)
	if n.quietCreates, err = createB("native-quiet"); err != nil {
		return
	}

	a := tenants[noisyNS].CoreV1().Secrets(noisyNS)
	h := newHammers(ctx)
	defer h.stop()
	hammer := h.loop
	cases := noisyCaseSet()
	if cases["huge"] {
		for range 4 {
			hammer(func(ctx context.Context) error {
				_, err := a.Get(ctx, "a-native-big-00", metav1.GetOptions{})
				return err
			})
		}
	}
	if cases["lists"] {
		for range 2 {
			hammer(func(ctx context.Context) error {
				_, err := a.List(ctx, metav1.ListOptions{})
				return err
			})
		}
	}
	if cases["templates"] {
		for _, name := range []string{"a-native-patch-0", "a-native-patch-1"} {
			var n atomic.Int64
			hammer(func(ctx context.Context) error {
				_, err := a.Patch(ctx, name, types.MergePatchType,
					fmt.Appendf(nil, `{"metadata":{"annotations":{"perf":"%d"}}}`, n.Add(1)), metav1.PatchOptions{})
				return err
			})
		}
	}
	if cases["backlog"] {
		h.once(func(noisyCtx context.Context) {
			names := make([]string, *noisyBacklog)
			for i := range names {
				names[i] = fmt.Sprintf("a-native-backlog-%04d", i)
			}
			_ = createAll(noisyCtx, names, func(ctx context.Context, name string) error {
				err := secret(ctx, noisyNS, name, *valueSize, 1)
				if errors.Is(err, context.Canceled) || apierrors.IsAlreadyExists(err) {
					return nil
				}
				return err
			}, nil)
		})
	}
	n.noisy = paced(ctx, *quietRate, *duration, readB)
	n.noisyCreates, err = createB("native-noisy")
	n.aRequests, n.aRefused = h.stop()
	return n, err
}

// native is what the native control measured of B, in each half, and how
// many requests A made.
type native struct {
	quiet, noisy               result
	quietCreates, noisyCreates syncTimes
	aRequests, aRefused        int64
}

// timeEachCreate creates every name from *concurrency workers, as
// timeFirstSyncsIn does, and returns the time until all were created and
// the distribution of each create's own time.
func timeEachCreate(ctx context.Context, names []string, create func(context.Context, string) error) (syncTimes, error) {
	var mu sync.Mutex
	lat := make([]time.Duration, 0, len(names))
	start := time.Now()
	err := createAll(ctx, names, func(ctx context.Context, name string) error {
		t := time.Now()
		err := create(ctx, name)
		mu.Lock()
		lat = append(lat, time.Since(t))
		mu.Unlock()
		return err
	}, nil)
	total := time.Since(start)
	if err != nil {
		return syncTimes{}, err
	}
	slices.Sort(lat)
	return syncTimes{total: total, p50: lat[len(lat)/2], p99: lat[min(len(lat)-1, len(lat)*99/100)], max: lat[len(lat)-1]}, nil
}
