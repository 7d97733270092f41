package e2e

import (
	"fmt"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

// TestVaultAuditFeed: with the Vault server's socket audit device pointed
// at veil-apiserver (--vault-audit-feed), change detection follows the
// server's writes instead of reading every key's version each cycle: while
// nothing changes it reads no key's version, but one probe a store every
// half minute; a write reaches readers, watchers and the Secret in
// seconds, for one metadata read of the key written.
func TestVaultAuditFeed(t *testing.T) {
	ctx := ctxFor(t)
	v, err := cluster.StartVaultOn(ctx, unique("vault-feed-"), feedVaultPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Stop)
	// Beside the file device the harness enables: the socket device must
	// never be Vault's only one.
	if err := v.Root.Sys().EnableAuditWithOptionsWithContext(ctx, "veil-feed", &vaultapi.EnableAuditOptions{
		Type: "socket", Options: map[string]string{"address": feedAddress, "socket_type": "tcp"},
	}); err != nil {
		t.Fatal(err)
	}
	startSyncer(t)
	const n = 20
	var refs []configv1alpha1.ExternalSecretData
	for i := range n {
		key := fmt.Sprintf("app/k%02d", i)
		if _, err := v.PutKV(ctx, "secret", key, map[string]any{"password": "v1"}); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, dataRef(fmt.Sprintf("k%02d", i), key, "password"))
	}
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "vault", func(s *configv1alpha1.VaultProvider) { s.Server, s.CABundle = v.HTTPURL, nil })
	slowExternalSecret(t, ns, "many", "vault", true, refs...)
	waitValue(t, ns, "many", "k07", "v1")
	// The reads of each key's version, in the server's own audit log.
	metadataReads := func() map[string]int {
		out := map[string]int{}
		for i := range n {
			p := fmt.Sprintf("secret/metadata/app/k%02d", i)
			all, _, err := v.Responses(p)
			if err != nil {
				t.Fatal(err)
			}
			out[p] = all
		}
		return out
	}
	eventually(t, func() error {
		m, err := cluster.VeilMetrics(ctx)
		if err != nil {
			return err
		}
		if s := m.Sum("veil_change_detection_streams", nil); s < 1 {
			return fmt.Errorf("change detection follows %v stores by a change stream, want the feed's", s)
		}
		// The stream's initial state read every key's version.
		for p, c := range metadataReads() {
			if c == 0 {
				return fmt.Errorf("%s not read yet", p)
			}
		}
		return nil
	})

	// Quiet: a few cycles read no key's version but the probe's (k00, the
	// first key).
	before := metadataReads()
	start := time.Now()
	detectionCycles(t, 5)
	after := metadataReads()
	for p, c := range after {
		d := c - before[p]
		switch {
		case p == "secret/metadata/app/k00" && d > 1+int(time.Since(start)/(30*time.Second)):
			t.Errorf("%d probe reads of %s in %s, want at most one a half minute", d, p, time.Since(start).Round(time.Second))
		case p != "secret/metadata/app/k00" && d != 0:
			t.Errorf("%s was read %d times in 5 quiet cycles: change detection asked about a key nothing wrote", p, d)
		}
	}

	// A write: detected from the feed, for one read of its metadata.
	m := veilMetricsSince(t)
	prev := changeID(lastChange(t, ns, "many"))
	w := watchValue(t, ns, "many")
	before = metadataReads()
	if _, err := v.PutKV(ctx, "secret", "app/k07", map[string]any{"password": "v2"}); err != nil {
		t.Fatal(err)
	}
	rotated := time.Now()
	waitChange(t, ns, "many", prev, configv1alpha1.ValueChangeDetected, "app/k07")
	waitWatched(t, w, "k07", "v2")
	waitSecret(t, ns, "many", func(s *corev1.Secret) error {
		if string(s.Data["k07"]) != "v2" {
			return fmt.Errorf("the Secret holds %q", s.Data["k07"])
		}
		return nil
	})
	t.Logf("the write reached the Secret %s after it was made", time.Since(rotated).Round(time.Millisecond))
	after = metadataReads()
	if d := after["secret/metadata/app/k07"] - before["secret/metadata/app/k07"]; d < 1 {
		t.Errorf("the written key's version was read %d times, want at least once", d)
	}
	for p, c := range after {
		if p != "secret/metadata/app/k07" && p != "secret/metadata/app/k00" && c != before[p] {
			t.Errorf("%s was read %d times for a write of another key", p, c-before[p])
		}
	}
	if d := m.Delta("veil_vault_audit_entries_total", map[string]string{"kind": "write"}); d < 1 {
		t.Errorf("veil_vault_audit_entries_total{kind=write} rose by %v, want at least 1", d)
	}
}

// TestRemoteVaultAuditFeed: veil-provider-vault takes the same flags, and
// a store it serves from a Vault server with a feed is followed by a
// change stream (WatchChanges) instead of Versions: a write reaches the
// reader through the provider process, and veil-provider receives no
// Versions request while the feed runs.
func TestRemoteVaultAuditFeed(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	token, err := v.Token(ctx, time.Hour, "root")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "v1"}); err != nil {
		t.Fatal(err)
	}
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	feed := fmt.Sprintf("127.0.0.1:%d", ports[0])
	ns := vaultNamespace(t, "remote-feed-")
	name := unique("vault-feed-provider-")
	p, err := cluster.StartProvider(ctx, name, "vault", remoteVaultConfig(v, ns, "vault", "app/"), vaultTokenFile(token), "--vault-audit-feed="+v.HTTPSURL+"@"+feed, "--vault-audit-sources=127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if err := v.Root.Sys().EnableAuditWithOptionsWithContext(ctx, "veil-feed", &vaultapi.EnableAuditOptions{
		Type: "socket", Options: map[string]string{"address": feed, "socket_type": "tcp"},
	}); err != nil {
		t.Fatal(err)
	}
	createRegistration(t, name, p)
	remoteStoreNaming(t, ns, "vault", name)
	slowExternalSecret(t, ns, "app", "vault", false, dataRef("password", "app/db", "password"))
	waitValue(t, ns, "app", "password", "v1")
	eventually(t, func() error {
		if n := providerMetrics(t, p).Sum("veil_provider_requests_total", map[string]string{"method": "WatchChanges"}); n < 1 {
			return fmt.Errorf("veil-provider-vault received %v WatchChanges requests, want the change detection leader's", n)
		}
		return nil
	})
	before := lastChange(t, ns, "app")
	versions := providerMetrics(t, p).Sum("veil_provider_requests_total", map[string]string{"method": "Versions"})
	detectionCycles(t, 3)

	if _, err := v.PutKV(ctx, "secret", "app/db", map[string]any{"password": "v2"}); err != nil {
		t.Fatal(err)
	}
	waitChange(t, ns, "app", changeID(before), configv1alpha1.ValueChangeDetected, "app/db")
	waitValue(t, ns, "app", "password", "v2")
	m := providerMetrics(t, p)
	if n := m.Value(t, "veil_provider_requests_total", map[string]string{"method": "Versions"}); n != versions {
		t.Errorf("veil-provider-vault received %v Versions requests while its feed ran", n-versions)
	}
	if n := m.Value(t, "veil_vault_audit_entries_total", map[string]string{"kind": "write"}); n < 1 {
		t.Errorf("veil-provider-vault counted %v audit entries of writes", n)
	}
}
