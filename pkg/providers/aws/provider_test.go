package aws

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

func store(kind configv1alpha1.StoreKind, spec configv1alpha1.AWSProvider) *providers.Store {
	s := &providers.Store{Kind: kind, Name: "aws", Spec: &configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{AWS: &spec}}}
	if kind == configv1alpha1.SecretStoreKind {
		s.Namespace = "team-a"
	}
	return s
}

var keys = configv1alpha1.AWSAuth{SecretRef: &configv1alpha1.AWSAuthSecretRef{
	AccessKeyID:     configv1alpha1.SecretKeySelector{Name: "aws", Key: "id"},
	SecretAccessKey: configv1alpha1.SecretKeySelector{Name: "aws", Key: "secret"},
}}

func TestEndpoints(t *testing.T) {
	jwt := configv1alpha1.AWSAuth{JWT: &configv1alpha1.AWSJWTAuth{ServiceAccountRef: configv1alpha1.ServiceAccountSelector{Name: "app"}}}
	for _, tc := range []struct {
		name string
		kind configv1alpha1.StoreKind
		spec configv1alpha1.AWSProvider
		want []string
		// reason and msg describe the error expected instead.
		reason providers.Reason
		msg    string
	}{{
		name: "regional Secrets Manager",
		spec: configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "eu-west-1", Auth: keys},
		want: []string{"https://secretsmanager.eu-west-1.amazonaws.com"},
	}, {
		name: "regional Parameter Store in China",
		spec: configv1alpha1.AWSProvider{Service: "ParameterStore", Region: "cn-north-1", Auth: keys},
		want: []string{"https://ssm.cn-north-1.amazonaws.com.cn"},
	}, {
		name: "regional Certificate Manager",
		spec: configv1alpha1.AWSProvider{Service: "CertificateManager", Region: "eu-west-1", Auth: keys},
		want: []string{"https://acm.eu-west-1.amazonaws.com"},
	}, {
		name: "Certificate Manager through a VPC endpoint",
		spec: configv1alpha1.AWSProvider{Service: "CertificateManager", Region: "eu-west-1", Auth: keys, Endpoint: "https://vpce-2.acm.eu-west-1.vpce.amazonaws.com"},
		want: []string{"https://vpce-2.acm.eu-west-1.vpce.amazonaws.com"},
	}, {
		name: "a role adds STS",
		spec: configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-2", Auth: keys, Role: "arn:aws:iam::1:role/r"},
		want: []string{"https://secretsmanager.us-east-2.amazonaws.com", "https://sts.us-east-2.amazonaws.com"},
	}, {
		name: "overrides",
		spec: configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: jwt, Role: "arn:aws:iam::1:role/r",
			Endpoint: "https://vpce-1.secretsmanager.us-east-1.vpce.amazonaws.com", STSEndpoint: "http://127.0.0.1:5000"},
		want: []string{"https://vpce-1.secretsmanager.us-east-1.vpce.amazonaws.com", "http://127.0.0.1:5000"},
	}, {
		name: "the apiserver's identity for a ClusterSecretStore",
		kind: configv1alpha1.ClusterSecretStoreKind,
		spec: configv1alpha1.AWSProvider{Service: "ParameterStore", Region: "us-east-1"},
		want: []string{"https://ssm.us-east-1.amazonaws.com"},
	}, {
		name:   "no auth in a SecretStore",
		spec:   configv1alpha1.AWSProvider{Service: "ParameterStore", Region: "us-east-1"},
		reason: providers.Forbidden, msg: "apiserver's own AWS identity, and only a ClusterSecretStore may use it",
	}, {
		name:   "jwt without a role",
		spec:   configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: jwt},
		reason: providers.Invalid, msg: "set role",
	}, {
		name:   "external ID without a role",
		spec:   configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: keys, ExternalID: "x"},
		reason: providers.Invalid, msg: "which is not set",
	}, {
		name:   "transitive tag keys without a role",
		spec:   configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: keys, TransitiveTagKeys: []string{"team"}},
		reason: providers.Invalid, msg: "transitiveTagKeys apply to the session of spec.provider.aws.role, which is not set",
	}, {
		name: "additional roles without a role add STS",
		spec: configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: keys, AdditionalRoles: []string{"arn:aws:iam::123456789012:role/a"}},
		want: []string{"https://secretsmanager.us-east-1.amazonaws.com", "https://sts.us-east-1.amazonaws.com"},
	}, {
		name: "additional roles with jwt",
		spec: configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: jwt, Role: "arn:aws:iam::123456789012:role/r",
			AdditionalRoles: []string{"arn:aws:iam::123456789012:role/a"}},
		reason: providers.Invalid, msg: "additionalRoles cannot be used with auth.jwt",
	}, {
		name: "six additional roles",
		spec: configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: keys, Role: "arn:aws:iam::123456789012:role/r",
			AdditionalRoles: []string{"arn:aws:iam::123456789012:role/a", "arn:aws:iam::123456789012:role/b", "arn:aws:iam::123456789012:role/c",
				"arn:aws:iam::123456789012:role/d", "arn:aws:iam::123456789012:role/e", "arn:aws:iam::123456789012:role/f"}},
		reason: providers.Invalid, msg: "at most 5 may be chained",
	}, {
		name: "an additional role that is not a role ARN",
		spec: configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: keys, Role: "arn:aws:iam::123456789012:role/r",
			AdditionalRoles: []string{"arn:aws:iam::123456789012:user/u"}},
		reason: providers.Invalid, msg: "additionalRoles[0] \"arn:aws:iam::123456789012:user/u\" is not an IAM role ARN",
	}, {
		name: "a transitive tag key that is not a session tag",
		spec: configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: keys, Role: "arn:aws:iam::123456789012:role/r",
			SessionTags: []configv1alpha1.AWSTag{{Key: "team", Value: "a"}}, TransitiveTagKeys: []string{"team", "cost-center"}},
		reason: providers.Invalid, msg: "transitiveTagKeys[1] \"cost-center\" is not the key of a sessionTags entry",
	}, {
		name: "transitive tag keys without session tags",
		spec: configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: keys, Role: "arn:aws:iam::123456789012:role/r",
			TransitiveTagKeys: []string{"team"}},
		reason: providers.Invalid, msg: "sessionTags, which is empty",
	}, {
		name: "a chain of two roles",
		spec: configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-2", Auth: keys, Role: "arn:aws:iam::123456789012:role/r",
			AdditionalRoles: []string{"arn:aws:iam::123456789012:role/a", "arn:aws-us-gov:iam::123456789012:role/path/b"}},
		want: []string{"https://secretsmanager.us-east-2.amazonaws.com", "https://sts.us-east-2.amazonaws.com"},
	}, {
		name:   "a region that is not one",
		spec:   configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "evil.example.com/", Auth: keys},
		reason: providers.Invalid, msg: "is not an AWS region",
	}, {
		name:   "an endpoint with credentials",
		spec:   configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: keys, Endpoint: "https://user:pw@example.com"},
		reason: providers.Invalid, msg: "is not an http(s) URL",
	}, {
		name:   "an endpoint that is not a URL",
		spec:   configv1alpha1.AWSProvider{Service: "SecretsManager", Region: "us-east-1", Auth: keys, Endpoint: "example.com"},
		reason: providers.Invalid, msg: "is not an http(s) URL",
	}, {
		name:   "no service",
		spec:   configv1alpha1.AWSProvider{Region: "us-east-1", Auth: keys},
		reason: providers.Invalid, msg: "is none of SecretsManager, ParameterStore and CertificateManager",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			kind := tc.kind
			if kind == "" {
				kind = configv1alpha1.SecretStoreKind
			}
			urls, err := provider{}.Endpoints(store(kind, tc.spec))
			if tc.msg != "" {
				if providers.ReasonOf(err) != tc.reason || err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("got %v, want a %s error saying %q", err, tc.reason, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, u := range urls {
				got = append(got, u.String())
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("endpoints %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSecretVersion(t *testing.T) {
	for _, tc := range []struct{ in, id, stage string }{
		{"", "", ""},
		{"AWSPREVIOUS", "", "AWSPREVIOUS"},
		{"3f0a6b3e-8f41-4b8e-9d55-0f2b1c9a7e11", "3f0a6b3e-8f41-4b8e-9d55-0f2b1c9a7e11", ""},
		{"uuid/my-client-token-0000000000000000000", "my-client-token-0000000000000000000", ""},
		{"blue", "", "blue"},
	} {
		id, stage := secretVersion(tc.in)
		if aws.ToString(id) != tc.id || aws.ToString(stage) != tc.stage {
			t.Errorf("secretVersion(%q) = id %q stage %q, want id %q stage %q", tc.in, aws.ToString(id), aws.ToString(stage), tc.id, tc.stage)
		}
	}
}

func TestSessionNamesTheStore(t *testing.T) {
	s := store(configv1alpha1.SecretStoreKind, configv1alpha1.AWSProvider{})
	if got := sessionName(s); got != "veil.team-a.aws" {
		t.Errorf("session name %q", got)
	}
	s.Name = strings.Repeat("n", 80)
	if got := sessionName(s); len(got) != 64 {
		t.Errorf("session name of %d characters, STS allows 64", len(got))
	}
	tags := map[string]string{}
	for _, tag := range sessionTags(store(configv1alpha1.SecretStoreKind, configv1alpha1.AWSProvider{}), []configv1alpha1.AWSTag{{Key: "team", Value: "a"}}) {
		tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
	}
	want := map[string]string{TagStoreKind: "SecretStore", TagStoreNamespace: "team-a", TagStoreName: "aws", "team": "a"}
	if len(tags) != len(want) {
		t.Fatalf("session tags %v, want %v", tags, want)
	}
	for k, v := range want {
		if tags[k] != v {
			t.Errorf("session tag %s=%q, want %q", k, tags[k], v)
		}
	}
	for _, tag := range sessionTags(store(configv1alpha1.ClusterSecretStoreKind, configv1alpha1.AWSProvider{}), nil) {
		if aws.ToString(tag.Key) == TagStoreNamespace {
			t.Error("a ClusterSecretStore's session is tagged with a namespace")
		}
	}
}

// apiError builds the error the SDK returns for an answer of AWS.
func apiError(service, op string, status int, code string) error {
	resp := &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: http.Header{}}}
	var inner error = &smithy.GenericAPIError{Code: code, Message: "message of " + code}
	if code == "" {
		inner = errors.New("failed to decode response body")
	}
	return &smithy.OperationError{ServiceID: service, OperationName: op,
		Err: &awshttp.ResponseError{RequestID: "req-1", ResponseError: &smithyhttp.ResponseError{Response: resp, Err: inner}}}
}

func TestErrorMapping(t *testing.T) {
	b := &base{store: "SecretStore team-a/aws", identity: "the access key in Secret team-a/aws", endpoint: "https://secretsmanager.us-east-1.amazonaws.com"}
	credsFailed := &smithy.OperationError{ServiceID: "Secrets Manager", OperationName: "GetSecretValue",
		Err: errors.Join(errors.New("get identity: get credentials"), apiError("STS", "AssumeRole", 403, "AccessDenied"))}
	for _, tc := range []struct {
		name   string
		err    error
		reason providers.Reason
		says   []string
	}{
		{"missing secret", apiError("Secrets Manager", "GetSecretValue", 400, "ResourceNotFoundException"), providers.NotFound, []string{`reading secret "db": it does not exist`}},
		{"missing parameter", apiError("SSM", "GetParameter", 400, "ParameterNotFound"), providers.NotFound, nil},
		{"missing parameter version", apiError("SSM", "GetParameter", 400, "ParameterVersionNotFound"), providers.NotFound, nil},
		{"wrong secret key", apiError("Secrets Manager", "GetSecretValue", 400, "InvalidSignatureException"), providers.Forbidden, []string{"SecretStore team-a/aws", "Secret team-a/aws", "does not match the access key ID"}},
		{"unknown key", apiError("SSM", "GetParameter", 400, "UnrecognizedClientException"), providers.Forbidden, []string{"does not know the access key ID"}},
		{"denied", apiError("Secrets Manager", "GetSecretValue", 400, "AccessDeniedException"), providers.Forbidden, []string{"not allowed to GetSecretValue"}},
		{"an unparsed 403", apiError("Secrets Manager", "GetSecretValue", 403, ""), providers.Forbidden, []string{"HTTP 403", "check the keys and the IAM policy"}},
		{"assume role refused", credsFailed, providers.Forbidden, []string{"STS refused AssumeRole", "trust policy"}},
		{"throttled", apiError("Secrets Manager", "GetSecretValue", 400, "ThrottlingException"), providers.Unavailable, []string{"throttled", "after retries"}},
		{"throttled by status", apiError("SSM", "GetParameter", 429, ""), providers.Unavailable, []string{"throttled"}},
		{"server error", apiError("SSM", "GetParameter", 500, "InternalServerError"), providers.Unavailable, []string{"HTTP 500"}},
		{"validation", apiError("SSM", "GetParameter", 400, "ValidationException"), providers.Invalid, []string{"AWS rejected"}},
		{"no answer", &smithy.OperationError{ServiceID: "SSM", OperationName: "GetParameter", Err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")}, providers.Unavailable, []string{"could not reach AWS at https://secretsmanager.us-east-1.amazonaws.com", "connection refused"}},
		{"no credentials", &smithy.OperationError{ServiceID: "SSM", OperationName: "GetParameter", Err: errors.New("get identity: get credentials: failed to refresh cached credentials, no valid providers in chain")}, providers.Unavailable, []string{"could not get AWS credentials from the access key in Secret team-a/aws"}},
		{"not allowed", &smithy.OperationError{ServiceID: "SSM", OperationName: "GetParameter", Err: &allowlist.NotAllowedError{Host: "10.1.1.1"}}, providers.Forbidden, []string{"--allowed-provider-endpoints"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := b.callError(tc.err, `reading secret "db"`)
			var pe *providers.Error
			if !errors.As(err, &pe) || pe.Reason != tc.reason {
				t.Fatalf("got %v, want a %s provider error", err, tc.reason)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
		})
	}
}

// AWS validation messages quote what they reject, so a failed write must
// not pass AWS's message on.
func TestWriteErrorsDropAWSMessages(t *testing.T) {
	b := &base{store: "SecretStore team-a/aws"}
	for _, op := range []string{"PutSecretValue", "CreateSecret", "PutParameter", "AssumeRoleWithWebIdentity"} {
		err := b.callError(apiError("X", op, 400, "ValidationException"), "writing")
		if strings.Contains(err.Error(), "message of") {
			t.Errorf("%s: the error carries AWS's message: %v", op, err)
		}
		if !strings.Contains(err.Error(), "ValidationException") || !strings.Contains(err.Error(), "req-1") {
			t.Errorf("%s: the error lacks the code or request ID: %v", op, err)
		}
	}
}
