package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	"github.com/veil-dev/veil/test/harness"
)

var (
	rotations   = flag.Int("rotations", 12, "value rotations timed per provider in P7")
	detectKeys  = flag.Int("detect-keys", 1000, "remote keys read through one store when P7 counts provider calls per detection cycle")
	detectEvery = flag.Duration("change-detection-interval", 5*time.Second, "veil-apiserver's --change-detection-interval in P7 (its default); writes are spread over it")
)

func init() {
	scenarios = append(scenarios, scenario{"P7",
		"rotation: a value written at Vault KV v2 (polled, and followed by its socket audit device with --vault-audit-feed), at Vault KV v1 (polled, by a keyed hash of each value) and at Secrets Manager, with a 1h refresh interval and --change-detection-interval as given (default: veil-apiserver's), until a watch of values sees it and until the materialised Secret has it; provider calls per detection cycle at --detect-keys keys",
		rotationScenario})
}

// p7Provider is one provider under P7: how to make a store of it and how
// to write a key as its operator would.
type p7Provider struct {
	name   string
	store  configv1alpha1.SecretStoreProvider
	write  func(ctx context.Context, key, value string) error
	metric string // the provider call counted per detection cycle
	labels map[string]string
	// calls, when set, counts the calls instead of metric (a server of
	// its own: veil-apiserver's metric counts every Vault's).
	calls func() (float64, error)
	// token, when set, is the Vault token of the store (its own server).
	token string
	ns    string
}

func rotationScenario(ctx context.Context, c *harness.Cluster) error {
	// A second Vault, on a port chosen now, feeds its socket audit device
	// to veil-apiserver.
	ports, err := harness.FreePorts(2)
	if err != nil {
		return err
	}
	feedAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	if err := c.RestartVeil(ctx, "--allowed-provider-endpoints=127.0.0.1,localhost", "--allow-plaintext-providers",
		"--change-detection-interval="+detectEvery.String(),
		fmt.Sprintf("--vault-audit-feed=http://127.0.0.1:%d@%s", ports[0], feedAddr), "--vault-audit-sources=127.0.0.1"); err != nil {
		return err
	}
	defer func() { _ = c.RestartVeil(context.Background()) }()
	kube, veil, err := unlimitedClients(c)
	if err != nil {
		return err
	}
	s, err := c.StartSyncer(ctx, "veil-syncer-perf-7")
	if err != nil {
		return err
	}
	defer s.Stop()
	if err := waitLease(ctx, kube, s.Name); err != nil {
		return err
	}

	v, err := c.StartVault(ctx, "vault-perf-7")
	if err != nil {
		return err
	}
	defer v.Stop()
	if err := v.EnableKV(ctx, "kv1", 1); err != nil {
		return err
	}
	if err := v.Policy(ctx, "reader", `path "secret/*" { capabilities = ["read", "list"] }
path "kv1/*" { capabilities = ["read", "list"] }`); err != nil {
		return err
	}
	token, err := v.Token(ctx, 2*time.Hour, "reader")
	if err != nil {
		return err
	}
	fv, err := c.StartVaultOn(ctx, "vault-perf-7-feed", ports[0])
	if err != nil {
		return err
	}
	defer fv.Stop()
	if err := fv.Root.Sys().EnableAuditWithOptionsWithContext(ctx, "veil-feed", &vaultapi.EnableAuditOptions{
		Type: "socket", Options: map[string]string{"address": feedAddr, "socket_type": "tcp"},
	}); err != nil {
		return err
	}
	if err := fv.Policy(ctx, "reader", `path "secret/*" { capabilities = ["read", "list"] }`); err != nil {
		return err
	}
	feedToken, err := fv.Token(ctx, 2*time.Hour, "reader")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "perf-moto-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m, err := harness.StartMoto(ctx, dir)
	if err != nil {
		return err
	}
	defer m.Stop()
	sm := secretsmanager.NewFromConfig(m.Config(harness.MotoAccessKeyID, harness.MotoSecretAccessKey))

	providers := []*p7Provider{
		{
			name: "vault", ns: "perf-rotate-vault",
			store: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{Server: v.HTTPURL,
				Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"}}}},
			write: func(ctx context.Context, key, value string) error {
				_, err := v.PutKV(ctx, "secret", key, map[string]any{"value": value})
				return err
			},
			metric: "veil_provider_calls_total", labels: map[string]string{"provider": "vault", "operation": "kv-metadata"},
		},
		{
			// KV v1 keeps no versions: detection reads each value and
			// keeps a keyed hash of it.
			name: "vault KV v1", ns: "perf-rotate-vault-kv1",
			store: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{Server: v.HTTPURL,
				Path: new("kv1"), Version: configv1alpha1.VaultKVv1,
				Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"}}}},
			write: func(ctx context.Context, key, value string) error {
				return v.PutKVv1(ctx, "kv1", key, map[string]any{"value": value})
			},
			metric: "veil_provider_calls_total", labels: map[string]string{"provider": "vault", "operation": "kv-version"},
		},
		{
			name: "vault, audit feed", ns: "perf-rotate-vault-feed", token: feedToken,
			store: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{Server: fv.HTTPURL,
				Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "creds", Key: "token"}}}},
			write: func(ctx context.Context, key, value string) error {
				_, err := fv.PutKV(ctx, "secret", key, map[string]any{"value": value})
				return err
			},
			// Every read of a key's version, from the server's own audit log.
			calls: func() (float64, error) {
				entries, err := fv.Audit()
				n := 0
				for _, e := range entries {
					if e.Type == "response" && e.Request.Operation == "read" && strings.HasPrefix(e.Request.Path, "secret/metadata/") {
						n++
					}
				}
				return float64(n), err
			},
		},
		{
			name: "secretsmanager", ns: "perf-rotate-aws",
			store: configv1alpha1.SecretStoreProvider{AWS: &configv1alpha1.AWSProvider{
				Service: configv1alpha1.AWSServiceSecretsManager, Region: m.Region, Endpoint: m.URL, STSEndpoint: m.URL,
				Auth: configv1alpha1.AWSAuth{SecretRef: &configv1alpha1.AWSAuthSecretRef{
					AccessKeyID:     configv1alpha1.SecretKeySelector{Name: "creds", Key: "id"},
					SecretAccessKey: configv1alpha1.SecretKeySelector{Name: "creds", Key: "secret"},
				}}}},
			write: func(ctx context.Context, key, value string) error {
				_, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(key), SecretString: aws.String(value)})
				if err != nil && strings.Contains(err.Error(), "ResourceNotFound") {
					_, err = sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(key), SecretString: aws.String(value)})
				}
				return err
			},
			metric: "veil_provider_calls_total", labels: map[string]string{"provider": "aws", "operation": "ListSecrets"},
		},
	}
	fmt.Printf("| provider | rotations | watch event p50 | p99 | Secret updated p50 | p99 | syncs' values: from veil-syncer's watch / by GET | provider calls per detection cycle at %d keys |\n|---|---|---|---|---|---|---|---|\n", *detectKeys)
	for _, p := range providers {
		tok := token
		if p.token != "" {
			tok = p.token
		}
		if err := p7Setup(ctx, kube, veil, p, tok); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		reads0, err := s.Metrics(ctx)
		if err != nil {
			return err
		}
		watchLat, secretLat, err := p7Rotate(ctx, kube, veil, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		reads1, err := s.Metrics(ctx)
		if err != nil {
			return err
		}
		readsBy := func(source string) float64 {
			l := map[string]string{"source": source}
			return reads1.Sum("veil_syncer_value_reads_total", l) - reads0.Sum("veil_syncer_value_reads_total", l)
		}
		calls, converged, err := p7CallsPerCycle(ctx, c, veil, p)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		callsCell := fmt.Sprintf("%.1f", calls)
		if converged > 0 {
			callsCell += fmt.Sprintf(" (once its stream had read the new keys' versions, %s after the last ExternalSecret was created)", converged.Round(time.Second))
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %.0f / %.0f | %s |\n", p.name, len(watchLat),
			round(pct(watchLat, 50)), round(pct(watchLat, 99)), round(pct(secretLat, 50)), round(pct(secretLat, 99)), readsBy("watch"), readsBy("get"), callsCell)
	}
	fmt.Println("\nThe write times are spread at random over one detection interval, so the latencies sample every phase of the cycle.")
	return nil
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

const p7Keys = 4

func p7Setup(ctx context.Context, kube kubernetes.Interface, veil versioned.Interface, p *p7Provider, token string) error {
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	creds := map[string]string{"token": token, "id": harness.MotoAccessKeyID, "secret": harness.MotoSecretAccessKey}
	if _, err := kube.CoreV1().Secrets(p.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds"}, StringData: creds}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := veil.ConfigV1alpha1().SecretStores(p.ns).Create(ctx, &configv1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Name: "store"},
		Spec: configv1alpha1.SecretStoreSpec{Provider: p.store}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for i := range p7Keys {
		key := fmt.Sprintf("rotate-%d", i)
		if err := p.write(ctx, key, "initial"); err != nil {
			return err
		}
		if _, err := veil.ConfigV1alpha1().ExternalSecrets(p.ns).Create(ctx, &configv1alpha1.ExternalSecret{
			ObjectMeta: metav1.ObjectMeta{Name: key},
			Spec: configv1alpha1.ExternalSecretSpec{
				SecretStoreRef: new(configv1alpha1.SecretStoreRef{Name: "store"}), RefreshInterval: &metav1.Duration{Duration: time.Hour},
				Target: &configv1alpha1.ExternalSecretTarget{},
				Data:   []configv1alpha1.ExternalSecretData{{SecretKey: "value", RemoteRef: p7Ref(p, key)}},
			},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return waitFor(ctx, 50*time.Millisecond, func() (bool, error) {
		l, err := kube.CoreV1().Secrets(p.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		n := 0
		for _, s := range l.Items {
			if string(s.Data["value"]) == "initial" {
				n++
			}
		}
		return n == p7Keys, fmt.Errorf("%d of %d Secrets synced", n, p7Keys)
	})
}

func p7Ref(p *p7Provider, key string) configv1alpha1.ExternalSecretDataRemoteRef {
	if strings.HasPrefix(p.name, "vault") {
		return configv1alpha1.ExternalSecretDataRemoteRef{Key: key, Property: "value"}
	}
	return configv1alpha1.ExternalSecretDataRemoteRef{Key: key}
}

// p7Rotate writes new values one at a time and times when a watch of
// values, and a watch of Secrets, first carry each.
func p7Rotate(ctx context.Context, kube kubernetes.Interface, veil versioned.Interface, p *p7Provider) (watchLat, secretLat []time.Duration, err error) {
	var mu sync.Mutex
	seen := map[string]time.Time{} // "watch/name/value" or "secret/name/value" → first seen
	note := func(kind, name, value string) {
		mu.Lock()
		defer mu.Unlock()
		k := kind + "/" + name + "/" + value
		if _, ok := seen[k]; !ok {
			seen[k] = time.Now()
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	values, err := veil.ExternalsecretsV1alpha1().ExternalSecretValues(p.ns).Watch(wctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, err
	}
	defer values.Stop()
	secrets, err := kube.CoreV1().Secrets(p.ns).Watch(wctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, err
	}
	defer secrets.Stop()
	go func() {
		for ev := range values.ResultChan() {
			if v, ok := ev.Object.(*esv1alpha1.ExternalSecretValue); ok && ev.Type != watch.Deleted {
				note("watch", v.Name, string(v.Data["value"]))
			}
		}
	}()
	go func() {
		for ev := range secrets.ResultChan() {
			if s, ok := ev.Object.(*corev1.Secret); ok {
				note("secret", s.Name, string(s.Data["value"]))
			}
		}
	}()
	for i := range *rotations {
		// Spread writes over the detection interval.
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(time.Duration(rand.Int64N(int64(*detectEvery)))):
		}
		key, value := fmt.Sprintf("rotate-%d", i%p7Keys), fmt.Sprintf("rotated-%d", i)
		start := time.Now()
		if err := p.write(ctx, key, value); err != nil {
			return nil, nil, err
		}
		var w, s time.Time
		if err := waitFor(ctx, 10*time.Millisecond, func() (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			w, s = seen["watch/"+key+"/"+value], seen["secret/"+key+"/"+value]
			return !w.IsZero() && !s.IsZero(), fmt.Errorf("rotation %d of %s not seen yet", i, key)
		}); err != nil {
			return nil, nil, err
		}
		watchLat = append(watchLat, w.Sub(start))
		secretLat = append(secretLat, s.Sub(start))
	}
	return watchLat, secretLat, nil
}

// p7CallsPerCycle adds ExternalSecrets until the store is read through
// --detect-keys keys, and counts the provider calls of detection per cycle.
// p7CallsPerCycle creates ExternalSecrets up to --detect-keys keys and
// counts the provider calls of five detection cycles. A store followed by
// a stream (p.calls set) is counted once its stream has read every new
// key's version (paced as polling is): converged is how long that took
// after the last ExternalSecret was created.
func p7CallsPerCycle(ctx context.Context, c *harness.Cluster, veil versioned.Interface, p *p7Provider) (perCycle float64, converged time.Duration, err error) {
	for i := p7Keys; i < *detectKeys; i++ {
		key := fmt.Sprintf("rotate-%d", i)
		if err := p.write(ctx, key, "x"); err != nil {
			return 0, 0, err
		}
		if _, err := veil.ConfigV1alpha1().ExternalSecrets(p.ns).Create(ctx, &configv1alpha1.ExternalSecret{
			ObjectMeta: metav1.ObjectMeta{Name: key},
			Spec: configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(configv1alpha1.SecretStoreRef{Name: "store"}),
				Data: []configv1alpha1.ExternalSecretData{{SecretKey: "value", RemoteRef: p7Ref(p, key)}}},
		}, metav1.CreateOptions{}); err != nil {
			return 0, 0, err
		}
	}
	scrape := func() (calls, cycles float64, err error) {
		m, err := c.VeilMetrics(ctx)
		if err != nil {
			return 0, 0, err
		}
		calls = m.Sum(p.metric, p.labels)
		if p.calls != nil {
			if calls, err = p.calls(); err != nil {
				return 0, 0, err
			}
		}
		return calls, m.Sum("veil_change_detection_cycles_total", nil), nil
	}
	created := time.Now()
	if p.calls != nil {
		// Until one whole cycle makes no call (at 10 versions a second,
		// 1,000 keys take 100 s).
		last, lastCycles, err := scrape()
		if err != nil {
			return 0, 0, err
		}
		deadline := time.Now().Add(10 * time.Minute)
		for {
			if time.Now().After(deadline) {
				return 0, 0, fmt.Errorf("the stream still read versions 10 minutes after the last ExternalSecret was created (%v calls)", last)
			}
			select {
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			case <-time.After(time.Second):
			}
			calls, cycles, err := scrape()
			if err != nil {
				return 0, 0, err
			}
			if cycles < lastCycles+1 {
				continue
			}
			quiet := calls == last
			last, lastCycles = calls, cycles
			if quiet {
				break
			}
		}
		converged = time.Since(created)
	}
	// Let two cycles pass over the new keys, then count over five.
	_, start, err := scrape()
	if err != nil {
		return 0, 0, err
	}
	if err := waitFor(ctx, time.Second, func() (bool, error) {
		_, cycles, err := scrape()
		return err == nil && cycles >= start+2, err
	}); err != nil {
		return 0, 0, err
	}
	calls0, cycles0, err := scrape()
	if err != nil {
		return 0, 0, err
	}
	if err := waitFor(ctx, time.Second, func() (bool, error) {
		_, cycles, err := scrape()
		return err == nil && cycles >= cycles0+5, err
	}); err != nil {
		return 0, 0, err
	}
	calls1, cycles1, err := scrape()
	if err != nil {
		return 0, 0, err
	}
	return (calls1 - calls0) / (cycles1 - cycles0), converged, nil
}
