package vault

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/credentials"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/test/harness"
)

// TestSignV4MatchesSDK: Veil's own SigV4 (the Vault provider links no AWS
// SDK) signs exactly as the AWS SDK's signer does, with and without a
// session token and the Vault server id header.
func TestSignV4MatchesSDK(t *testing.T) {
	now := time.Date(2026, 12, 3, 6, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		creds    awsCreds
		serverID string
		url      string
		region   string
	}{
		{name: "static keys, global endpoint", creds: awsCreds{id: "AKIDEXAMPLE", secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}, url: "https://sts.amazonaws.com/", region: "us-east-1"},
		{name: "session token and server id", creds: awsCreds{id: "ASIAEXAMPLE", secret: "secret", session: "session/token+=="}, serverID: "vault.example.com", url: "https://sts.eu-west-1.amazonaws.com/", region: "eu-west-1"},
		{name: "endpoint with a port", creds: awsCreds{id: "AKID", secret: "s"}, url: "http://127.0.0.1:5000/", region: "us-east-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk := func() *http.Request {
				req, err := http.NewRequest(http.MethodPost, tc.url, strings.NewReader(getCallerIdentity))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", formContentType)
				if tc.serverID != "" {
					req.Header.Set(iamServerIDHeader, tc.serverID)
				}
				return req
			}
			ours := mk()
			signV4(ours, []byte(getCallerIdentity), tc.creds, tc.region, "sts", now)
			theirs := mk()
			// Veil leaves Content-Length unsigned: Vault rebuilds the
			// request from the headers it is given, which carry none.
			theirs.ContentLength = 0
			sum := sha256.Sum256([]byte(getCallerIdentity))
			if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: tc.creds.id, SecretAccessKey: tc.creds.secret, SessionToken: tc.creds.session},
				theirs, hex.EncodeToString(sum[:]), "sts", tc.region, now); err != nil {
				t.Fatal(err)
			}
			for _, h := range []string{"Authorization", "X-Amz-Date", "X-Amz-Security-Token"} {
				if got, want := ours.Header.Get(h), theirs.Header.Get(h); got != want {
					t.Errorf("%s:\n got %q\nwant %q", h, got, want)
				}
			}
		})
	}
}

// TestIamLoginBody: the login carries what Vault's aws auth method reads,
// base64-encoded, signed for the endpoint of the region.
func TestIamLoginBody(t *testing.T) {
	ia := &iamAuth{spec: configv1alpha1.VaultIamAuth{Role: "app", VaultAWSIAMServerID: "vault.example.com"}, region: "eu-west-1"}
	body, err := ia.loginBody(awsCreds{id: "AKID", secret: "s"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dec := func(k string) string {
		b, err := base64.StdEncoding.DecodeString(body[k].(string))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return string(b)
	}
	if body["role"] != "app" || body["iam_http_request_method"] != "POST" {
		t.Errorf("role %v, method %v", body["role"], body["iam_http_request_method"])
	}
	if got := dec("iam_request_url"); got != "https://sts.eu-west-1.amazonaws.com/" {
		t.Errorf("url %q", got)
	}
	if got := dec("iam_request_body"); got != "Action=GetCallerIdentity&Version=2011-06-15" {
		t.Errorf("body %q", got)
	}
	var h http.Header
	if err := json.Unmarshal([]byte(dec("iam_request_headers")), &h); err != nil {
		t.Fatal(err)
	}
	if h.Get(iamServerIDHeader) != "vault.example.com" || !strings.Contains(h.Get("Authorization"), "x-vault-aws-iam-server-id") {
		t.Errorf("the server id header is not signed: %v", h)
	}
	ia.region = "us-east-1"
	if ia.signedURL() != "https://sts.amazonaws.com/" {
		t.Errorf("us-east-1 signs for %s, want the global endpoint as Vault's own client does", ia.signedURL())
	}
}

// iamBackend enables Vault's aws auth method against moto, with a role
// bound to principal, and a secret it may read.
func iamBackend(t *testing.T, m *harness.Moto, principal string) (mount, key string) {
	t.Helper()
	ctx := ctxFor(t)
	mount, key = unique(t), unique(t)
	if _, err := server.PutKV(ctx, "secret", key, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	if err := server.Policy(ctx, mount, `path "secret/data/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	if err := server.EnableAuth(ctx, mount, "aws"); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(ctx, "auth/"+mount+"/config/client", map[string]any{
		"sts_endpoint": m.URL, "sts_region": "us-east-1", "iam_server_id_header_value": "vault.test",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write(ctx, "auth/"+mount+"/role/app", map[string]any{
		"auth_type": "iam", "bound_iam_principal_arn": principal, "resolve_aws_unique_ids": false, "token_policies": mount, "token_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	return mount, key
}

func iamSpec(mount string, a configv1alpha1.VaultIamAuth) configv1alpha1.VaultProvider {
	a.Path, a.Role, a.VaultAWSIAMServerID = mount, "app", "vault.test"
	return httpsSpec(configv1alpha1.VaultAuth{Iam: &a})
}

func keysRef() *configv1alpha1.AWSAuthSecretRef {
	return &configv1alpha1.AWSAuthSecretRef{
		AccessKeyID:     configv1alpha1.SecretKeySelector{Name: "aws", Key: "id"},
		SecretAccessKey: configv1alpha1.SecretKeySelector{Name: "aws", Key: "secret"},
	}
}

// TestIamAuth logs in through moto's STS, which checks the signature:
// with a user's keys, with a role assumed with them (and an external id),
// and with a ServiceAccount token exchanged for a role. Another user's
// keys are refused, without the secret key in the error.
func TestIamAuth(t *testing.T) {
	ctx := ctxFor(t)
	m, err := harness.StartMoto(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	allow := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`
	reader, err := m.CreateUser(ctx, "reader", allow)
	if err != nil {
		t.Fatal(err)
	}
	other, err := m.CreateUser(ctx, "other", allow)
	if err != nil {
		t.Fatal(err)
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":["sts:AssumeRole","sts:AssumeRoleWithWebIdentity"]}]}`
	roleARN, err := m.CreateRole(ctx, "vault-login", trust, allow)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.RequireSignatures(ctx); err != nil {
		t.Fatal(err)
	}

	userMount, key := iamBackend(t, m, "arn:aws:iam::123456789012:user/reader")
	f := newFixture(t, secret("aws", map[string]string{"id": reader.ID, "secret": reader.Secret}))
	c := f.mustClient(iamSpec(userMount, configv1alpha1.VaultIamAuth{SecretRef: keysRef()}))
	if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatal(err)
	}

	f = newFixture(t, secret("aws", map[string]string{"id": other.ID, "secret": other.Secret}))
	_, err = f.newClient(iamSpec(userMount, configv1alpha1.VaultIamAuth{SecretRef: keysRef()}))
	wantError(t, err, providers.Forbidden, `Vault refused to log in as role "app" of the aws auth method at auth/`+userMount, other.Secret)
	// Vault refused the principal, which STS (moto, checking signatures)
	// vouched for.
	wantError(t, err, providers.Forbidden, "arn:aws:iam::123456789012:user/other", other.Secret)

	// The right key id with a wrong secret: STS finds the signature wrong.
	f = newFixture(t, secret("aws", map[string]string{"id": reader.ID, "secret": "wrong-" + reader.Secret}))
	_, err = f.newClient(iamSpec(userMount, configv1alpha1.VaultIamAuth{SecretRef: keysRef()}))
	wantError(t, err, providers.Forbidden, `Vault refused to log in as role "app"`, reader.Secret)

	// A role assumed with the keys; the Vault role is bound to it.
	roleMount, key := iamBackend(t, m, roleARN)
	f = newFixture(t, secret("aws", map[string]string{"id": reader.ID, "secret": reader.Secret}))
	f.plain = true // moto serves plain HTTP
	c = f.mustClient(iamSpec(roleMount, configv1alpha1.VaultIamAuth{SecretRef: keysRef(), AWSIAMRole: roleARN, ExternalID: "ext-1", STSEndpoint: m.URL}))
	if _, err := c.Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatal(err)
	}
	// The user's keys alone are not the role.
	_, err = f.newClient(iamSpec(roleMount, configv1alpha1.VaultIamAuth{SecretRef: keysRef()}))
	wantError(t, err, providers.Forbidden, `Vault refused to log in as role "app"`, reader.Secret)

	// jwt: a token of the store's ServiceAccount, exchanged for the role.
	// moto accepts any token; what is checked is Veil's side.
	if err := m.AcceptAnyCredentials(ctx); err != nil {
		t.Fatal(err)
	}
	var asked [][]string
	cs := fake.NewClientset()
	cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr, ok := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest)
		if !ok || a.GetSubresource() != "token" {
			return false, nil, nil
		}
		asked = append(asked, tr.Spec.Audiences)
		out := tr.DeepCopy()
		out.Status.Token = "header.payload.signature"
		return true, out, nil
	})
	store := f.store(iamSpec(roleMount, configv1alpha1.VaultIamAuth{AWSIAMRole: roleARN, STSEndpoint: m.URL,
		JWTAuth: &configv1alpha1.AWSJWTAuth{ServiceAccountRef: configv1alpha1.ServiceAccountSelector{Name: "app"}}}))
	jc, err := provider{clock: f.clock}.NewClient(ctx, store, credentials.NewReader(cs, 0).ForStore(store), providers.Env{DialContext: f.dialer.DialContext, AllowPlaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jc.Close(context.Background()) })
	if _, err := jc.Get(ctx, providers.Ref{Key: key}); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || len(asked[0]) != 1 || asked[0][0] != "sts.amazonaws.com" {
		t.Errorf("token requests with audiences %v, want one for sts.amazonaws.com", asked)
	}
}

// TestIamRefused: what cannot work is refused before any Secret is read
// or anything dialed, saying what to set; ESO's form without credentials
// (its pod's own identity) among them.
func TestIamRefused(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		a    configv1alpha1.VaultIamAuth
		says string
	}{{
		name: "no credentials: the controller's own identity in ESO",
		a:    configv1alpha1.VaultIamAuth{Role: "app"},
		says: "names neither secretRef nor jwt: External Secrets Operator would sign with its own pod's AWS identity, but Veil never lends its own identity to a store; set secretRef",
	}, {
		name: "jwt without role",
		a:    configv1alpha1.VaultIamAuth{Role: "app", JWTAuth: &configv1alpha1.AWSJWTAuth{ServiceAccountRef: configv1alpha1.ServiceAccountSelector{Name: "app"}}},
		says: "iam.jwt exchanges a ServiceAccount token for an IAM role: set role",
	}, {
		name: "externalID without role",
		a:    configv1alpha1.VaultIamAuth{Role: "app", SecretRef: keysRef(), ExternalID: "x"},
		says: "externalID applies to role, which is not set",
	}, {
		name: "bad region",
		a:    configv1alpha1.VaultIamAuth{Role: "app", SecretRef: keysRef(), Region: "../x"},
		says: `region "../x" is not an AWS region`,
	}, {
		name: "path leaving auth/",
		a:    configv1alpha1.VaultIamAuth{Role: "app", SecretRef: keysRef(), Path: "../sys"},
		says: `iam.path: it has a "." or ".." segment`,
	}, {
		name: "sts endpoint with a path",
		a:    configv1alpha1.VaultIamAuth{Role: "app", SecretRef: keysRef(), AWSIAMRole: "arn:aws:iam::1:role/r", STSEndpoint: "https://sts.example.com/x?y"},
		says: "stsEndpoint is not an http(s) URL with a host and nothing after it",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			spec := httpsSpec(configv1alpha1.VaultAuth{Iam: &tc.a})
			_, err := f.newClient(spec)
			wantError(t, err, providers.Invalid, tc.says)
		})
	}
	if f.dialer.count() != 0 {
		t.Errorf("dialed %v before refusing", f.dialer.dialed)
	}
}

// TestIamEndpoints: a store that assumes a role connects to STS too, so
// the allowlist checks it; one without credentials connects nowhere.
func TestIamEndpoints(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		a    configv1alpha1.VaultIamAuth
		want string
	}{
		{a: configv1alpha1.VaultIamAuth{Role: "app", SecretRef: keysRef()}, want: server.HTTPSURL},
		{a: configv1alpha1.VaultIamAuth{Role: "app", SecretRef: keysRef(), AWSIAMRole: "arn:aws:iam::1:role/r", Region: "eu-west-1"}, want: server.HTTPSURL + " https://sts.eu-west-1.amazonaws.com"},
		{a: configv1alpha1.VaultIamAuth{Role: "app", SecretRef: keysRef(), AWSIAMRole: "arn:aws:iam::1:role/r", STSEndpoint: "https://sts.internal:8443"}, want: server.HTTPSURL + " https://sts.internal:8443"},
		{a: configv1alpha1.VaultIamAuth{Role: "app", AWSIAMRole: "arn:aws:iam::1:role/r"}, want: server.HTTPSURL},
	} {
		urls, err := provider{}.Endpoints(f.store(httpsSpec(configv1alpha1.VaultAuth{Iam: &tc.a})))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, u := range urls {
			got = append(got, u.String())
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("endpoints %v, want %s", got, tc.want)
		}
	}
}
