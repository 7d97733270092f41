package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

func rewriteRegexp(source, target string) configv1alpha1.ExternalSecretRewrite {
	return configv1alpha1.ExternalSecretRewrite{Regexp: &configv1alpha1.RewriteRegexp{Source: source, Target: target}}
}

func withDataTo(d ...configv1alpha1.PushSecretDataTo) func(*configv1alpha1.PushSecretSpec) {
	return func(s *configv1alpha1.PushSecretSpec) {
		s.DeletionPolicy = configv1alpha1.PushSecretDeletionPolicyDelete
		s.DataTo = d
	}
}

// TestPushSecretDataToVault: ESO's dataTo examples on real Vault KV v2:
// keys matched by regexp, chained rewrites, a transform, data overriding
// dataTo for its key, and remoteKey gathering keys into one Vault secret;
// a new source key is pushed when it appears; no value reaches status,
// Events, metrics, logs or etcd beyond the Secret; and deletionPolicy
// Delete removes every remote key dataTo made. As in ESO, a value pushed to
// a whole Vault key (no property) must be a JSON object: its fields become
// the key's.
func TestPushSecretDataToVault(t *testing.T) {
	s := startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	canary := unique("veil-canary-datato-")
	obj := func(v string) string { return `{"value":"` + v + `"}` }
	data := map[string]string{"db-host": obj(canary + "-host"), "db-port": obj("5432"), "api-key": obj(canary + "-api"), "ignored": obj(canary + "-ignored")}
	src := putSource(t, ns, "src", data)
	newPushSecret(t, ns, "app", "src", withDataTo(
		configv1alpha1.PushSecretDataTo{StoreRef: storeRef("vault"), Match: &configv1alpha1.PushSecretDataToMatch{Regexp: "^db-"},
			Rewrite: []configv1alpha1.ExternalSecretRewrite{rewriteRegexp("^db-", ""), rewriteRegexp("^", "dt/prod/")}},
		configv1alpha1.PushSecretDataTo{StoreRef: storeRef("vault"), Match: &configv1alpha1.PushSecretDataToMatch{Regexp: "^api-"},
			Rewrite: []configv1alpha1.ExternalSecretRewrite{{Transform: &configv1alpha1.RewriteTransform{Template: "dt/{{ .value | upper }}"}}}},
		configv1alpha1.PushSecretDataTo{StoreRef: storeRef("vault"), Match: &configv1alpha1.PushSecretDataToMatch{Regexp: "^db-port$"}, RemoteKey: "dt/bundle"},
	), []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("db-host", "dt/custom/hostname", ""))

	ps := waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitVault(t, v, "dt/custom/hostname", "value", canary+"-host")
	waitVault(t, v, "dt/prod/port", "value", "5432")
	waitVault(t, v, "dt/API-KEY", "value", canary+"-api")
	waitVault(t, v, "dt/bundle", "db-port", obj("5432"))
	for _, gone := range []string{"dt/prod/host", "ignored", "dt/IGNORED"} {
		if d, err := vaultKV(t, v, gone); err == nil && len(d) > 0 {
			t.Errorf("%s was pushed, though data names db-host and no dataTo entry matches ignored", gone)
		}
	}
	synced := ps.Status.SyncedPushSecrets["SecretStore/vault"]
	if got := slices.Sorted(maps.Keys(synced)); !slices.Equal(got, []string{"dt/API-KEY", "dt/bundle", "dt/custom/hostname", "dt/prod/port"}) {
		t.Errorf("syncedPushSecrets has %v", got)
	}
	if e := synced["dt/prod/port"]; e.Match.SecretKey != "db-port" || e.Result != "Pushed" {
		t.Errorf("syncedPushSecrets[dt/prod/port] = %+v", e)
	}

	// A key added to the Secret that dataTo matches is pushed by the
	// next sync, which the Secret's change starts.
	data["db-user"] = obj("app")
	src = putSource(t, ns, "src", data)
	waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitVault(t, v, "dt/prod/user", "value", "app")

	out := kubectl(t, "", "get", "pushsecrets,events", "-n", ns, "-o", "yaml")
	if strings.Contains(out, canary) || strings.Contains(out, b64(canary)) {
		t.Error("the PushSecret or the Events carry a value")
	}
	m, err := s.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(m.Raw, canary) {
		t.Error("the syncer's metrics contain the canary")
	}
	sightings, err := cluster.FindCanary(ctx, canary)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(slices.Values(sightings.EtcdKeys)), []string{"/registry/secrets/" + ns + "/src"}; !slices.Equal(got, want) {
		t.Errorf("canary in etcd keys %v, want exactly %v", got, want)
	}
	if sightings.InFiles() != 0 {
		t.Errorf("canary found in logs: %s", sightings)
	}

	deletePushSecret(t, ns, "app")
	for _, key := range []string{"dt/custom/hostname", "dt/prod/port", "dt/prod/user", "dt/API-KEY", "dt/bundle"} {
		if d, err := vaultKV(t, v, key); err == nil && len(d) > 0 {
			t.Errorf("%s is still in Vault after the PushSecret was deleted", key)
		}
	}
}

// TestPushSecretDataToRefused: what a source Secret's writer controls
// (its key names) cannot make a push write two values to one remote key or
// more keys than the bound; nothing is written, and the status says what
// to fix. A dataTo store must be one of secretStoreRefs (CRD).
func TestPushSecretDataToRefused(t *testing.T) {
	startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)

	// Two keys rewritten to one remote key: refused, naming both.
	putSource(t, ns, "clash", map[string]string{"a-1": "x", "a-2": "y"})
	newPushSecret(t, ns, "clash", "clash", withDataTo(configv1alpha1.PushSecretDataTo{StoreRef: storeRef("vault"),
		Rewrite: []configv1alpha1.ExternalSecretRewrite{rewriteRegexp("-.*$", ""), rewriteRegexp("^", "clash/")}}), []configv1alpha1.SecretStoreRef{storeRef("vault")})
	ps := waitPush(t, 30*time.Second, pushReady(ns, "clash", configv1alpha1.ReasonPushRefused, ""))
	if msg := readyMessage(ps); !strings.Contains(msg, `dataTo[0] (source key "a-1") and dataTo[0] (source key "a-2") both push to remote key "clash/a"`) {
		t.Errorf("Ready says %q", msg)
	}
	if d, err := vaultKV(t, v, "clash/a"); err == nil && len(d) > 0 {
		t.Error("a colliding key was written")
	}

	// More keys than MaxDataToKeys.
	many := map[string]string{}
	for i := range configv1alpha1.MaxDataToKeys + 1 {
		many[fmt.Sprintf("k%03d", i)] = "v"
	}
	putSource(t, ns, "many", many)
	newPushSecret(t, ns, "many", "many", withDataTo(configv1alpha1.PushSecretDataTo{StoreRef: storeRef("vault"),
		Rewrite: []configv1alpha1.ExternalSecretRewrite{rewriteRegexp("^", "many/")}}), []configv1alpha1.SecretStoreRef{storeRef("vault")})
	ps = waitPush(t, 30*time.Second, pushReady(ns, "many", configv1alpha1.ReasonTooManyKeys, ""))
	if msg := readyMessage(ps); !strings.Contains(msg, "matches 101 of its keys, more than the 100") {
		t.Errorf("Ready says %q", msg)
	}
	if d, err := vaultKV(t, v, "many/k000"); err == nil && len(d) > 0 {
		t.Error("a key was written though the push was refused")
	}

	// A dataTo store that is not among secretStoreRefs is refused by the CRD.
	bad := &configv1alpha1.PushSecret{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere", Namespace: ns}, Spec: configv1alpha1.PushSecretSpec{
		SecretStoreRefs: []configv1alpha1.SecretStoreRef{storeRef("vault")},
		Selector:        configv1alpha1.PushSecretSelector{Secret: configv1alpha1.PushSecretSecret{Name: "many"}},
		DataTo:          []configv1alpha1.PushSecretDataTo{{StoreRef: storeRef("other")}},
	}}
	if _, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Create(ctx, bad, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "every dataTo[].storeRef must be one of secretStoreRefs") {
		t.Errorf("a dataTo store outside secretStoreRefs: %v", err)
	}
	bad.Spec.DataTo = nil
	if _, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Create(ctx, bad, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "set data or dataTo") {
		t.Errorf("neither data nor dataTo: %v", err)
	}
	deletePushSecret(t, ns, "clash")
	deletePushSecret(t, ns, "many")
}

// TestPushSecretDataToAWS: dataTo to Secrets Manager (each key its own
// secret, and, with remoteKey, all matched keys as one JSON object) and to
// Parameter Store, on moto; deletionPolicy Delete removes them all.
func TestPushSecretDataToAWS(t *testing.T) {
	startSyncer(t)
	ctx := ctxFor(t)
	f := newAWSFixture(t)
	grantPushSource(t, f.ns)
	createAWSStore(t, f.ns, "sm", f.spec(configv1alpha1.AWSServiceSecretsManager, "aws-keys"))
	createAWSStore(t, f.ns, "ps", f.spec(configv1alpha1.AWSServiceParameterStore, "aws-keys"))
	prefix := unique("dt")
	data := map[string]string{"DB_USER": "app", "DB_PASS": unique("pw-"), "OTHER": "o"}
	src := putSource(t, f.ns, "src", data)
	newPushSecret(t, f.ns, "app", "src", withDataTo(
		configv1alpha1.PushSecretDataTo{StoreRef: storeRef("sm"), Match: &configv1alpha1.PushSecretDataToMatch{Regexp: "^DB_"},
			Rewrite: []configv1alpha1.ExternalSecretRewrite{rewriteRegexp("^DB_", prefix+"-db-")}},
		configv1alpha1.PushSecretDataTo{StoreRef: storeRef("sm"), Match: &configv1alpha1.PushSecretDataToMatch{Regexp: "^DB_"}, RemoteKey: prefix + "-bundle"},
		configv1alpha1.PushSecretDataTo{StoreRef: storeRef("ps"), Rewrite: []configv1alpha1.ExternalSecretRewrite{rewriteRegexp("^", "/"+prefix+"/")}},
	), []configv1alpha1.SecretStoreRef{storeRef("sm"), storeRef("ps")})

	waitPush(t, 30*time.Second, pushReady(f.ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	sm := func(id string) (string, error) {
		out, err := f.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
		if err != nil {
			return "", err
		}
		return aws.ToString(out.SecretString), nil
	}
	for id, want := range map[string]string{prefix + "-db-USER": "app", prefix + "-db-PASS": data["DB_PASS"]} {
		if got, err := sm(id); err != nil || got != want {
			t.Errorf("Secrets Manager %s: %v (value differs: %v)", id, err, got != want)
		}
	}
	if _, err := sm(prefix + "-db-OTHER"); err == nil {
		t.Error("a key the match leaves out was pushed")
	}
	bundle, err := sm(prefix + "-bundle")
	var obj map[string]string
	if err != nil || json.Unmarshal([]byte(bundle), &obj) != nil || !maps.Equal(obj, map[string]string{"DB_USER": "app", "DB_PASS": data["DB_PASS"]}) {
		t.Errorf("the bundle is not the matched keys as one JSON object (%v)", err)
	}
	for k, want := range data {
		p, err := f.ps.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/" + prefix + "/" + k), WithDecryption: aws.Bool(true)})
		if err != nil || aws.ToString(p.Parameter.Value) != want {
			t.Errorf("parameter /%s/%s: %v", prefix, k, err)
		}
	}

	deletePushSecret(t, f.ns, "app")
	for _, id := range []string{prefix + "-db-USER", prefix + "-db-PASS", prefix + "-bundle"} {
		if _, err := sm(id); err == nil {
			t.Errorf("%s can still be read after the PushSecret's deletion", id)
		}
	}
	for k := range data {
		if _, err := f.ps.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/" + prefix + "/" + k)}); err == nil {
			t.Errorf("parameter /%s/%s survived the PushSecret's deletion", prefix, k)
		}
	}
}

// TestPushSecretDataToKeyScope: remote keys made of source key names pass
// the ClusterSecretStore's key scope like written ones: a tenant confined
// to "teams/{namespace}/" pushes under its prefix, and a dataTo whose keys
// land outside it is refused (PushRefused, naming the prefix) with nothing
// written.
func TestPushSecretDataToKeyScope(t *testing.T) {
	startSyncer(t)
	v := startVault(t)
	team := newNamespace(t, nil)
	grantPushSource(t, team)
	ref := sharedVaultStore(t, v, configv1alpha1.ClusterSecretStoreCondition{Namespaces: []string{team}, RemoteKeyPrefix: "teams/{namespace}/"})
	src := putSource(t, team, "src", map[string]string{"db": `{"password":"p"}`})
	newPushSecret(t, team, "inside", "src", withDataTo(configv1alpha1.PushSecretDataTo{StoreRef: ref,
		Rewrite: []configv1alpha1.ExternalSecretRewrite{rewriteRegexp("^", "teams/"+team+"/")}}), []configv1alpha1.SecretStoreRef{ref})
	waitPush(t, 30*time.Second, pushReady(team, "inside", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitVault(t, v, "teams/"+team+"/db", "password", "p")

	newPushSecret(t, team, "outside", "src", withDataTo(configv1alpha1.PushSecretDataTo{StoreRef: ref}), []configv1alpha1.SecretStoreRef{ref})
	ps := waitPush(t, 30*time.Second, pushReady(team, "outside", configv1alpha1.ReasonPushRefused, ""))
	if msg := readyMessage(ps); !strings.Contains(msg, `dataTo[0] (source key "db")`) || !strings.Contains(msg, "teams/"+team+"/") {
		t.Errorf("Ready says %q", msg)
	}
	if d, err := vaultKV(t, v, "db"); err == nil && len(d) > 0 {
		t.Error("a key outside the prefix was written")
	}
	deletePushSecret(t, team, "inside")
	deletePushSecret(t, team, "outside")
}
