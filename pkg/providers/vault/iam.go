package vault

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

// Vault's AWS auth method, iam type: Veil signs an sts:GetCallerIdentity
// request with AWS credentials and hands it to Vault, which sends it to
// STS and maps the caller's ARN to a Vault role. Veil itself talks to STS
// only to assume spec.role or exchange a ServiceAccount token for it.
//
// The Vault provider's binary carries no other backend's SDK (threat
// model 002 T5), so the signature (SigV4) and the two STS calls are done
// here with the standard library; the tests check the signature against
// the AWS SDK's signer.

const (
	defaultIAMRegion = "us-east-1"
	// iamServerIDHeader is the header Vault checks against its
	// iam_server_id_header_value.
	iamServerIDHeader = "X-Vault-AWS-IAM-Server-ID"
	getCallerIdentity = "Action=GetCallerIdentity&Version=2011-06-15"
	formContentType   = "application/x-www-form-urlencoded; charset=utf-8"
	// stsAudience is the audience of the ServiceAccount tokens exchanged
	// for a role when the ServiceAccountRef names none.
	stsAudience = "sts.amazonaws.com"
	// stsResponseLimit bounds what Veil reads of an STS answer.
	stsResponseLimit = 64 << 10
)

var iamRegion = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// awsCreds is an AWS access key, with a session token when temporary.
type awsCreds struct{ id, secret, session string }

// iamAuth is a store's auth.iam, checked.
type iamAuth struct {
	spec   configv1alpha1.VaultIamAuth
	mount  string
	region string
	// sts is where Veil assumes spec.role; nil when no role is assumed.
	sts *url.URL
	// http reaches sts, verified with the system roots (not the store's
	// Vault CA) and dialed through the endpoint allowlist.
	http *http.Client
}

// checkIam checks auth.iam without reading any credential or connecting.
func checkIam(store *providers.Store, a *configv1alpha1.VaultIamAuth) (*iamAuth, error) {
	mount, err := authMount(store, "iam.path", a.Path, "aws")
	if err != nil {
		return nil, err
	}
	ia := &iamAuth{spec: *a.DeepCopy(), mount: mount, region: a.Region}
	if ia.region == "" {
		ia.region = defaultIAMRegion
	}
	if !iamRegion.MatchString(ia.region) || len(ia.region) > 64 {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.iam.region %q is not an AWS region such as eu-west-1", store, ia.region)
	}
	if strings.TrimSpace(a.Role) == "" {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.iam.vaultRole is empty: set the role of Vault's AWS auth method to log in as", store)
	}
	for _, r := range a.VaultAWSIAMServerID {
		if r < 0x20 || r > 0x7e {
			return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.iam.vaultAwsIamServerID may hold printable ASCII only", store)
		}
	}
	if a.JWTAuth == nil && a.SecretRef == nil {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.iam names neither secretRef nor jwt: External Secrets Operator would sign with its own pod's AWS identity, but Veil never lends its own identity to a store; set secretRef to the Secret keys of an AWS access key in the store's namespace, or jwt.serviceAccountRef and role to exchange a ServiceAccount token for that IAM role", store)
	}
	if a.JWTAuth != nil && a.AWSIAMRole == "" {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.iam.jwt exchanges a ServiceAccount token for an IAM role: set role to its ARN (External Secrets Operator reads it from the ServiceAccount's eks.amazonaws.com/role-arn annotation; Veil does not)", store)
	}
	if a.ExternalID != "" && a.AWSIAMRole == "" {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.iam.externalID applies to role, which is not set", store)
	}
	if a.AWSIAMRole != "" {
		if ia.sts, err = iamSTSEndpoint(store, a, ia.region); err != nil {
			return nil, err
		}
	}
	return ia, nil
}

// iamSTSEndpoint is where Veil assumes the role: stsEndpoint, or the
// region's STS endpoint.
func iamSTSEndpoint(store *providers.Store, a *configv1alpha1.VaultIamAuth, region string) (*url.URL, error) {
	raw := a.STSEndpoint
	if raw == "" {
		raw = "https://sts." + region + ".amazonaws.com"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.iam.stsEndpoint is not an http(s) URL with a host and nothing after it, such as https://sts.eu-west-1.amazonaws.com", store)
	}
	return u, nil
}

// signedURL is the STS endpoint the GetCallerIdentity request is signed
// for, as Vault's own client signs it: the global endpoint in us-east-1,
// the regional one elsewhere. Vault sends the request to its configured
// sts_endpoint with this URL's host.
func (ia *iamAuth) signedURL() string {
	if ia.region == defaultIAMRegion {
		return "https://sts.amazonaws.com/"
	}
	return "https://sts." + ia.region + ".amazonaws.com/"
}

// setUpIam prepares the login of auth.iam.
func (c *client) setUpIam(store *providers.Store, a *configv1alpha1.VaultIamAuth, creds providers.Credentials, env providers.Env) error {
	ia, err := checkIam(store, a)
	if err != nil {
		return err
	}
	if ia.sts != nil {
		if err := env.CheckPlaintext(store, ia.sts); err != nil {
			return err
		}
		ia.http = &http.Client{
			Transport: &http.Transport{
				DialContext:         env.DialContext,
				TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
				TLSHandshakeTimeout: 10 * time.Second,
				IdleConnTimeout:     90 * time.Second,
			},
			Timeout: requestTimeout,
			// STS answers rather than redirects; following one would send
			// a signed request or a token somewhere the store did not name.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		c.http = append(c.http, ia.http)
	}
	c.identity = fmt.Sprintf("role %q of the aws auth method at auth/%s", ia.spec.Role, ia.mount)
	c.login = func(ctx context.Context) (*vaultapi.SecretAuth, error) {
		ac, err := c.iamCredentials(ctx, store, ia, creds)
		if err != nil {
			return nil, err
		}
		body, err := ia.loginBody(ac, time.Now())
		if err != nil {
			return nil, providers.Wrap(providers.Invalid, err, "%s: signing the sts:GetCallerIdentity request for Vault", store)
		}
		return c.loginWith(ctx, c.base, ia.mount, "login", body)
	}
	return nil
}

// iamCredentials reads the store's AWS credentials at each login, and
// assumes the role with them when one is set.
func (c *client) iamCredentials(ctx context.Context, store *providers.Store, ia *iamAuth, creds providers.Credentials) (awsCreds, error) {
	a := &ia.spec
	if a.JWTAuth != nil {
		// As in External Secrets Operator, jwt wins over secretRef.
		sa := a.JWTAuth.ServiceAccountRef
		if len(sa.Audiences) == 0 {
			sa.Audiences = []string{stsAudience}
		}
		token, err := creds.ServiceAccountToken(ctx, sa, serviceAccountTokenSeconds)
		if err != nil {
			return awsCreds{}, err
		}
		form := url.Values{
			"Action":           {"AssumeRoleWithWebIdentity"},
			"Version":          {"2011-06-15"},
			"RoleArn":          {a.AWSIAMRole},
			"RoleSessionName":  {roleSessionName(store)},
			"WebIdentityToken": {token},
		}
		return c.assumeRole(ctx, store, ia, form, nil, "AssumeRoleWithWebIdentity")
	}
	ref := a.SecretRef
	id, err := creds.SecretKey(ctx, ref.AccessKeyID)
	if err != nil {
		return awsCreds{}, err
	}
	secret, err := creds.SecretKey(ctx, ref.SecretAccessKey)
	if err != nil {
		return awsCreds{}, err
	}
	ac := awsCreds{id: strings.TrimSpace(string(id)), secret: strings.TrimSpace(string(secret))}
	if ref.SessionToken != nil {
		token, err := creds.SecretKey(ctx, *ref.SessionToken)
		if err != nil {
			return awsCreds{}, err
		}
		ac.session = strings.TrimSpace(string(token))
	}
	if ac.id == "" || ac.secret == "" {
		return awsCreds{}, providers.Errorf(providers.Invalid, "%s: spec.provider.vault.auth.iam.secretRef: the access key id (Secret %s key %q) or the secret access key (Secret %s key %q) is empty",
			store, ref.AccessKeyID.Name, ref.AccessKeyID.Key, ref.SecretAccessKey.Name, ref.SecretAccessKey.Key)
	}
	if a.AWSIAMRole == "" {
		return ac, nil
	}
	form := url.Values{
		"Action":          {"AssumeRole"},
		"Version":         {"2011-06-15"},
		"RoleArn":         {a.AWSIAMRole},
		"RoleSessionName": {roleSessionName(store)},
	}
	if a.ExternalID != "" {
		form.Set("ExternalId", a.ExternalID)
	}
	return c.assumeRole(ctx, store, ia, form, &ac, "AssumeRole")
}

// roleSessionName names the role session after the store, so CloudTrail
// attributes its calls; STS allows 64 characters of [\w+=,.@-], which
// Kubernetes names always are.
func roleSessionName(store *providers.Store) string {
	ns := store.Namespace
	if ns == "" {
		ns = "cluster"
	}
	name := "veil." + ns + "." + store.Name
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// stsCredentials are the temporary credentials of an STS answer.
type stsCredentials struct {
	ID      string `xml:"AccessKeyId"`
	Secret  string `xml:"SecretAccessKey"`
	Session string `xml:"SessionToken"`
}

type stsError struct {
	Code    string `xml:"Error>Code"`
	Message string `xml:"Error>Message"`
}

// assumeRole posts an STS query (signed with signer's keys when given) and
// returns the role's temporary credentials. Neither the request nor the
// answer appears in an error: only STS's error code and message.
func (c *client) assumeRole(ctx context.Context, store *providers.Store, ia *iamAuth, form url.Values, signer *awsCreds, action string) (ac awsCreds, err error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	start := time.Now()
	defer func() { metrics.ObserveProviderCall(providerName, "sts-"+strings.ToLower(action), start, err) }()

	body := form.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(ia.sts.String(), "/")+"/", strings.NewReader(body))
	if err != nil {
		return awsCreds{}, providers.Wrap(providers.Invalid, err, "%s: building the %s request", store, action)
	}
	req.Header.Set("Content-Type", formContentType)
	if signer != nil {
		signV4(req, []byte(body), *signer, ia.region, "sts", time.Now())
	}
	resp, err := ia.http.Do(req)
	if err != nil {
		var notAllowed *allowlist.NotAllowedError
		if errors.As(err, &notAllowed) {
			return awsCreds{}, providers.Wrap(providers.Forbidden, err, "%s: Veil may not connect to STS at %s to assume role %s; it must match --allowed-provider-endpoints", store, ia.sts.Host, ia.spec.AWSIAMRole)
		}
		return awsCreds{}, providers.Errorf(providers.Unavailable, "%s: could not reach STS at %s to assume role %s: %s", store, ia.sts.Host, ia.spec.AWSIAMRole, transportError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, stsResponseLimit))
	if err != nil {
		return awsCreds{}, providers.Errorf(providers.Unavailable, "%s: reading STS's answer to %s: %s", store, action, transportError(err))
	}
	if resp.StatusCode != http.StatusOK {
		var e stsError
		_ = xml.Unmarshal(raw, &e)
		reason := providers.Unavailable
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			reason = providers.Forbidden
		}
		return awsCreds{}, providers.Errorf(reason, "%s: STS refused %s of role %s (%d %s): %s; check that the role's trust policy lets the store's credentials assume it",
			store, action, ia.spec.AWSIAMRole, resp.StatusCode, clip(e.Code, 100), clip(e.Message, 300))
	}
	var out struct {
		Role *stsCredentials `xml:"AssumeRoleResult>Credentials"`
		Web  *stsCredentials `xml:"AssumeRoleWithWebIdentityResult>Credentials"`
	}
	err = xml.Unmarshal(raw, &out)
	a := out.Role
	if a == nil {
		a = out.Web
	}
	if err != nil || a == nil || a.ID == "" || a.Secret == "" {
		return awsCreds{}, providers.Errorf(providers.Unavailable, "%s: STS answered %s of role %s without credentials", store, action, ia.spec.AWSIAMRole)
	}
	return awsCreds{id: a.ID, secret: a.Secret, session: a.Session}, nil
}

// clip bounds text STS chose before it reaches a message.
func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// transportError describes a failed connection without the request.
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// loginBody is the login request of Vault's aws auth method: a
// GetCallerIdentity request signed with ac, base64-encoded.
func (ia *iamAuth) loginBody(ac awsCreds, now time.Time) (map[string]any, error) {
	u := ia.signedURL()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(getCallerIdentity))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", formContentType)
	if id := ia.spec.VaultAWSIAMServerID; id != "" {
		req.Header.Set(iamServerIDHeader, id)
	}
	signV4(req, []byte(getCallerIdentity), ac, ia.region, "sts", now)
	headers, err := json.Marshal(req.Header)
	if err != nil {
		return nil, err
	}
	enc := base64.StdEncoding.EncodeToString
	return map[string]any{
		"role":                    ia.spec.Role,
		"iam_http_request_method": http.MethodPost,
		"iam_request_url":         enc([]byte(u)),
		"iam_request_body":        enc([]byte(getCallerIdentity)),
		"iam_request_headers":     enc(headers),
	}, nil
}

// signV4 signs req (whose body is body) with AWS Signature Version 4,
// setting X-Amz-Date, X-Amz-Security-Token (for temporary credentials)
// and Authorization. Every header already set is signed, and the host.
func signV4(req *http.Request, body []byte, ac awsCreds, region, service string, now time.Time) {
	now = now.UTC()
	amzDate := now.Format("20060102T150405Z")
	day := now.Format("20060102")
	req.Header.Set("X-Amz-Date", amzDate)
	if ac.session != "" {
		req.Header.Set("X-Amz-Security-Token", ac.session)
	}

	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	canon := map[string]string{"host": host}
	for k, vs := range req.Header {
		vals := make([]string, len(vs))
		for i, v := range vs {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		canon[strings.ToLower(k)] = strings.Join(vals, ",")
	}
	names := make([]string, 0, len(canon))
	for k := range canon {
		names = append(names, k)
	}
	sort.Strings(names)
	var ch strings.Builder
	for _, k := range names {
		ch.WriteString(k + ":" + canon[k] + "\n")
	}
	signed := strings.Join(names, ";")
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	bodySum := sha256.Sum256(body)
	canonical := strings.Join([]string{req.Method, path, req.URL.Query().Encode(), ch.String(), signed, hex.EncodeToString(bodySum[:])}, "\n")
	canonSum := sha256.Sum256([]byte(canonical))
	scope := day + "/" + region + "/" + service + "/aws4_request"
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(canonSum[:])

	key := hmacSHA256([]byte("AWS4"+ac.secret), day)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, service)
	key = hmacSHA256(key, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(key, toSign))
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+ac.id+"/"+scope+", SignedHeaders="+signed+", Signature="+sig)
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}
