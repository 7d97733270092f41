package aws

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/test/conformance/remotetest"
	"github.com/veil-dev/veil/test/harness"
)

// These tests run the provider against moto, a real AWS-compatible server.
// One moto serves the package; each test resets it.
var moto *harness.Moto

func TestMain(m *testing.M) {
	// The child process of TestConformanceRemote serves and exits here,
	// before any server starts.
	remotetest.ServeIfChild()
	// A fuzz run (hack/fuzz.sh) runs no test that needs the server.
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	metrics.Register()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	dir, err := os.MkdirTemp("", "veil-aws-test-")
	if err == nil {
		moto, err = harness.StartMoto(ctx, dir)
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting moto:", err)
		os.Exit(1)
	}
	code := m.Run()
	moto.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func resetMoto(t *testing.T) {
	t.Helper()
	if err := moto.AcceptAnyCredentials(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if err := moto.Reset(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
}

// fakeCredentials serves a store's Secret keys and ServiceAccount tokens
// from memory; pkg/credentials, which enforces namespaces, is tested with
// the real API server in test/e2e.
type fakeCredentials struct {
	secrets map[string]string // "name/key"

	mu        sync.Mutex
	tokens    int
	audiences []string
}

func (f *fakeCredentials) SecretKey(_ context.Context, sel configv1alpha1.SecretKeySelector) ([]byte, error) {
	v, ok := f.secrets[sel.Name+"/"+sel.Key]
	if !ok {
		return nil, providers.Errorf(providers.Invalid, "Secret %s has no key %q", sel.Name, sel.Key)
	}
	return []byte(v), nil
}

func (f *fakeCredentials) ConfigMapKey(context.Context, string, string, *string) ([]byte, error) {
	return nil, errors.New("not used")
}

func (f *fakeCredentials) ServiceAccountToken(_ context.Context, sel configv1alpha1.ServiceAccountSelector, _ int64) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens++
	f.audiences = sel.Audiences
	return fmt.Sprintf("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6dGVhbS1hOmFwcCJ9.sig%d", f.tokens), nil
}

func keysFor(k harness.AccessKey) *fakeCredentials {
	return &fakeCredentials{secrets: map[string]string{"aws/id": k.ID, "aws/secret": k.Secret}}
}

var setupKeys = harness.AccessKey{ID: harness.MotoAccessKeyID, Secret: harness.MotoSecretAccessKey}

func plainEnv() providers.Env {
	return providers.Env{DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext, AllowPlaintext: true}
}

// newClient builds a client of a SecretStore in team-a reading moto.
func newClient(t *testing.T, service configv1alpha1.AWSService, creds providers.Credentials, edit ...func(*configv1alpha1.AWSProvider)) providers.Client {
	t.Helper()
	spec := configv1alpha1.AWSProvider{Service: service, Region: moto.Region, Endpoint: moto.URL, STSEndpoint: moto.URL, Auth: keys}
	for _, e := range edit {
		e(&spec)
	}
	c, err := provider{}.NewClient(ctxFor(t), store(configv1alpha1.SecretStoreKind, spec), creds, plainEnv())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func secretsManager() *secretsmanager.Client {
	return secretsmanager.NewFromConfig(moto.Config(setupKeys.ID, setupKeys.Secret))
}

func parameterStore() *ssm.Client {
	return ssm.NewFromConfig(moto.Config(setupKeys.ID, setupKeys.Secret))
}

func createSecret(t *testing.T, name string, value any, tags map[string]string) string {
	t.Helper()
	in := &secretsmanager.CreateSecretInput{Name: aws.String(name)}
	switch v := value.(type) {
	case string:
		in.SecretString = aws.String(v)
	case []byte:
		in.SecretBinary = v
	}
	for _, k := range sortedKeys(tags) {
		in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	out, err := secretsManager().CreateSecret(ctxFor(t), in)
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.VersionId)
}

func putParameter(t *testing.T, name, value string, typ ssmtypes.ParameterType, tags map[string]string) {
	t.Helper()
	in := &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(value), Type: typ}
	for _, k := range sortedKeys(tags) {
		in.Tags = append(in.Tags, ssmtypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	if _, err := parameterStore().PutParameter(ctxFor(t), in); err != nil {
		t.Fatal(err)
	}
}

// calls is how many calls of an AWS operation the provider has recorded.
func calls(t *testing.T, op string) float64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "veil_provider_calls_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["provider"] == "aws" && labels["operation"] == op {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// counter reports how many calls of each operation happened since it was made.
func counter(t *testing.T, ops ...string) func() map[string]float64 {
	before := map[string]float64{}
	for _, op := range ops {
		before[op] = calls(t, op)
	}
	return func() map[string]float64 {
		d := map[string]float64{}
		for _, op := range ops {
			d[op] = calls(t, op) - before[op]
		}
		return d
	}
}

func wantReason(t *testing.T, err error, reason providers.Reason, says ...string) {
	t.Helper()
	var pe *providers.Error
	if !errors.As(err, &pe) || pe.Reason != reason {
		t.Fatalf("got %v, want a %s provider error", err, reason)
	}
	t.Logf("%s: %v", reason, err)
	for _, s := range says {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q does not say %q", err, s)
		}
	}
}

func TestSecretsManagerGet(t *testing.T) {
	resetMoto(t)
	c := newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(setupKeys))
	ctx := ctxFor(t)

	v1 := createSecret(t, "app/db", `{"user":"app","password":"one"}`, nil)
	binary := []byte{0, 1, 2, 0xff, 0xfe}
	createSecret(t, "app/cert", binary, nil)
	put, err := secretsManager().PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("app/db"), SecretString: aws.String(`{"user":"app","password":"two"}`)})
	if err != nil {
		t.Fatal(err)
	}
	v2 := aws.ToString(put.VersionId)

	count := counter(t, "GetSecretValue")
	for _, tc := range []struct {
		ref           providers.Ref
		data, version string
	}{
		{providers.Ref{Key: "app/db"}, `{"user":"app","password":"two"}`, v2},
		{providers.Ref{Key: "app/db", Version: "AWSCURRENT"}, `{"user":"app","password":"two"}`, v2},
		{providers.Ref{Key: "app/db", Version: "AWSPREVIOUS"}, `{"user":"app","password":"one"}`, v1},
		{providers.Ref{Key: "app/db", Version: v1}, `{"user":"app","password":"one"}`, v1},
		{providers.Ref{Key: "app/db", Version: "uuid/" + v2}, `{"user":"app","password":"two"}`, v2},
		{providers.Ref{Key: "app/cert"}, string(binary), ""},
	} {
		got, err := c.Get(ctx, tc.ref)
		if err != nil {
			t.Fatalf("%+v: %v", tc.ref, err)
		}
		if string(got.Data) != tc.data {
			t.Errorf("%+v: got other data than %q", tc.ref, tc.data)
		}
		if tc.version != "" && got.Version != tc.version {
			t.Errorf("%+v: version %q, want %q", tc.ref, got.Version, tc.version)
		}
	}
	if n := count()["GetSecretValue"]; n != 6 {
		t.Errorf("%v GetSecretValue calls recorded, want 6", n)
	}

	_, err = c.Get(ctx, providers.Ref{Key: "app/missing"})
	wantReason(t, err, providers.NotFound, `secret "app/missing"`, "SecretStore team-a/aws")
	_, err = c.Get(ctx, providers.Ref{Key: "app/db", Version: "11111111-2222-3333-4444-555555555555"})
	wantReason(t, err, providers.NotFound, `version "11111111-2222-3333-4444-555555555555" of secret "app/db"`)

	// Deleted with a recovery window, a secret is still there but cannot be
	// read: to a reader it does not exist.
	createSecret(t, "app/deleted", `{"k":"v"}`, nil)
	if _, err := secretsManager().DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: aws.String("app/deleted"), RecoveryWindowInDays: aws.Int64(7)}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(ctx, providers.Ref{Key: "app/deleted"})
	wantReason(t, err, providers.NotFound, `secret "app/deleted"`, "scheduled for deletion")

	prefixed := newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(setupKeys), func(s *configv1alpha1.AWSProvider) { s.Prefix = "app/" })
	if got, err := prefixed.Get(ctx, providers.Ref{Key: "db"}); err != nil || !strings.Contains(string(got.Data), "two") {
		t.Errorf("with prefix app/, key db: %v", err)
	}
}

func TestSecretsManagerFind(t *testing.T) {
	resetMoto(t)
	c := newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(setupKeys))
	ctx := ctxFor(t)
	// More than a page of ListSecrets (100) and many BatchGetSecretValue
	// batches (20).
	for i := range 110 {
		createSecret(t, fmt.Sprintf("bulk/s%03d", i), fmt.Sprintf("value-%d", i), map[string]string{"team": "bulk"})
	}
	createSecret(t, "tagged/prod", "p", map[string]string{"env": "prod", "team": "a"})
	createSecret(t, "tagged/production", "pn", map[string]string{"env": "production", "team": "a"})
	createSecret(t, "tagged/prod-b", "pb", map[string]string{"env": "prod", "team": "b"})
	createSecret(t, "other/prod", "x", map[string]string{"env": "prod"})

	count := counter(t, "ListSecrets", "BatchGetSecretValue", "GetSecretValue")
	got, err := c.Find(ctx, providers.Find{Path: "bulk/", NameRegexp: `s0[0-9][0-9]$`})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 || string(got["bulk/s042"].Data) != "value-42" || got["bulk/s042"].Version == "" {
		t.Errorf("found %d secrets (bulk/s042: %q), want 100 with their versions", len(got), got["bulk/s042"].Data)
	}
	d := count()
	if d["BatchGetSecretValue"] != 5 || d["GetSecretValue"] != 0 || d["ListSecrets"] != 2 {
		t.Errorf("calls %v, want 2 ListSecrets pages, 5 BatchGetSecretValue batches and no GetSecretValue", d)
	}

	got, err = c.Find(ctx, providers.Find{Tags: map[string]string{"env": "prod", "team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if keys := sortedKeysOf(got); strings.Join(keys, ",") != "tagged/prod" {
		t.Errorf("tags env=prod,team=a found %v, want exactly tagged/prod", keys)
	}
	got, err = c.Find(ctx, providers.Find{NameRegexp: `prod$`, Tags: map[string]string{"env": "prod"}})
	if err != nil {
		t.Fatal(err)
	}
	if keys := sortedKeysOf(got); strings.Join(keys, ",") != "other/prod,tagged/prod" {
		t.Errorf("regexp prod$ and env=prod found %v", keys)
	}

	prefixed := newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(setupKeys), func(s *configv1alpha1.AWSProvider) { s.Prefix = "tagged/" })
	got, err = prefixed.Find(ctx, providers.Find{NameRegexp: "^prod"})
	if err != nil {
		t.Fatal(err)
	}
	if keys := sortedKeysOf(got); strings.Join(keys, ",") != "prod,prod-b,production" {
		t.Errorf("with prefix tagged/, found %v, want keys relative to the prefix", keys)
	}

	_, err = c.Find(ctx, providers.Find{NameRegexp: "("})
	wantReason(t, err, providers.Invalid, "not a valid regular expression")

	// A find is bounded in what it returns and in what it lists, like
	// Vault's (the bounds are lowered here from 500 and 5,000).
	defer func(r, l int) { maxFindResults, maxFindListed = r, l }(maxFindResults, maxFindListed)
	maxFindResults, maxFindListed = 50, 1000
	_, err = c.Find(ctx, providers.Find{Path: "bulk/"})
	wantReason(t, err, providers.Invalid, "matches more than 50 secrets", "narrow find.path")
	maxFindResults, maxFindListed = 500, 100
	_, err = c.Find(ctx, providers.Find{NameRegexp: "^nothing-matches"})
	wantReason(t, err, providers.Invalid, "would list more than 100 secrets")
}

func sortedKeysOf(m map[string]providers.Value) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestParameterStore(t *testing.T) {
	resetMoto(t)
	c := newClient(t, configv1alpha1.AWSServiceParameterStore, keysFor(setupKeys))
	ctx := ctxFor(t)
	putParameter(t, "/app/plain", "hello", ssmtypes.ParameterTypeString, nil)
	putParameter(t, "/app/secure", "s3cret", ssmtypes.ParameterTypeSecureString, map[string]string{"env": "prod"})
	putParameter(t, "/app/list", "a,b,c", ssmtypes.ParameterTypeStringList, map[string]string{"env": "production"})
	if _, err := parameterStore().PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("/app/plain"), Value: aws.String("hello again"), Overwrite: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		ref           providers.Ref
		data, version string
	}{
		{providers.Ref{Key: "/app/plain"}, "hello again", "2"},
		{providers.Ref{Key: "/app/plain", Version: "1"}, "hello", "1"},
		{providers.Ref{Key: "/app/secure"}, "s3cret", "1"},
		{providers.Ref{Key: "/app/list"}, "a,b,c", "1"},
	} {
		got, err := c.Get(ctx, tc.ref)
		if err != nil {
			t.Fatalf("%+v: %v", tc.ref, err)
		}
		if string(got.Data) != tc.data || got.Version != tc.version {
			t.Errorf("%+v: got version %q, want %q and %q", tc.ref, got.Version, tc.data, tc.version)
		}
	}
	_, err := c.Get(ctx, providers.Ref{Key: "/app/missing"})
	wantReason(t, err, providers.NotFound, `parameter "/app/missing"`)
	_, err = c.Get(ctx, providers.Ref{Key: "/app/plain", Version: "9"})
	wantReason(t, err, providers.NotFound, `version "9" of parameter "/app/plain"`)

	t.Run("batches", func(t *testing.T) {
		var refs []providers.Ref
		for i := range 23 {
			name := fmt.Sprintf("/batch/p%02d", i)
			putParameter(t, name, fmt.Sprintf("v%d", i), ssmtypes.ParameterTypeSecureString, nil)
			refs = append(refs, providers.Ref{Key: name})
		}
		refs = append(refs, providers.Ref{Key: "/batch/missing"}, providers.Ref{Key: "/app/plain", Version: "1"})
		count := counter(t, "GetParameters", "GetParameter")
		got, err := c.(providers.BatchGetter).GetBatch(ctx, refs)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 24 || string(got[providers.Ref{Key: "/batch/p17"}].Data) != "v17" || string(got[providers.Ref{Key: "/app/plain", Version: "1"}].Data) != "hello" {
			t.Errorf("got %d values, want 24 with the right ones", len(got))
		}
		if _, ok := got[providers.Ref{Key: "/batch/missing"}]; ok {
			t.Error("a missing parameter has a value")
		}
		if d := count(); d["GetParameters"] != 3 || d["GetParameter"] != 1 {
			t.Errorf("calls %v, want 3 GetParameters batches of at most 10 and 1 GetParameter for the version", d)
		}
	})

	t.Run("find", func(t *testing.T) {
		for i := range 25 {
			putParameter(t, fmt.Sprintf("/tree/a/%02d", i), "x", ssmtypes.ParameterTypeString, nil)
		}
		putParameter(t, "/tree/b/deep/one", "deep", ssmtypes.ParameterTypeSecureString, nil)
		putParameter(t, "/treetop", "not under /tree", ssmtypes.ParameterTypeString, nil)
		count := counter(t, "GetParametersByPath", "DescribeParameters")
		got, err := c.Find(ctx, providers.Find{Path: "/tree"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 26 || string(got["/tree/b/deep/one"].Data) != "deep" {
			t.Errorf("found %d under /tree, want 26 recursively, decrypted", len(got))
		}
		if d := count(); d["GetParametersByPath"] != 3 || d["DescribeParameters"] != 0 {
			t.Errorf("calls %v, want 3 GetParametersByPath pages", d)
		}
		got, err = c.Find(ctx, providers.Find{Path: "/tree", NameRegexp: "deep"})
		if err != nil || len(got) != 1 {
			t.Errorf("regexp deep under /tree: %v, %v", sortedKeysOf(got), err)
		}
		got, err = c.Find(ctx, providers.Find{Tags: map[string]string{"env": "prod"}})
		if err != nil {
			t.Fatal(err)
		}
		if keys := sortedKeysOf(got); strings.Join(keys, ",") != "/app/secure" || string(got["/app/secure"].Data) != "s3cret" {
			t.Errorf("tag env=prod found %v", keys)
		}
		prefixed := newClient(t, configv1alpha1.AWSServiceParameterStore, keysFor(setupKeys), func(s *configv1alpha1.AWSProvider) { s.Prefix = "/tree" })
		got, err = prefixed.Find(ctx, providers.Find{Path: "/b"})
		if err != nil {
			t.Fatal(err)
		}
		if keys := sortedKeysOf(got); strings.Join(keys, ",") != "/b/deep/one" {
			t.Errorf("prefix /tree, path /b found %v", keys)
		}

		// Bounded in results and in listing, on both paths (by path, and
		// through DescribeParameters); the bounds are lowered here.
		defer func(r, l int) { maxFindResults, maxFindListed = r, l }(maxFindResults, maxFindListed)
		maxFindResults, maxFindListed = 10, 1000
		_, err = c.Find(ctx, providers.Find{Path: "/tree"})
		wantReason(t, err, providers.Invalid, "matches more than 10 parameters")
		_, err = c.Find(ctx, providers.Find{Path: "tree"})
		wantReason(t, err, providers.Invalid, "matches more than 10 parameters")
		maxFindResults, maxFindListed = 500, 20
		_, err = c.Find(ctx, providers.Find{Path: "/tree", NameRegexp: "^none$"})
		wantReason(t, err, providers.Invalid, "would read more than 20 parameters")
		_, err = c.Find(ctx, providers.Find{Path: "/tree/a", Tags: map[string]string{"none": "x"}, NameRegexp: "x"})
		if err != nil {
			t.Errorf("a find whose listing is within the bound: %v", err)
		}
	})
}

func TestPushAndDelete(t *testing.T) {
	for _, service := range []configv1alpha1.AWSService{configv1alpha1.AWSServiceSecretsManager, configv1alpha1.AWSServiceParameterStore} {
		t.Run(string(service), func(t *testing.T) {
			resetMoto(t)
			ctx := ctxFor(t)
			c := newClient(t, service, keysFor(setupKeys), func(s *configv1alpha1.AWSProvider) {
				s.SecretsManager = &configv1alpha1.AWSSecretsManager{ForceDeleteWithoutRecovery: true}
			})
			key := "/pushed/db"
			push := func(p providers.Push, want string) {
				t.Helper()
				p.Owner = owner
				got, err := c.Push(ctx, p)
				if err != nil || got != want {
					t.Fatalf("push %s/%s: %v %v, want %s", p.Key, p.Property, got, err, want)
				}
			}
			read := func(k string) string {
				t.Helper()
				v, err := c.Get(ctx, providers.Ref{Key: k})
				if err != nil {
					t.Fatal(err)
				}
				return string(v.Data)
			}

			push(providers.Push{Key: key, Value: []byte("one")}, esv1alpha1.SecretPushResultPushed)
			push(providers.Push{Key: key, Value: []byte("one")}, esv1alpha1.SecretPushResultUnchanged)
			push(providers.Push{Key: key, Value: []byte("two"), IfNotExists: true}, esv1alpha1.SecretPushResultSkippedExists)
			push(providers.Push{Key: key, Value: []byte("two")}, esv1alpha1.SecretPushResultPushed)
			if got := read(key); got != "two" {
				t.Errorf("after pushes: %q", got)
			}

			push(providers.Push{Key: "/pushed/json", Property: "user", Value: []byte("app")}, esv1alpha1.SecretPushResultPushed)
			push(providers.Push{Key: "/pushed/json", Property: "password", Value: []byte("pw")}, esv1alpha1.SecretPushResultPushed)
			push(providers.Push{Key: "/pushed/json", Property: "user", Value: []byte("app")}, esv1alpha1.SecretPushResultUnchanged)
			push(providers.Push{Key: "/pushed/json", Property: "user", Value: []byte("other"), IfNotExists: true}, esv1alpha1.SecretPushResultSkippedExists)
			if got := read("/pushed/json"); got != `{"password":"pw","user":"app"}` {
				t.Errorf("properties: %q", got)
			}
			if err := c.Delete(ctx, providers.Delete{Key: "/pushed/json", Property: "user", Owner: owner}); err != nil {
				t.Fatal(err)
			}
			if got := read("/pushed/json"); got != `{"password":"pw"}` {
				t.Errorf("after deleting a property: %q", got)
			}
			if err := c.Delete(ctx, providers.Delete{Key: "/pushed/json", Property: "password", Owner: owner}); err != nil {
				t.Fatal(err)
			}
			_, err := c.Get(ctx, providers.Ref{Key: "/pushed/json"})
			wantReason(t, err, providers.NotFound)

			// Something Veil did not create.
			if service == configv1alpha1.AWSServiceSecretsManager {
				createSecret(t, "/theirs", "theirs", map[string]string{"managed-by": "external-secrets"})
			} else {
				putParameter(t, "/theirs", "theirs", ssmtypes.ParameterTypeSecureString, nil)
			}
			_, err = c.Push(ctx, providers.Push{Key: "/theirs", Value: []byte("ours"), Owner: owner})
			wantReason(t, err, providers.Conflict, "was not created by Veil", "updatePolicy to Replace")
			err = c.Delete(ctx, providers.Delete{Key: "/theirs", Owner: owner})
			wantReason(t, err, providers.NotOwner, "will not delete it")
			push(providers.Push{Key: "/theirs", Value: []byte("ours"), Replace: true}, esv1alpha1.SecretPushResultPushed)
			if got := read("/theirs"); got != "ours" {
				t.Errorf("after Replace: %q", got)
			}

			if err := c.Delete(ctx, providers.Delete{Key: key, Owner: owner}); err != nil {
				t.Fatal(err)
			}
			_, err = c.Get(ctx, providers.Ref{Key: key})
			wantReason(t, err, providers.NotFound)
			if err := c.Delete(ctx, providers.Delete{Key: key, Owner: owner}); err != nil {
				t.Errorf("deleting what is gone: %v", err)
			}

			binary := []byte{0xff, 0x00, 0xfe}
			if service == configv1alpha1.AWSServiceSecretsManager {
				push(providers.Push{Key: "/binary", Value: binary}, esv1alpha1.SecretPushResultPushed)
				if got := read("/binary"); got != string(binary) {
					t.Error("binary value changed on the way")
				}
			} else {
				_, err := c.Push(ctx, providers.Push{Key: "/binary", Value: binary, Owner: owner})
				wantReason(t, err, providers.Invalid, "holds text only")
			}
		})
	}
}

var owner = providers.Owner{Namespace: "team-a", Name: "push", UID: "uid-a"}

// TestOwnership: a key is its PushSecret's. Another PushSecret neither
// overwrites nor deletes it, whatever its policy; ownership is decided from
// tags before any value is compared, so a right and a wrong guess at a
// value get the same answer, and nothing is written.
func TestOwnership(t *testing.T) {
	for _, service := range []configv1alpha1.AWSService{configv1alpha1.AWSServiceSecretsManager, configv1alpha1.AWSServiceParameterStore} {
		t.Run(string(service), func(t *testing.T) {
			resetMoto(t)
			ctx := ctxFor(t)
			c := newClient(t, service, keysFor(setupKeys), func(s *configv1alpha1.AWSProvider) {
				s.SecretsManager = &configv1alpha1.AWSSecretsManager{ForceDeleteWithoutRecovery: true}
			})
			other := providers.Owner{Namespace: "team-b", Name: "push", UID: "uid-b"}
			writes := counter(t, "CreateSecret", "PutSecretValue", "TagResource", "DeleteSecret", "PutParameter", "AddTagsToResource", "DeleteParameter")
			noWrites := func(what string) {
				t.Helper()
				for op, n := range writes() {
					if n != 0 {
						t.Errorf("%s: %v %s calls, want no write", what, n, op)
					}
				}
				writes = counter(t, "CreateSecret", "PutSecretValue", "TagResource", "DeleteSecret", "PutParameter", "AddTagsToResource", "DeleteParameter")
			}
			read := func(k string) string {
				t.Helper()
				v, err := c.Get(ctx, providers.Ref{Key: k})
				if err != nil {
					t.Fatal(err)
				}
				return string(v.Data)
			}
			if _, err := c.Push(ctx, providers.Push{Key: "/owned", Value: []byte("owned-canary"), Owner: owner}); err != nil {
				t.Fatal(err)
			}
			writes = counter(t, "CreateSecret", "PutSecretValue", "TagResource", "DeleteSecret", "PutParameter", "AddTagsToResource", "DeleteParameter")
			for _, p := range []providers.Push{
				{Key: "/owned", Value: []byte("owned-canary")}, // a right guess
				{Key: "/owned", Value: []byte("wrong-guess")},
				{Key: "/owned", Value: []byte("owned-canary"), Replace: true},
			} {
				p.Owner = other
				_, err := c.Push(ctx, p)
				wantReason(t, err, providers.NotOwner, "belongs to another PushSecret")
				if strings.Contains(err.Error(), "canary") || strings.Contains(err.Error(), "guess") {
					t.Errorf("the error carries a value: %v", err)
				}
			}
			wantReason(t, c.Delete(ctx, providers.Delete{Key: "/owned", Owner: other}), providers.NotOwner, "belongs to another PushSecret")
			if got, err := c.Push(ctx, providers.Push{Key: "/owned", Value: []byte("x"), IfNotExists: true, Owner: other}); err != nil || got != esv1alpha1.SecretPushResultSkippedExists {
				t.Errorf("IfNotExists over another's key: %s, %v", got, err)
			}
			noWrites("another PushSecret")
			if got := read("/owned"); got != "owned-canary" {
				t.Errorf("value after others' pushes: %q", got)
			}

			// Keys without an owner, Veil's old mark or none: a right and a
			// wrong guess get the same Conflict, and no write.
			for _, key := range []string{"/legacy", "/unmanaged"} {
				tags := map[string]string{}
				if key == "/legacy" {
					tags[ManagedByTagKey] = ManagedByTagValue
				}
				if service == configv1alpha1.AWSServiceSecretsManager {
					createSecret(t, key, "theirs-canary", tags)
				} else {
					putParameter(t, key, "theirs-canary", ssmtypes.ParameterTypeSecureString, tags)
				}
				writes = counter(t, "CreateSecret", "PutSecretValue", "TagResource", "DeleteSecret", "PutParameter", "AddTagsToResource", "DeleteParameter")
				var msgs []string
				for _, guess := range []string{"theirs-canary", "wrong"} {
					_, err := c.Push(ctx, providers.Push{Key: key, Value: []byte(guess), Owner: other})
					wantReason(t, err, providers.Conflict, "updatePolicy to Replace")
					msgs = append(msgs, err.Error())
				}
				if msgs[0] != msgs[1] {
					t.Errorf("%s: the answer depends on the guess: %q", key, msgs)
				}
				wantReason(t, c.Delete(ctx, providers.Delete{Key: key, Owner: other}), providers.NotOwner, "not created by Veil for a PushSecret")
				noWrites(key)
				// Replace takes it over and records the owner; then it is
				// other's, and the first owner's Replace does not take it.
				if got, err := c.Push(ctx, providers.Push{Key: key, Value: []byte("theirs-canary"), Replace: true, Owner: other}); err != nil || got != esv1alpha1.SecretPushResultUnchanged {
					t.Errorf("%s: Replace with the same value: %s, %v", key, got, err)
				}
				_, err := c.Push(ctx, providers.Push{Key: key, Value: []byte("x"), Replace: true, Owner: owner})
				wantReason(t, err, providers.NotOwner, "belongs to another PushSecret")
				if err := c.Delete(ctx, providers.Delete{Key: key, Owner: other}); err != nil {
					t.Errorf("%s: delete by its new owner: %v", key, err)
				}
			}
			if err := c.Delete(ctx, providers.Delete{Key: "/owned", Owner: owner}); err != nil {
				t.Errorf("delete by the owner: %v", err)
			}
		})
	}
}

// A delete with a recovery window leaves the secret recoverable.
func TestDeleteRecoveryWindow(t *testing.T) {
	resetMoto(t)
	ctx := ctxFor(t)
	c := newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(setupKeys), func(s *configv1alpha1.AWSProvider) {
		s.SecretsManager = &configv1alpha1.AWSSecretsManager{RecoveryWindowInDays: 7}
	})
	if _, err := c.Push(ctx, providers.Push{Key: "kept", Value: []byte("v"), Owner: owner}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, providers.Delete{Key: "kept", Owner: owner}); err != nil {
		t.Fatal(err)
	}
	desc, err := secretsManager().DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("kept")})
	if err != nil || desc.DeletedDate == nil {
		t.Fatalf("the secret is not scheduled for deletion: %v", err)
	}
	_, err = c.Push(ctx, providers.Push{Key: "kept", Value: []byte("again"), Owner: owner})
	wantReason(t, err, providers.Conflict, "scheduled for deletion")
}

// With moto checking signatures and IAM policies, the keys and the role a
// store names are what AWS sees.
func TestSignedAccess(t *testing.T) {
	resetMoto(t)
	ctx := ctxFor(t)
	createSecret(t, "signed/db", "value", nil)
	reader, err := moto.CreateUser(ctx, "reader", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["secretsmanager:GetSecretValue"],"Resource":"*"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	assumer, err := moto.CreateUser(ctx, "assumer", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession"],"Resource":"*"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/assumer"},"Action":["sts:AssumeRole","sts:TagSession"],"Condition":{"StringEquals":{"sts:ExternalId":"veil-team-a"}}}]}`
	role, err := moto.CreateRole(ctx, "secrets-reader", trust, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["secretsmanager:GetSecretValue"],"Resource":"*"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := moto.RequireSignatures(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = moto.AcceptAnyCredentials(context.Background()) })
	ref := providers.Ref{Key: "signed/db"}

	if _, err := newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(reader)).Get(ctx, ref); err != nil {
		t.Errorf("with the reader's keys: %v", err)
	}

	wrong := keysFor(harness.AccessKey{ID: reader.ID, Secret: "not-the-secret-key"})
	_, err = newClient(t, configv1alpha1.AWSServiceSecretsManager, wrong).Get(ctx, ref)
	wantReason(t, err, providers.Forbidden, "SecretStore team-a/aws", "AWS refused the access key in Secret team-a/aws", `reading secret "signed/db"`, "HTTP 403")
	if strings.Contains(err.Error(), "not-the-secret-key") {
		t.Error("the error carries the secret key")
	}

	_, err = newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(assumer)).Get(ctx, ref)
	wantReason(t, err, providers.Forbidden, "not allowed to GetSecretValue")

	count := counter(t, "AssumeRole", "GetSecretValue")
	viaRole := newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(assumer), func(s *configv1alpha1.AWSProvider) {
		s.Role, s.ExternalID = role, "veil-team-a"
		s.SessionTags = []configv1alpha1.AWSTag{{Key: "team", Value: "a"}}
	})
	for range 3 {
		if _, err := viaRole.Get(ctx, ref); err != nil {
			t.Fatalf("through the role: %v", err)
		}
	}
	if d := count(); d["AssumeRole"] != 1 || d["GetSecretValue"] != 3 {
		t.Errorf("calls %v: the role's credentials must be reused, one AssumeRole for 3 reads", d)
	}

	_, err = newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(assumer), func(s *configv1alpha1.AWSProvider) {
		s.Role, s.ExternalID = role, "another-tenant"
	}).Get(ctx, ref)
	wantReason(t, err, providers.Forbidden, "role "+role+" assumed with the access key", "STS refused AssumeRole")
}

func TestWebIdentity(t *testing.T) {
	resetMoto(t)
	ctx := ctxFor(t)
	createSecret(t, "wi/db", "value", nil)
	creds := &fakeCredentials{}
	count := counter(t, "AssumeRoleWithWebIdentity")
	c := newClient(t, configv1alpha1.AWSServiceSecretsManager, creds, func(s *configv1alpha1.AWSProvider) {
		s.Auth = configv1alpha1.AWSAuth{JWT: &configv1alpha1.AWSJWTAuth{ServiceAccountRef: configv1alpha1.ServiceAccountSelector{Name: "app"}}}
		s.Role = "arn:aws:iam::123456789012:role/web"
	})
	if creds.tokens != 1 || len(creds.audiences) != 1 || creds.audiences[0] != STSAudience {
		t.Errorf("NewClient requested %d tokens for audiences %v, want 1 for %s", creds.tokens, creds.audiences, STSAudience)
	}
	for range 3 {
		if v, err := c.Get(ctx, providers.Ref{Key: "wi/db"}); err != nil || string(v.Data) != "value" {
			t.Fatalf("through web identity: %v", err)
		}
	}
	if d := count(); d["AssumeRoleWithWebIdentity"] != 1 || creds.tokens != 1 {
		t.Errorf("%v exchanges and %d tokens for 3 reads, want the prefetched token exchanged once", d, creds.tokens)
	}
}

func TestConnections(t *testing.T) {
	resetMoto(t)
	ctx := ctxFor(t)
	spec := configv1alpha1.AWSProvider{Service: configv1alpha1.AWSServiceParameterStore, Region: moto.Region, Endpoint: moto.URL, Auth: keys}

	t.Run("every connection goes through the allowlist", func(t *testing.T) {
		list, err := allowlist.Parse([]string{"10.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		env := plainEnv()
		env.DialContext = list.Dialer(allowlist.Namespaced, env.DialContext)
		c, err := provider{}.NewClient(ctx, store(configv1alpha1.SecretStoreKind, spec), keysFor(setupKeys), env)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Get(ctx, providers.Ref{Key: "/x"})
		wantReason(t, err, providers.Forbidden, "--allowed-provider-endpoints")
	})

	t.Run("plaintext needs to be allowed", func(t *testing.T) {
		env := plainEnv()
		env.AllowPlaintext = false
		_, err := provider{}.NewClient(ctx, store(configv1alpha1.SecretStoreKind, spec), keysFor(setupKeys), env)
		wantReason(t, err, providers.Forbidden, "plaintext")
	})

	t.Run("an endpoint that does not answer", func(t *testing.T) {
		port, err := harness.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		down := spec
		down.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
		c, err := provider{}.NewClient(ctx, store(configv1alpha1.SecretStoreKind, down), keysFor(setupKeys), plainEnv())
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Get(ctx, providers.Ref{Key: "/x"})
		wantReason(t, err, providers.Unavailable, "could not reach AWS at "+down.Endpoint, "connection refused")
	})
}

// A ClusterSecretStore without auth uses veil-apiserver's own identity:
// here, keys in its environment, which moto checks.
func TestOwnIdentity(t *testing.T) {
	resetMoto(t)
	ctx := ctxFor(t)
	putParameter(t, "/own/p", "v", ssmtypes.ParameterTypeString, nil)
	own, err := moto.CreateUser(ctx, "apiserver", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:GetParameter"],"Resource":"*"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := moto.RequireSignatures(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = moto.AcceptAnyCredentials(context.Background()) })
	empty := t.TempDir() + "/none"
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("AWS_ACCESS_KEY_ID", own.ID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", own.Secret)

	spec := configv1alpha1.AWSProvider{Service: configv1alpha1.AWSServiceParameterStore, Region: moto.Region, Endpoint: moto.URL}
	c, err := provider{}.NewClient(ctx, store(configv1alpha1.ClusterSecretStoreKind, spec), &fakeCredentials{}, plainEnv())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if v, err := c.Get(ctx, providers.Ref{Key: "/own/p"}); err != nil || string(v.Data) != "v" {
		t.Fatalf("with the apiserver's own keys: %v", err)
	}

	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	c, err = provider{}.NewClient(ctx, store(configv1alpha1.ClusterSecretStoreKind, spec), &fakeCredentials{}, plainEnv())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	_, err = c.Get(ctx, providers.Ref{Key: "/own/p"})
	wantReason(t, err, providers.Forbidden, "AWS refused veil-apiserver's own AWS identity")
}

// TestRoleChain reads through a two-hop chain on moto with signatures
// required: only the last role may read the secret and neither the keys'
// user nor the first role may, so a successful read is the final role's.
func TestRoleChain(t *testing.T) {
	resetMoto(t)
	ctx := ctxFor(t)
	createSecret(t, "chain/db", "chained-value", nil)
	const assume = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession"],"Resource":"*"}]}`
	const read = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["secretsmanager:GetSecretValue"],"Resource":"*"}]}`
	trusting := func(principal string) string {
		return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + principal + `"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`
	}
	user, err := moto.CreateUser(ctx, "chainer", assume)
	if err != nil {
		t.Fatal(err)
	}
	first, err := moto.CreateRole(ctx, "chain-first", trusting("arn:aws:iam::123456789012:user/chainer"), assume)
	if err != nil {
		t.Fatal(err)
	}
	// The last role trusts the session of the first that Veil opens (moto
	// matches a trust policy's principal literally; AWS also accepts the
	// role's ARN for its sessions): the hop must be made with the first
	// role's credentials, in a session named after the store.
	last, err := moto.CreateRole(ctx, "chain-last", trusting("arn:aws:sts::123456789012:assumed-role/chain-first/veil.team-a.aws"), read)
	if err != nil {
		t.Fatal(err)
	}
	if err := moto.RequireSignatures(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = moto.AcceptAnyCredentials(context.Background()) })
	ref := providers.Ref{Key: "chain/db"}

	// The first role alone may not read: a read that succeeds below is
	// made with the last role's credentials.
	_, err = newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(user), func(s *configv1alpha1.AWSProvider) {
		s.Role = first
	}).Get(ctx, ref)
	wantReason(t, err, providers.Forbidden, "not allowed to GetSecretValue")

	count := counter(t, "AssumeRole", "GetSecretValue")
	chained := newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(user), func(s *configv1alpha1.AWSProvider) {
		s.AdditionalRoles = []string{first}
		s.Role, s.ExternalID = last, "veil-team-a"
		s.SessionTags = []configv1alpha1.AWSTag{{Key: "team", Value: "a"}}
		s.TransitiveTagKeys = []string{"team"}
	})
	for range 3 {
		v, err := chained.Get(ctx, ref)
		if err != nil {
			t.Fatalf("through the chain: %v", err)
		}
		if string(v.Data) != "chained-value" {
			t.Fatalf("read %q", v.Data)
		}
	}
	if d := count(); d["AssumeRole"] != 2 || d["GetSecretValue"] != 3 {
		t.Errorf("calls %v: want two AssumeRole (one per hop) for 3 reads, the chain's credentials reused", d)
	}
}
