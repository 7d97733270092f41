package e2e

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	"github.com/veil-dev/veil/test/harness"
)

// vaultWriterPolicy lets a store's token push to and delete from secret/.
const vaultWriterPolicy = `
path "secret/data/*"     { capabilities = ["create", "read", "update"] }
path "secret/metadata/*" { capabilities = ["create", "read", "update", "delete", "list"] }
`

// vaultWriterStore creates a store on v's TLS listener whose token may write.
func vaultWriterStore(t *testing.T, v *harness.Vault, ns, name string, readOnly bool) {
	t.Helper()
	ctx := ctxFor(t)
	if err := v.Policy(ctx, "writer", vaultWriterPolicy); err != nil {
		t.Fatal(err)
	}
	tok, err := v.Token(ctx, time.Hour, "writer")
	if err != nil {
		t.Fatal(err)
	}
	vaultSecret(t, ns, name+"-token", map[string]string{"token": tok})
	s := &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: configv1alpha1.SecretStoreSpec{ReadOnly: readOnly, Provider: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{
			Server: v.HTTPSURL, CABundle: v.CA.CertPEM,
			Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: name + "-token", Key: "token"}},
		}}},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createPushSecret maps source keys to remote keys through the given stores.
func createPushSecret(t *testing.T, ns, name, source string, policy configv1alpha1.PushSecretUpdatePolicy, stores []configv1alpha1.SecretStoreRef, matches ...configv1alpha1.PushSecretMatch) {
	t.Helper()
	ps := &configv1alpha1.PushSecret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: configv1alpha1.PushSecretSpec{
			SecretStoreRefs: stores, UpdatePolicy: policy,
			Selector: configv1alpha1.PushSecretSelector{Secret: configv1alpha1.PushSecretSecret{Name: source}},
		},
	}
	for _, m := range matches {
		ps.Spec.Data = append(ps.Spec.Data, configv1alpha1.PushSecretData{Match: m})
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(ns).Create(ctxFor(t), ps, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func match(secretKey, remoteKey, property string) configv1alpha1.PushSecretMatch {
	return configv1alpha1.PushSecretMatch{SecretKey: secretKey, RemoteRef: configv1alpha1.PushSecretRemoteRef{RemoteKey: remoteKey, Property: property}}
}

// secretPush creates a SecretPush as client, retrying while veil-apiserver's
// informers have not seen a PushSecret or store created a moment ago.
func secretPush(t *testing.T, client versioned.Interface, ns, name string, action esv1alpha1.SecretPushAction, data map[string]string) (*esv1alpha1.SecretPush, error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := secretPushOnce(t, client, ns, name, action, data)
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// secretPushOnce creates a SecretPush once, for a request whose answer is
// meant to be an error, NotFound included.
func secretPushOnce(t *testing.T, client versioned.Interface, ns, name string, action esv1alpha1.SecretPushAction, data map[string]string) (*esv1alpha1.SecretPush, error) {
	t.Helper()
	sp := &esv1alpha1.SecretPush{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: esv1alpha1.SecretPushSpec{Action: action, Data: map[string][]byte{}}}
	for k, v := range data {
		sp.Spec.Data[k] = []byte(v)
	}
	return client.ExternalsecretsV1alpha1().SecretPushes(ns).Create(ctxFor(t), sp, metav1.CreateOptions{})
}

// results flattens a SecretPush's results to "remoteKey[/property]=Result".
func results(sp *esv1alpha1.SecretPush) string {
	var r []string
	for _, x := range sp.Status.Results {
		k := x.RemoteKey
		if x.Property != "" {
			k += "/" + x.Property
		}
		r = append(r, k+"="+x.Result)
	}
	return strings.Join(r, ",")
}

func TestPushVault(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	vaultWriterStore(t, v, ns, "vault", false)
	stores := []configv1alpha1.SecretStoreRef{storeRef("vault")}
	createPushSecret(t, ns, "app", "unused", "", stores, match("password", "ci/app", "password"), match("token", "ci/token", "value"))

	// An ExternalSecret reading what is pushed, allowed to be an hour old:
	// a push must still show at once, because it makes the cached value
	// unreachable.
	vaultData(t, ns, "reader", "vault", dataRef("password", "ci/app", "password"))
	reader, _ := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctx, "reader", metav1.GetOptions{})
	reader.Spec.RefreshInterval = &metav1.Duration{Duration: time.Hour}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Update(ctx, reader, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	first, second := unique("pushed-one-"), unique("pushed-two-")
	sp, err := secretPush(t, cluster.VeilClient, ns, "app", "", map[string]string{"password": first, "token": "tok"})
	if err != nil || results(sp) != "ci/app/password=Pushed,ci/token/value=Pushed" {
		t.Fatalf("first push: %s, %v", results(sp), err)
	}
	if len(sp.Spec.Data) != 0 {
		t.Error("the response echoes the values")
	}
	got, err := v.Root.KVv2("secret").Get(ctx, "ci/app")
	if err != nil || got.Data["password"] != first {
		t.Fatalf("Vault holds %v (%v), want the pushed password", got, err)
	}
	wantData(t, mustValue(t, ns, "reader"), map[string]string{"password": first})

	// The same data again: no write.
	puts := veilMetricsSince(t)
	if sp, err = secretPush(t, cluster.VeilClient, ns, "app", "", map[string]string{"password": first, "token": "tok"}); err != nil || results(sp) != "ci/app/password=Unchanged,ci/token/value=Unchanged" {
		t.Fatalf("unchanged push: %s, %v", results(sp), err)
	}
	if d := vaultCalls(puts, "kv-put"); d != 0 {
		t.Errorf("an unchanged push wrote to Vault %v times", d)
	}

	if sp, err = secretPush(t, cluster.VeilClient, ns, "app", "", map[string]string{"password": second, "token": "tok"}); err != nil || results(sp) != "ci/app/password=Pushed,ci/token/value=Unchanged" {
		t.Fatalf("changed push: %s, %v", results(sp), err)
	}
	wantData(t, mustValue(t, ns, "reader"), map[string]string{"password": second})

	// IfNotExists never overwrites.
	createPushSecret(t, ns, "once", "unused", configv1alpha1.PushSecretUpdatePolicyIfNotExists, stores, match("token", "ci/token", "value"))
	if sp, err = secretPush(t, cluster.VeilClient, ns, "once", "", map[string]string{"token": "other"}); err != nil || results(sp) != "ci/token/value=SkippedExists" {
		t.Fatalf("IfNotExists: %s, %v", results(sp), err)
	}

	// A key Veil did not write is not overwritten unless the PushSecret says Replace.
	if _, err := v.PutKV(ctx, "secret", "ci/foreign", map[string]any{"v": "someone else's"}); err != nil {
		t.Fatal(err)
	}
	createPushSecret(t, ns, "foreign", "unused", "", stores, match("v", "ci/foreign", "v"))
	sp, err = secretPush(t, cluster.VeilClient, ns, "foreign", "", map[string]string{"v": "mine"})
	if err != nil || results(sp) != "ci/foreign/v=Failed" || sp.Status.Results[0].Reason != "Conflict" {
		t.Fatalf("push over an unmanaged key: %s %+v, %v", results(sp), sp.Status.Results, err)
	}
	createPushSecret(t, ns, "replace", "unused", configv1alpha1.PushSecretUpdatePolicyReplace, stores, match("v", "ci/foreign", "v"))
	if sp, err = secretPush(t, cluster.VeilClient, ns, "replace", "", map[string]string{"v": "mine"}); err != nil || results(sp) != "ci/foreign/v=Pushed" {
		t.Fatalf("Replace over an unmanaged key: %s, %v", results(sp), err)
	}

	if sp, err = secretPush(t, cluster.VeilClient, ns, "app", esv1alpha1.SecretPushActionDelete, nil); err != nil || results(sp) != "ci/app/password=Deleted,ci/token/value=Deleted" {
		t.Fatalf("delete: %s, %v", results(sp), err)
	}
	if _, err := v.Root.KVv2("secret").Get(ctx, "ci/token"); err == nil {
		t.Error("ci/token is still in Vault after the delete")
	}
}

func TestPushAWS(t *testing.T) {
	ctx := ctxFor(t)
	f := newAWSFixture(t)
	createAWSStore(t, f.ns, "sm", f.spec(configv1alpha1.AWSServiceSecretsManager, "aws-keys"))
	createAWSStore(t, f.ns, "ps", f.spec(configv1alpha1.AWSServiceParameterStore, "aws-keys"))
	createPushSecret(t, f.ns, "app", "unused", "", []configv1alpha1.SecretStoreRef{storeRef("sm"), storeRef("ps")},
		match("password", "ci-app", ""))

	first, second := unique("aws-one-"), unique("aws-two-")
	sp, err := secretPush(t, cluster.VeilClient, f.ns, "app", "", map[string]string{"password": first})
	if err != nil || results(sp) != "ci-app=Pushed,ci-app=Pushed" {
		t.Fatalf("first push: %s, %v", results(sp), err)
	}
	readBoth := func(want string) {
		t.Helper()
		sv, err := f.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("ci-app")})
		if err != nil || aws.ToString(sv.SecretString) != want {
			t.Errorf("Secrets Manager holds another value (%v)", err)
		}
		pv, err := f.ps.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("ci-app"), WithDecryption: aws.Bool(true)})
		if err != nil || aws.ToString(pv.Parameter.Value) != want {
			t.Errorf("Parameter Store holds another value (%v)", err)
		}
	}
	readBoth(first)

	since := awsCallsSince(t, "PutSecretValue", "CreateSecret", "PutParameter")
	if sp, err = secretPush(t, cluster.VeilClient, f.ns, "app", "", map[string]string{"password": first}); err != nil || results(sp) != "ci-app=Unchanged,ci-app=Unchanged" {
		t.Fatalf("unchanged push: %s, %v", results(sp), err)
	}
	for op, n := range since() {
		if n != 0 {
			t.Errorf("an unchanged push called %s %v times", op, n)
		}
	}
	if sp, err = secretPush(t, cluster.VeilClient, f.ns, "app", "", map[string]string{"password": second}); err != nil || results(sp) != "ci-app=Pushed,ci-app=Pushed" {
		t.Fatalf("changed push: %s, %v", results(sp), err)
	}
	readBoth(second)

	if sp, err = secretPush(t, cluster.VeilClient, f.ns, "app", esv1alpha1.SecretPushActionDelete, nil); err != nil || results(sp) != "ci-app=Deleted,ci-app=Deleted" {
		t.Fatalf("delete: %s, %v", results(sp), err)
	}
	if _, err := f.ps.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("ci-app")}); err == nil {
		t.Error("the parameter survived the delete")
	}
}

func TestPushAuthorization(t *testing.T) {
	v := startVault(t)
	teamA, teamB := newNamespace(t, nil), newNamespace(t, nil)
	vaultWriterStore(t, v, teamA, "vault", false)
	vaultWriterStore(t, v, teamA, "frozen", true)
	createPushSecret(t, teamA, "app", "unused", "", []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("k", "ci/authz", "value"))
	createPushSecret(t, teamA, "to-frozen", "unused", "", []configv1alpha1.SecretStoreRef{storeRef("frozen")}, match("k", "ci/frozen", "value"))
	// team-b names team-a's store: a SecretStoreRef has no namespace, so it
	// can only ever mean team-b's own.
	createPushSecret(t, teamB, "steal", "unused", "", []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("k", "ci/stolen", "value"))

	css := &configv1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: unique("css-push-")},
		Spec: configv1alpha1.ClusterSecretStoreSpec{SecretStoreSpec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{
			Server: v.HTTPSURL, CABundle: v.CA.CertPEM,
			Auth: configv1alpha1.VaultAuth{TokenSecretRef: &configv1alpha1.SecretKeySelector{Name: "vault-token", Key: "token", Namespace: &teamA}},
		}}}},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Create(ctxFor(t), css, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.VeilClient.ConfigV1alpha1().ClusterSecretStores().Delete(context.Background(), css.Name, metav1.DeleteOptions{})
	})
	createPushSecret(t, teamB, "to-cluster", "unused", "", []configv1alpha1.SecretStoreRef{{Name: css.Name, Kind: configv1alpha1.ClusterSecretStoreKind}}, match("k", "ci/css", "value"))

	pusher, reader := unique("ci-"), unique("reader-")
	bind(t, teamA, pusher, "veil:pusher")
	bind(t, teamA, reader, "veil:values-reader")
	data := map[string]string{"k": unique("authz-")}
	puts := veilMetricsSince(t)

	if _, err := secretPush(t, userClient(t, pusher), teamA, "app", "", data); err != nil {
		t.Errorf("a user granted veil:pusher: %v", err)
	}
	for _, c := range []struct {
		name  string
		user  string
		ns    string
		ps    string
		check func(error) bool
		says  string
	}{
		{"reading values is not pushing", reader, teamA, "app", apierrors.IsForbidden, `cannot create resource "secretpushes"`},
		{"pusher in another namespace", pusher, teamB, "steal", apierrors.IsForbidden, `cannot create resource "secretpushes"`},
		{"another namespace's store", "admin", teamB, "steal", apierrors.IsNotFound, `SecretStore "vault" does not exist in namespace "` + teamB + `"`},
		{"read-only store", "admin", teamA, "to-frozen", apierrors.IsForbidden, "is read-only (spec.readOnly)"},
		{"ClusterSecretStore without conditions", "admin", teamB, "to-cluster", apierrors.IsForbidden, "has no spec.conditions"},
	} {
		t.Run(c.name, func(t *testing.T) {
			client := cluster.VeilClient
			if c.user != "admin" {
				client = userClient(t, c.user)
			}
			_, err := secretPushOnce(t, client, c.ns, c.ps, "", data)
			if !c.check(err) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("got %v, want an error saying %q", err, c.says)
			}
			if err != nil && strings.Contains(err.Error(), data["k"]) {
				t.Errorf("the error carries the value: %v", err)
			}
		})
	}
	if d := vaultCalls(puts, "kv-put"); d != 1 {
		t.Errorf("%v writes reached Vault, want exactly the one allowed push", d)
	}
}

// TestCanaryPush pushes a unique value through the API; it must reach the
// provider and appear nowhere else: not in etcd, a log, an audit log, the
// response or veil-apiserver's metrics.
func TestCanaryPush(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	vaultWriterStore(t, v, ns, "vault", false)
	createPushSecret(t, ns, "app", "unused", "", []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("secret", "ci/canary", "value"))
	canary := unique("veil-canary-push-")

	sp, err := secretPush(t, cluster.VeilClient, ns, "app", "", map[string]string{"secret": canary})
	if err != nil || results(sp) != "ci/canary/value=Pushed" {
		t.Fatalf("push: %s, %v", results(sp), err)
	}
	out, _, err := cluster.RunKubectl(ctx, "", []byte(`{"apiVersion":"externalsecrets.veil.dev/v1alpha1","kind":"SecretPush","metadata":{"name":"app"},"spec":{"data":{"secret":"`+b64(canary)+`"}}}`),
		"create", "-n", ns, "-f", "-", "-o", "yaml")
	if err != nil || !strings.Contains(string(out), "result: Unchanged") {
		t.Fatalf("kubectl create secretpush: %v\n%s", err, out)
	}
	if strings.Contains(string(out), canary) || strings.Contains(string(out), b64(canary)) {
		t.Errorf("the response carries the value:\n%s", out)
	}
	got, err := v.Root.KVv2("secret").Get(ctx, "ci/canary")
	if err != nil || got.Data["value"] != canary {
		t.Fatalf("the provider does not hold the pushed value (%v)", err)
	}
	assertOnlyInProvider(t, canary)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
