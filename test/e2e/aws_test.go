package e2e

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/test/harness"
)

// awsFixture is a moto of one test and a namespace with a Secret of keys
// for it. Each test has its own moto, so one that checks signatures or is
// stopped affects no other.
type awsFixture struct {
	moto *harness.Moto
	ns   string
	sm   *secretsmanager.Client
	ps   *ssm.Client
}

func newAWSFixture(t *testing.T) *awsFixture {
	t.Helper()
	// moto's log holds what it serves: it is kept out of the cluster's
	// logs/, where FindCanary looks for leaks.
	m, err := harness.StartMoto(ctxFor(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	cfg := m.Config(harness.MotoAccessKeyID, harness.MotoSecretAccessKey)
	f := &awsFixture{moto: m, ns: newNamespace(t, nil), sm: secretsmanager.NewFromConfig(cfg), ps: ssm.NewFromConfig(cfg)}
	f.keysSecret(t, f.ns, "aws-keys", harness.AccessKey{ID: harness.MotoAccessKeyID, Secret: harness.MotoSecretAccessKey})
	return f
}

func (f *awsFixture) keysSecret(t *testing.T, ns, name string, k harness.AccessKey) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: map[string]string{"id": k.ID, "secret": k.Secret}}
	if _, err := cluster.KubeClient.CoreV1().Secrets(ns).Create(ctxFor(t), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// spec reads moto with the keys of a Secret of the store's namespace.
func (f *awsFixture) spec(service configv1alpha1.AWSService, keysSecret string) configv1alpha1.AWSProvider {
	return configv1alpha1.AWSProvider{
		Service: service, Region: f.moto.Region, Endpoint: f.moto.URL, STSEndpoint: f.moto.URL,
		Auth: configv1alpha1.AWSAuth{SecretRef: &configv1alpha1.AWSAuthSecretRef{
			AccessKeyID:     configv1alpha1.SecretKeySelector{Name: keysSecret, Key: "id"},
			SecretAccessKey: configv1alpha1.SecretKeySelector{Name: keysSecret, Key: "secret"},
		}},
	}
}

func createAWSStore(t *testing.T, ns, name string, spec configv1alpha1.AWSProvider) {
	t.Helper()
	s := &configv1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{AWS: &spec}},
	}
	if _, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(ns).Create(ctxFor(t), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createAWSExternalSecret(t *testing.T, ns, name string, spec configv1alpha1.ExternalSecretSpec) {
	t.Helper()
	es := &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctxFor(t), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (f *awsFixture) createSecret(t *testing.T, name string, value any, tags map[string]string) string {
	t.Helper()
	in := &secretsmanager.CreateSecretInput{Name: aws.String(name)}
	switch v := value.(type) {
	case string:
		in.SecretString = aws.String(v)
	case []byte:
		in.SecretBinary = v
	}
	for k, v := range tags {
		in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	out, err := f.sm.CreateSecret(ctxFor(t), in)
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.VersionId)
}

func (f *awsFixture) putParameter(t *testing.T, name, value string, typ ssmtypes.ParameterType) {
	t.Helper()
	if _, err := f.ps.PutParameter(ctxFor(t), &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value), Type: typ}); err != nil {
		t.Fatal(err)
	}
}

// awsRead reads an ExternalSecretValue through the aggregator, waiting
// for veil-apiserver's informers to see a new ExternalSecret.
func awsRead(t *testing.T, ns, name string) *esv1alpha1.ExternalSecretValue {
	t.Helper()
	var v *esv1alpha1.ExternalSecretValue
	eventually(t, func() (err error) {
		v, err = cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), name, metav1.GetOptions{})
		return err
	})
	return v
}

// awsReadFails reads an ExternalSecretValue until it fails as want says.
func awsReadFails(t *testing.T, ns, name string, want func(error) bool) error {
	t.Helper()
	var got error
	eventually(t, func() error {
		_, got = cluster.VeilClient.ExternalsecretsV1alpha1().ExternalSecretValues(ns).Get(ctxFor(t), name, metav1.GetOptions{})
		if got == nil || !want(got) {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	return got
}

// awsCallsSince takes a baseline of veil-apiserver's metrics and returns
// a function that counts the AWS API calls made since, by operation (""
// for all of them); it fails the test if the metric is missing.
func awsCallsSince(t *testing.T, ops ...string) func() map[string]float64 {
	t.Helper()
	since := veilMetricsSince(t)
	return func() map[string]float64 {
		t.Helper()
		d := map[string]float64{}
		for _, op := range ops {
			labels := map[string]string{"provider": "aws"}
			if op != "" {
				labels["operation"] = op
			}
			d[op] = since.Delta("veil_provider_calls_total", labels)
		}
		return d
	}
}

func wantAWSData(t *testing.T, v *esv1alpha1.ExternalSecretValue, want map[string][]byte) {
	t.Helper()
	var keys []string
	for k := range v.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(v.Data) != len(want) {
		t.Errorf("%s/%s has keys %v, want %d keys", v.Namespace, v.Name, keys, len(want))
	}
	for k, w := range want {
		if got, ok := v.Data[k]; !ok || !bytes.Equal(got, w) {
			t.Errorf("%s/%s: key %q is missing or holds another value (keys %v)", v.Namespace, v.Name, k, keys)
		}
	}
}

func awsRef(key, property, version string) configv1alpha1.ExternalSecretDataRemoteRef {
	return configv1alpha1.ExternalSecretDataRemoteRef{Key: key, Property: property, Version: version}
}

func awsEntry(secretKey string, ref configv1alpha1.ExternalSecretDataRemoteRef) configv1alpha1.ExternalSecretData {
	return configv1alpha1.ExternalSecretData{SecretKey: secretKey, RemoteRef: ref}
}

func TestAWSSecretsManager(t *testing.T) {
	f := newAWSFixture(t)
	createAWSStore(t, f.ns, "sm", f.spec(configv1alpha1.AWSServiceSecretsManager, "aws-keys"))

	v1 := f.createSecret(t, "app/db", `{"user":"app","password":"first","conn":{"port":5432}}`, nil)
	put, err := f.sm.PutSecretValue(ctxFor(t), &secretsmanager.PutSecretValueInput{SecretId: aws.String("app/db"), SecretString: aws.String(`{"user":"app","password":"second","conn":{"port":5432}}`)})
	if err != nil {
		t.Fatal(err)
	}
	v2 := aws.ToString(put.VersionId)
	binary := []byte{0x00, 0x01, 0xfe, 0xff, 'v', 'e', 'i', 'l'}
	f.createSecret(t, "app/cert", binary, nil)

	t.Run("string, binary and JSON properties", func(t *testing.T) {
		createAWSExternalSecret(t, f.ns, "values", configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("sm")), Data: []configv1alpha1.ExternalSecretData{
			awsEntry("whole", awsRef("app/db", "", "")),
			awsEntry("password", awsRef("app/db", "password", "")),
			awsEntry("port", awsRef("app/db", "conn.port", "")),
			awsEntry("cert", awsRef("app/cert", "", "")),
		}})
		wantAWSData(t, awsRead(t, f.ns, "values"), map[string][]byte{
			"whole":    []byte(`{"user":"app","password":"second","conn":{"port":5432}}`),
			"password": []byte("second"),
			"port":     []byte("5432"),
			"cert":     binary,
		})
	})

	t.Run("versions by id and by stage", func(t *testing.T) {
		createAWSExternalSecret(t, f.ns, "versions", configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("sm")), Data: []configv1alpha1.ExternalSecretData{
			awsEntry("current", awsRef("app/db", "password", "")),
			awsEntry("current-stage", awsRef("app/db", "password", "AWSCURRENT")),
			awsEntry("previous-stage", awsRef("app/db", "password", "AWSPREVIOUS")),
			awsEntry("first-id", awsRef("app/db", "password", v1)),
			awsEntry("second-id", awsRef("app/db", "password", v2)),
		}})
		v := awsRead(t, f.ns, "versions")
		wantAWSData(t, v, map[string][]byte{
			"current": []byte("second"), "current-stage": []byte("second"), "previous-stage": []byte("first"),
			"first-id": []byte("first"), "second-id": []byte("second"),
		})
		versions := map[string]bool{}
		for _, r := range v.Source.Remote {
			versions[r.Version] = true
		}
		if !versions[v1] || !versions[v2] {
			t.Errorf("source.remote %+v does not name both version IDs %s and %s", v.Source.Remote, v1, v2)
		}
	})

	t.Run("several entries of one secret cost one call", func(t *testing.T) {
		f.createSecret(t, "one/db", `{"user":"u","password":"p","host":"h"}`, nil)
		calls := awsCallsSince(t, "GetSecretValue")
		createAWSExternalSecret(t, f.ns, "one", configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("sm")),
			DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: "one/db"}}},
			Data: []configv1alpha1.ExternalSecretData{
				awsEntry("username", awsRef("one/db", "user", "")),
				awsEntry("password", awsRef("one/db", "password", "")),
				awsEntry("hostname", awsRef("one/db", "host", "")),
			}})
		wantAWSData(t, awsRead(t, f.ns, "one"), map[string][]byte{
			"user": []byte("u"), "password": []byte("p"), "host": []byte("h"),
			"username": []byte("u"), "hostname": []byte("h"),
		})
		if n := calls()["GetSecretValue"]; n != 1 {
			t.Errorf("%v GetSecretValue calls for one extract and three entries of one secret, want 1", n)
		}
	})

	f.createSecret(t, "find/alpha", "a", map[string]string{"env": "prod", "team": "x"})
	f.createSecret(t, "find/beta", "b", map[string]string{"env": "prod"})
	f.createSecret(t, "find/gamma", "c", map[string]string{"env": "production"})
	f.createSecret(t, "elsewhere/delta", "d", map[string]string{"env": "prod"})

	t.Run("find by name", func(t *testing.T) {
		calls := awsCallsSince(t, "BatchGetSecretValue", "GetSecretValue")
		createAWSExternalSecret(t, f.ns, "by-name", configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("sm")),
			DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{Find: &configv1alpha1.ExternalSecretFind{Name: &configv1alpha1.FindName{RegExp: "^find/(alpha|gamma)$"}}}}})
		wantAWSData(t, awsRead(t, f.ns, "by-name"), map[string][]byte{"find_alpha": []byte("a"), "find_gamma": []byte("c")})
		if d := calls(); d["BatchGetSecretValue"] < 1 || d["GetSecretValue"] != 0 {
			t.Errorf("calls %v: find must read values with BatchGetSecretValue, not GetSecretValue", d)
		}
	})

	t.Run("find by tag", func(t *testing.T) {
		calls := awsCallsSince(t, "BatchGetSecretValue", "GetSecretValue")
		createAWSExternalSecret(t, f.ns, "by-tag", configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("sm")),
			DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{Find: &configv1alpha1.ExternalSecretFind{Path: aws.String("find/"), Tags: map[string]string{"env": "prod"}}}}})
		wantAWSData(t, awsRead(t, f.ns, "by-tag"), map[string][]byte{"find_alpha": []byte("a"), "find_beta": []byte("b")})
		if d := calls(); d["BatchGetSecretValue"] < 1 || d["GetSecretValue"] != 0 {
			t.Errorf("calls %v: find must read values with BatchGetSecretValue, not GetSecretValue", d)
		}
	})

	t.Run("a missing secret is NotFound", func(t *testing.T) {
		createAWSExternalSecret(t, f.ns, "missing", configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("sm")), Data: []configv1alpha1.ExternalSecretData{awsEntry("x", awsRef("app/nope", "", ""))}})
		err := awsReadFails(t, f.ns, "missing", apierrors.IsNotFound)
		if !strings.Contains(err.Error(), `reading secret "app/nope": it does not exist`) || !strings.Contains(err.Error(), "SecretStore "+f.ns+"/sm") {
			t.Errorf("message does not name the key and the store: %v", err)
		}
	})
}

func TestAWSParameterStore(t *testing.T) {
	f := newAWSFixture(t)
	createAWSStore(t, f.ns, "ps", f.spec(configv1alpha1.AWSServiceParameterStore, "aws-keys"))
	f.putParameter(t, "/demo/plain", "plain text", ssmtypes.ParameterTypeString)
	f.putParameter(t, "/demo/secure", "secure text", ssmtypes.ParameterTypeSecureString)
	f.putParameter(t, "/demo/nested/deep", `{"k":"deep"}`, ssmtypes.ParameterTypeSecureString)
	f.putParameter(t, "/elsewhere/x", "x", ssmtypes.ParameterTypeSecureString)

	t.Run("String and SecureString, read in one batch", func(t *testing.T) {
		calls := awsCallsSince(t, "GetParameters", "GetParameter")
		createAWSExternalSecret(t, f.ns, "params", configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("ps")), Data: []configv1alpha1.ExternalSecretData{
			awsEntry("plain", awsRef("/demo/plain", "", "")),
			awsEntry("secure", awsRef("/demo/secure", "", "")),
			awsEntry("deep", awsRef("/demo/nested/deep", "k", "")),
		}})
		wantAWSData(t, awsRead(t, f.ns, "params"), map[string][]byte{"plain": []byte("plain text"), "secure": []byte("secure text"), "deep": []byte("deep")})
		if d := calls(); d["GetParameters"] != 1 || d["GetParameter"] != 0 {
			t.Errorf("calls %v, want the three parameters read by one GetParameters", d)
		}
	})

	t.Run("find under a path", func(t *testing.T) {
		calls := awsCallsSince(t, "GetParametersByPath")
		createAWSExternalSecret(t, f.ns, "tree", configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("ps")),
			DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{Find: &configv1alpha1.ExternalSecretFind{Path: aws.String("/demo"), Name: &configv1alpha1.FindName{RegExp: "."}}}}})
		wantAWSData(t, awsRead(t, f.ns, "tree"), map[string][]byte{
			"demo_plain": []byte("plain text"), "demo_secure": []byte("secure text"), "demo_nested_deep": []byte(`{"k":"deep"}`),
		})
		if d := calls(); d["GetParametersByPath"] < 1 {
			t.Errorf("calls %v, want GetParametersByPath", d)
		}
	})
}

// TestAWSAuthentication runs moto checking SigV4 signatures and IAM
// policies, so what Veil authenticates with is what AWS judges.
func TestAWSAuthentication(t *testing.T) {
	f := newAWSFixture(t)
	ctx := ctxFor(t)
	f.createSecret(t, "signed/db", "signed value", nil)
	reader, err := f.moto.CreateUser(ctx, "reader", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["secretsmanager:GetSecretValue"],"Resource":"*"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.moto.RequireSignatures(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("the right keys read", func(t *testing.T) {
		f.keysSecret(t, f.ns, "reader-keys", reader)
		createAWSStore(t, f.ns, "reader", f.spec(configv1alpha1.AWSServiceSecretsManager, "reader-keys"))
		createExternalSecret(t, f.ns, "signed", storeRef("reader"), nil, dataRef("value", "signed/db", ""))
		wantAWSData(t, awsRead(t, f.ns, "signed"), map[string][]byte{"value": []byte("signed value")})
	})

	t.Run("a wrong secret key is Forbidden", func(t *testing.T) {
		f.keysSecret(t, f.ns, "wrong-keys", harness.AccessKey{ID: reader.ID, Secret: "not-the-secret-key"})
		createAWSStore(t, f.ns, "wrong", f.spec(configv1alpha1.AWSServiceSecretsManager, "wrong-keys"))
		createExternalSecret(t, f.ns, "wrong", storeRef("wrong"), nil, dataRef("value", "signed/db", ""))
		err := awsReadFails(t, f.ns, "wrong", apierrors.IsForbidden)
		for _, says := range []string{"SecretStore " + f.ns + "/wrong", "AWS refused the access key in Secret " + f.ns + "/wrong-keys", `reading secret "signed/db"`, "HTTP 403"} {
			if !strings.Contains(err.Error(), says) {
				t.Errorf("%q does not say %q", err, says)
			}
		}
		if strings.Contains(err.Error(), "not-the-secret-key") {
			t.Error("the error carries the secret key")
		}
	})

	t.Run("a SecretStore may not use another namespace's keys", func(t *testing.T) {
		teamA, teamB := newNamespace(t, nil), newNamespace(t, nil)
		f.keysSecret(t, teamA, "keys", reader)
		spec := f.spec(configv1alpha1.AWSServiceSecretsManager, "keys")
		// The store reaches moto only through a proxy of its own, so
		// what it counts is this store's calls and no other store's
		// (the earlier subtests' stores are still polled for changes).
		endpoint, conns := countingProxy(t, f.moto.URL)
		spec.Endpoint, spec.STSEndpoint = endpoint, endpoint
		spec.Auth.SecretRef.AccessKeyID.Namespace = &teamA
		spec.Auth.SecretRef.SecretAccessKey.Namespace = &teamA
		createAWSStore(t, teamB, "borrowed", spec)
		createExternalSecret(t, teamB, "borrowed", storeRef("borrowed"), nil, dataRef("value", "signed/db", ""))
		err := awsReadFails(t, teamB, "borrowed", apierrors.IsForbidden)
		if !strings.Contains(err.Error(), `is in namespace "`+teamA+`", but a SecretStore may only use credentials of its own namespace`) {
			t.Errorf("message does not say why: %v", err)
		}
		if n := conns(); n != 0 {
			t.Errorf("%v connections to AWS opened for a store Veil refused", n)
		}
	})

	t.Run("a SecretStore must name its credentials", func(t *testing.T) {
		spec := f.spec(configv1alpha1.AWSServiceSecretsManager, "")
		spec.Auth = configv1alpha1.AWSAuth{}
		createAWSStore(t, f.ns, "own-identity", spec)
		createExternalSecret(t, f.ns, "own-identity", storeRef("own-identity"), nil, dataRef("value", "signed/db", ""))
		err := awsReadFails(t, f.ns, "own-identity", apierrors.IsForbidden)
		if !strings.Contains(err.Error(), "the apiserver's own AWS identity, and only a ClusterSecretStore may use it") {
			t.Errorf("message does not say why: %v", err)
		}
	})

	t.Run("an endpoint outside the allowlist is refused before connecting", func(t *testing.T) {
		spec := f.spec(configv1alpha1.AWSServiceSecretsManager, "reader-keys")
		spec.Endpoint = "http://10.255.0.1:4566"
		sts, conns := countingProxy(t, f.moto.URL)
		spec.STSEndpoint = sts
		createAWSStore(t, f.ns, "elsewhere", spec)
		createExternalSecret(t, f.ns, "elsewhere", storeRef("elsewhere"), nil, dataRef("value", "signed/db", ""))
		err := awsReadFails(t, f.ns, "elsewhere", apierrors.IsForbidden)
		if !strings.Contains(err.Error(), "--allowed-provider-endpoints") {
			t.Errorf("message does not name the allowlist: %v", err)
		}
		if n := conns(); n != 0 {
			t.Errorf("%v connections reached the store's STS endpoint although its endpoint was refused", n)
		}
	})
}

// TestAWSWebIdentity: Veil requests a token of the store's ServiceAccount
// and exchanges it for the role. moto accepts any token, so this checks
// Veil's side of the exchange.
func TestAWSWebIdentity(t *testing.T) {
	f := newAWSFixture(t)
	f.createSecret(t, "wi/db", "web identity value", nil)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: f.ns}}
	if _, err := cluster.KubeClient.CoreV1().ServiceAccounts(f.ns).Create(ctxFor(t), sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	spec := f.spec(configv1alpha1.AWSServiceSecretsManager, "")
	spec.Auth = configv1alpha1.AWSAuth{JWT: &configv1alpha1.AWSJWTAuth{ServiceAccountRef: configv1alpha1.ServiceAccountSelector{Name: "app"}}}
	spec.Role = "arn:aws:iam::123456789012:role/veil-reader"
	createAWSStore(t, f.ns, "web", spec)
	calls := awsCallsSince(t, "AssumeRoleWithWebIdentity")
	createExternalSecret(t, f.ns, "web", storeRef("web"), nil, dataRef("value", "wi/db", ""))
	wantAWSData(t, awsRead(t, f.ns, "web"), map[string][]byte{"value": []byte("web identity value")})
	if n := calls()["AssumeRoleWithWebIdentity"]; n != 1 {
		t.Errorf("%v AssumeRoleWithWebIdentity calls, want 1", n)
	}

	spec.Auth.JWT.ServiceAccountRef.Name = "nobody"
	createAWSStore(t, f.ns, "no-sa", spec)
	createExternalSecret(t, f.ns, "no-sa", storeRef("no-sa"), nil, dataRef("value", "wi/db", ""))
	err := awsReadFails(t, f.ns, "no-sa", apierrors.IsInvalid)
	if !strings.Contains(err.Error(), "ServiceAccount "+f.ns+"/nobody does not exist") {
		t.Errorf("message does not name the ServiceAccount: %v", err)
	}
}

// TestAWSCanary reads a value that exists only in moto through the
// aggregator, several ways, then searches etcd, every log and both audit
// logs for it.
func TestAWSCanary(t *testing.T) {
	f := newAWSFixture(t)
	canary := unique("veil-canary-aws-")
	f.createSecret(t, "canary/db", `{"password":"`+canary+`"}`, nil)
	f.putParameter(t, "/canary/token", canary, ssmtypes.ParameterTypeSecureString)
	createAWSStore(t, f.ns, "sm", f.spec(configv1alpha1.AWSServiceSecretsManager, "aws-keys"))
	createAWSStore(t, f.ns, "ps", f.spec(configv1alpha1.AWSServiceParameterStore, "aws-keys"))
	createExternalSecret(t, f.ns, "from-sm", storeRef("sm"), nil, dataRef("secret", "canary/db", "password"))
	createExternalSecret(t, f.ns, "from-ps", storeRef("ps"), nil, dataRef("secret", "/canary/token", ""))

	readCanary(t, f.ns, "from-sm", "secret", canary)
	readCanary(t, f.ns, "from-ps", "secret", canary)
	assertOnlyInProvider(t, canary)
}

// TestAWSOutage: with moto down, a read fails with 503 and says where it
// could not connect; once moto is back, the same store reads again.
func TestAWSOutage(t *testing.T) {
	f := newAWSFixture(t)
	createAWSStore(t, f.ns, "sm", f.spec(configv1alpha1.AWSServiceSecretsManager, "aws-keys"))
	f.createSecret(t, "before", "up", nil)
	createExternalSecret(t, f.ns, "before", storeRef("sm"), nil, dataRef("value", "before", ""))
	wantAWSData(t, awsRead(t, f.ns, "before"), map[string][]byte{"value": []byte("up")})

	f.moto.Stop()
	// A key never read before, so no cached value can stand in for it.
	createExternalSecret(t, f.ns, "during", storeRef("sm"), nil, dataRef("value", "during", ""))
	err := awsReadFails(t, f.ns, "during", apierrors.IsServiceUnavailable)
	for _, says := range []string{"SecretStore " + f.ns + "/sm", "could not reach AWS at " + f.moto.URL, `reading secret "during"`, "connection refused"} {
		if !strings.Contains(err.Error(), says) {
			t.Errorf("%q does not say %q", err, says)
		}
	}

	if err := f.moto.Restart(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	// moto keeps nothing across a restart.
	f.createSecret(t, "during", "back", nil)
	wantAWSData(t, awsRead(t, f.ns, "during"), map[string][]byte{"value": []byte("back")})
}
