package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/syncer"
)

// generatorPushSecret is a PushSecret of the Password name's values.
func generatorPushSecret(ns, name, password string, policy configv1alpha1.PushSecretUpdatePolicy, m configv1alpha1.PushSecretMatch) *configv1alpha1.PushSecret {
	return &configv1alpha1.PushSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: configv1alpha1.PushSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: configv1alpha1.MinGeneratorRefreshInterval},
			SecretStoreRefs: []configv1alpha1.SecretStoreRef{storeRef("vault")},
			UpdatePolicy:    policy,
			Selector: configv1alpha1.PushSecretSelector{GeneratorRef: &configv1alpha1.PushSecretGeneratorRef{
				APIVersion: "config.veil.dev/v1alpha1", Kind: "Password", Name: password,
			}},
			Data: []configv1alpha1.PushSecretData{{Match: m}},
		},
	}
}

// checkPassword says whether p is a password of the spec the test uses:
// 40 characters, 5 digits, 5 of the symbols -_$@, letters for the rest.
func checkPassword(p string) error {
	digits, symbols, letters := 0, 0, 0
	for _, c := range p {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case strings.ContainsRune("-_$@", c):
			symbols++
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters++
		}
	}
	if len(p) != 40 || digits != 5 || symbols != 5 || letters != 30 {
		return fmt.Errorf("a password of %d characters: %d digits, %d symbols, %d letters; want 40: 5, 5, 30", len(p), digits, symbols, letters)
	}
	return nil
}

// TestPushSecretGenerator: a PushSecret with selector.generatorRef pushes
// a password generated as its Password says to Vault, which an
// ExternalSecret reads back; the refresh rotates it, but not with
// IfNotExists; naming a Password one may not get is refused by admission;
// and the generated values appear nowhere but in Vault and the
// ExternalSecret's Secret: no log, Event, status or metric.
func TestPushSecretGenerator(t *testing.T) {
	s := startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	five, syms := int32(5), "-_$@"
	pw := &configv1alpha1.Password{
		ObjectMeta: metav1.ObjectMeta{Name: "strong", Namespace: ns},
		Spec:       configv1alpha1.PasswordSpec{Length: 40, Digits: &five, Symbols: &five, SymbolCharacters: &syms, AllowRepeat: true},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().Passwords(ns).Create(ctx, pw, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The schema's bounds, checked by kube-apiserver.
	bad := pw.DeepCopy()
	bad.Name, bad.Spec.Length, bad.Spec.AllowRepeat = "too-long", configv1alpha1.MaxPasswordLength+1, true
	if _, err := cluster.VeilClient.ConfigV1alpha1().Passwords(ns).Create(ctx, bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("a Password of length %d: %v, want invalid", bad.Spec.Length, err)
	}

	// Admission: a user who may write PushSecrets and use the store, but
	// not get the Password, may not name it.
	author := unique("author-")
	bind(t, ns, author, "veil:definitions-editor")
	bind(t, ns, author, "veil:store-user")
	app := generatorPushSecret(ns, "app", "strong", "", match("password", "gen/db", "password"))
	_, err := userClient(t, author).ConfigV1alpha1().PushSecrets(ns).Create(ctx, app, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "may not get passwords/strong (group config.veil.dev) in namespace "+ns) {
		t.Fatalf("a PushSecret naming a Password its author may not get: %v, want forbidden", err)
	}
	bind(t, ns, author, "veil:definitions-viewer")
	eventually(t, func() error {
		_, err := userClient(t, author).ConfigV1alpha1().PushSecrets(ns).Create(ctx, app, metav1.CreateOptions{})
		return err
	})
	// IfNotExists: pushed once, never rotated.
	once := generatorPushSecret(ns, "once", "strong", configv1alpha1.PushSecretUpdatePolicyIfNotExists, match("password", "gen/once", "password"))
	if _, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Create(ctx, once, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	readVault := func(key string) (string, error) {
		data, err := vaultKV(t, v, key)
		if err != nil {
			return "", err
		}
		p, _ := data["password"].(string)
		return p, checkPassword(p)
	}
	first := waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, ""))
	firstValue, err := readVault("gen/db")
	if err != nil {
		t.Fatalf("Vault's gen/db: %v", err)
	}
	if first.Status.DataHMAC != "" || first.Status.SyncedPushSecrets["SecretStore/vault"]["gen/db#password"].Result != "Pushed" {
		t.Errorf("status: dataHMAC %q, syncedPushSecrets %+v", first.Status.DataHMAC, first.Status.SyncedPushSecrets)
	}
	waitPushEvent(t, ns, "app", syncer.EventPushed, "Pushed new values generated by Password strong to SecretStore/vault gen/db#password")
	onceFirst := waitPush(t, 30*time.Second, pushReady(ns, "once", configv1alpha1.ReasonSynced, ""))
	onceValue, err := readVault("gen/once")
	if err != nil {
		t.Fatalf("Vault's gen/once: %v", err)
	}

	// Readers get it through an ExternalSecret.
	es := &configv1alpha1.ExternalSecret{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Spec: configv1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: 2 * time.Second},
			SecretStoreRef:  new(storeRef("vault")),
			Target:          &configv1alpha1.ExternalSecretTarget{Name: "db"},
			Data:            []configv1alpha1.ExternalSecretData{dataRef("password", "gen/db", "password")},
		},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSecret(t, ns, "db", hasData(map[string]string{"password": firstValue}))

	// The refresh (a minute, the floor) rotates it, and the ExternalSecret
	// follows; IfNotExists refreshes too, and leaves its value alone.
	var secondValue string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		p, err := readVault("gen/db")
		if err == nil && p != firstValue {
			secondValue = p
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gen/db was not rotated within 3 minutes (%v)", err)
		}
		time.Sleep(time.Second)
	}
	waitSecret(t, ns, "db", hasData(map[string]string{"password": secondValue}))
	waitPush(t, 2*time.Minute, func(t *testing.T) (*configv1alpha1.PushSecret, error) {
		ps, err := pushReady(ns, "once", configv1alpha1.ReasonSynced, "")(t)
		if err != nil {
			return nil, err
		}
		if !ps.Status.RefreshTime.After(onceFirst.Status.RefreshTime.Time) {
			return nil, fmt.Errorf("PushSecret once has not refreshed yet")
		}
		if r := ps.Status.SyncedPushSecrets["SecretStore/vault"]["gen/once#password"].Result; r != "SkippedExists" {
			return nil, fmt.Errorf("PushSecret once: result %q, want SkippedExists", r)
		}
		return ps, nil
	})
	if p, err := readVault("gen/once"); err != nil || p != onceValue {
		t.Errorf("IfNotExists: gen/once changed on refresh (%v)", err)
	}

	// The values are in Vault and the ExternalSecret's Secret, and nowhere
	// else.
	out := kubectl(t, "", "get", "pushsecrets,passwords,events", "-n", ns, "-o", "yaml")
	m, err := s.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{"first": firstValue, "second": secondValue, "IfNotExists": onceValue} {
		if strings.Contains(out, value) || strings.Contains(out, b64(value)) {
			t.Errorf("the %s value is in a PushSecret, Password or Event", name)
		}
		if strings.Contains(m.Raw, value) {
			t.Errorf("the %s value is in the syncer's metrics", name)
		}
		sightings, err := cluster.FindCanary(ctx, value)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		if name != "IfNotExists" {
			// Only the reader's Secret, while it holds it.
			want = []string{"/registry/secrets/" + ns + "/db"}
		}
		if got := slices.Sorted(slices.Values(sightings.EtcdKeys)); name != "first" && !slices.Equal(got, want) {
			t.Errorf("the %s value is in etcd keys %v, want exactly %v", name, got, want)
		} else if name == "first" && len(got) > len(want) {
			t.Errorf("the %s value is in etcd keys %v", name, got)
		}
		if sightings.InFiles() != 0 {
			t.Errorf("the %s value is in logs: %s", name, sightings)
		}
		if _, ok := sightings.Files[s.LogFile]; !ok {
			t.Errorf("the syncer's log %s was not searched", s.LogFile)
		}
	}
}
