// Package aws reads and writes AWS Secrets Manager, Systems Manager
// Parameter Store and Certificate Manager through aws-sdk-go-v2. A client is built once per store
// identity: its credentials (static keys, an assumed role, or a web
// identity exchanged for a role) are cached and refreshed by the SDK, so a
// read costs one API call and no credential exchange.
package aws

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/acm"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go/logging"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

func init() { providers.Register(provider{}) }

// Session tags Veil puts on every role session it assumes, so CloudTrail
// and IAM conditions (aws:PrincipalTag) can tell which store made a call.
const (
	TagStoreKind      = "veil.dev/store-kind"
	TagStoreNamespace = "veil.dev/store-namespace"
	TagStoreName      = "veil.dev/store-name"
)

// STSAudience is the audience of the ServiceAccount tokens Veil exchanges
// for a role when a store does not name audiences of its own.
const STSAudience = "sts.amazonaws.com"

// webIdentityTokenSeconds is the lifetime Veil asks for the ServiceAccount
// tokens it exchanges: TokenRequest's minimum, since each is used once.
const webIdentityTokenSeconds = 600

type provider struct{}

func (provider) Name() string { return "aws" }

// Endpoints returns the service endpoint and, when the store assumes a
// role, the STS endpoint. NewClient pins both, so what is checked here is
// where the client connects. (A ClusterSecretStore without auth also
// connects where veil-apiserver's environment sends its credential chain
// — IMDS, or STS for IRSA — which the dialer's allowlist still checks.)
func (provider) Endpoints(store *providers.Store) ([]*url.URL, error) {
	spec, err := validate(store)
	if err != nil {
		return nil, err
	}
	svc, err := serviceEndpoint(store, spec)
	if err != nil {
		return nil, err
	}
	urls := []*url.URL{svc}
	if spec.Role != "" || len(spec.AdditionalRoles) > 0 {
		st, err := stsEndpoint(store, spec)
		if err != nil {
			return nil, err
		}
		urls = append(urls, st)
	}
	return urls, nil
}

var regionPattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// roleARNPattern is the CRD's pattern for additionalRoles, checked again
// here for stores that did not come through the CRD's validation.
var roleARNPattern = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$`)

// maxAdditionalRoles bounds role chaining: each hop is one more STS call
// at every renewal of the credentials.
const maxAdditionalRoles = 5

// validate checks what can be checked without credentials or a connection.
func validate(store *providers.Store) (*configv1alpha1.AWSProvider, error) {
	spec := store.Spec.Provider.AWS
	if spec == nil {
		return nil, providers.Errorf(providers.Invalid, "%s has no spec.provider.aws", store)
	}
	switch spec.Service {
	case configv1alpha1.AWSServiceSecretsManager, configv1alpha1.AWSServiceParameterStore, configv1alpha1.AWSServiceCertificateManager:
	default:
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.service %q is none of %s, %s and %s", store, spec.Service, configv1alpha1.AWSServiceSecretsManager, configv1alpha1.AWSServiceParameterStore, configv1alpha1.AWSServiceCertificateManager)
	}
	if !regionPattern.MatchString(spec.Region) {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.region %q is not an AWS region such as eu-west-1", store, spec.Region)
	}
	auth := spec.Auth
	switch {
	case auth.SecretRef != nil && auth.JWT != nil:
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.auth sets both secretRef and jwt; set one", store)
	case auth.SecretRef == nil && auth.JWT == nil && store.Kind != configv1alpha1.ClusterSecretStoreKind:
		return nil, providers.Errorf(providers.Forbidden, "%s: spec.provider.aws.auth is empty, which means the apiserver's own AWS identity, and only a ClusterSecretStore may use it; set auth.secretRef or auth.jwt", store)
	case auth.JWT != nil && spec.Role == "":
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.auth.jwt exchanges a ServiceAccount token for spec.provider.aws.role; set role", store)
	case auth.JWT != nil && (spec.ExternalID != "" || len(spec.SessionTags) > 0):
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.externalID and sessionTags apply when a role is assumed with keys; with auth.jwt, STS takes session tags from the token, so remove them", store)
	case spec.Role == "" && (spec.ExternalID != "" || len(spec.SessionTags) > 0):
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.externalID and sessionTags apply to spec.provider.aws.role, which is not set", store)
	case spec.Role == "" && len(spec.TransitiveTagKeys) > 0:
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.transitiveTagKeys apply to the session of spec.provider.aws.role, which is not set", store)
	case auth.JWT != nil && len(spec.AdditionalRoles) > 0:
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.additionalRoles cannot be used with auth.jwt: Veil exchanges the ServiceAccount token for spec.provider.aws.role itself and reads no eks.amazonaws.com/role-arn annotation, so ESO's chain (annotation role, additionalRoles, role) has no first hop; use auth.secretRef, or drop additionalRoles and exchange the token for the role directly", store)
	case len(spec.AdditionalRoles) > maxAdditionalRoles:
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.additionalRoles has %d roles; at most %d may be chained", store, len(spec.AdditionalRoles), maxAdditionalRoles)
	case len(spec.TransitiveTagKeys) > 0 && len(spec.SessionTags) == 0:
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.transitiveTagKeys name keys of sessionTags, which is empty", store)
	}
	for i, arn := range spec.AdditionalRoles {
		if !roleARNPattern.MatchString(arn) {
			return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.additionalRoles[%d] %q is not an IAM role ARN such as arn:aws:iam::123456789012:role/name", store, i, arn)
		}
	}
	for i, k := range spec.TransitiveTagKeys {
		found := false
		for _, t := range spec.SessionTags {
			found = found || t.Key == k
		}
		if !found {
			return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.transitiveTagKeys[%d] %q is not the key of a sessionTags entry", store, i, k)
		}
	}
	return spec, nil
}

func serviceEndpoint(store *providers.Store, spec *configv1alpha1.AWSProvider) (*url.URL, error) {
	if spec.Endpoint != "" {
		return parseEndpoint(store, "endpoint", spec.Endpoint)
	}
	var raw string
	switch spec.Service {
	case configv1alpha1.AWSServiceCertificateManager:
		ep, err := acm.NewDefaultEndpointResolverV2().ResolveEndpoint(context.Background(), acm.EndpointParameters{Region: aws.String(spec.Region), ServiceType: aws.String("ACM")})
		if err != nil {
			return nil, providers.Wrap(providers.Invalid, err, "%s: no Certificate Manager endpoint for region %q", store, spec.Region)
		}
		raw = ep.URI.String()
	case configv1alpha1.AWSServiceSecretsManager:
		ep, err := secretsmanager.NewDefaultEndpointResolverV2().ResolveEndpoint(context.Background(), secretsmanager.EndpointParameters{Region: aws.String(spec.Region)})
		if err != nil {
			return nil, providers.Wrap(providers.Invalid, err, "%s: no Secrets Manager endpoint for region %q", store, spec.Region)
		}
		raw = ep.URI.String()
	default:
		ep, err := ssm.NewDefaultEndpointResolverV2().ResolveEndpoint(context.Background(), ssm.EndpointParameters{Region: aws.String(spec.Region)})
		if err != nil {
			return nil, providers.Wrap(providers.Invalid, err, "%s: no Parameter Store endpoint for region %q", store, spec.Region)
		}
		raw = ep.URI.String()
	}
	return parseEndpoint(store, "endpoint", raw)
}

func stsEndpoint(store *providers.Store, spec *configv1alpha1.AWSProvider) (*url.URL, error) {
	if spec.STSEndpoint != "" {
		return parseEndpoint(store, "stsEndpoint", spec.STSEndpoint)
	}
	ep, err := sts.NewDefaultEndpointResolverV2().ResolveEndpoint(context.Background(), sts.EndpointParameters{Region: aws.String(spec.Region)})
	if err != nil {
		return nil, providers.Wrap(providers.Invalid, err, "%s: no STS endpoint for region %q", store, spec.Region)
	}
	return parseEndpoint(store, "stsEndpoint", ep.URI.String())
}

func parseEndpoint(store *providers.Store, field, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, providers.Errorf(providers.Invalid, "%s: spec.provider.aws.%s %q is not an http(s) URL with a host and nothing after the path", store, field, raw)
	}
	return u, nil
}

func (p provider) NewClient(ctx context.Context, store *providers.Store, creds providers.Credentials, env providers.Env) (providers.Client, error) {
	spec, err := validate(store)
	if err != nil {
		return nil, err
	}
	urls, err := p.Endpoints(store)
	if err != nil {
		return nil, err
	}
	for _, u := range urls {
		// pkg/stores refuses this before calling us; a client must never
		// depend on its caller for that.
		if err := env.CheckPlaintext(store, u); err != nil {
			return nil, err
		}
	}

	transport := &http.Transport{
		DialContext: env.DialContext,
		// No proxy: the allowlist checks the address dialed, which must be
		// the provider's, not a proxy's.
		Proxy:                 nil,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	httpClient := &http.Client{
		Transport: transport,
		Timeout:   time.Minute,
		// AWS APIs answer rather than redirect; following a redirect would
		// send a signed request somewhere the store did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	cfg := aws.Config{
		Region:     spec.Region,
		HTTPClient: httpClient,
		Retryer:    newRetryer,
		APIOptions: apiOptions(),
		// The SDK's request and response logging would print values.
		Logger: logging.Nop{},
	}

	var identity string
	switch auth := spec.Auth; {
	case auth.SecretRef != nil:
		ref := auth.SecretRef
		id, err := creds.SecretKey(ctx, ref.AccessKeyID)
		if err != nil {
			return nil, err
		}
		secret, err := creds.SecretKey(ctx, ref.SecretAccessKey)
		if err != nil {
			return nil, err
		}
		var token []byte
		if ref.SessionToken != nil {
			if token, err = creds.SecretKey(ctx, *ref.SessionToken); err != nil {
				return nil, err
			}
		}
		cfg.Credentials = credentials.NewStaticCredentialsProvider(strings.TrimSpace(string(id)), strings.TrimSpace(string(secret)), strings.TrimSpace(string(token)))
		identity = "the access key in Secret " + secretName(store, ref.AccessKeyID)
	case auth.JWT != nil:
		sa := auth.JWT.ServiceAccountRef
		if len(sa.Audiences) == 0 {
			sa.Audiences = []string{STSAudience}
		}
		tokens := &serviceAccountTokens{creds: creds, sa: sa}
		// Requested now, so that a missing ServiceAccount fails the store
		// at once, and so that the credentials recorder knows the store
		// depends on it before the client is fingerprinted.
		if err := tokens.prefetch(ctx); err != nil {
			return nil, err
		}
		stsClient := newSTSClient(cfg, urls[1])
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewWebIdentityRoleProvider(stsClient, spec.Role, tokens, func(o *stscreds.WebIdentityRoleOptions) {
			o.RoleSessionName = sessionName(store)
		}))
		identity = "role " + spec.Role + " for the token of ServiceAccount " + serviceAccountName(store, sa)
	default:
		// validate allows this for ClusterSecretStores only: the
		// apiserver's own identity, from its environment (IRSA, instance
		// profile, ...), which the cluster administrator controls.
		//
		// The chain gets a client of the SDK's own type, which applies the
		// environment's AWS_CA_BUNDLE, but dialing through the allowlist
		// too: IMDS or the STS endpoint of IRSA must be allowed like any
		// other endpoint. The store's own endpoints keep Veil's TLS policy.
		chainHTTP := awshttp.NewBuildableClient().WithTimeout(time.Minute).WithTransportOptions(func(t *http.Transport) {
			t.DialContext, t.Proxy = env.DialContext, nil
		})
		def, err := awsconfig.LoadDefaultConfig(ctx,
			awsconfig.WithRegion(spec.Region),
			awsconfig.WithHTTPClient(chainHTTP),
			awsconfig.WithAPIOptions(apiOptions()),
			awsconfig.WithRetryer(newRetryer),
			awsconfig.WithLogger(logging.Nop{}))
		if err != nil {
			return nil, providers.Wrap(providers.Invalid, err, "%s: loading veil-apiserver's own AWS configuration", store)
		}
		cfg.Credentials = def.Credentials
		identity = "veil-apiserver's own AWS identity"
	}
	// Role chaining, as ESO: each of AdditionalRoles is assumed with the
	// credentials of the one before (the first with those of Auth), by a
	// plain AssumeRole; Role, when set, is assumed last, with ExternalID, the session
	// tags and TransitiveTagKeys. Every hop goes through the same STS
	// client settings (allowlisted dialer, TLS policy, timeouts, retryer)
	// and caches its own credentials, so a renewal of Role's credentials
	// calls STS again only for the hops whose credentials expired.
	for _, arn := range spec.AdditionalRoles {
		hop := stscreds.NewAssumeRoleProvider(newSTSClient(cfg, urls[1]), arn, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = sessionName(store)
		})
		cfg.Credentials = aws.NewCredentialsCache(hopProvider{arn: arn, provider: hop})
		identity = "role " + arn + " assumed with " + identity
	}
	if spec.Role != "" && spec.Auth.JWT == nil {
		stsClient := newSTSClient(cfg, urls[1])
		var provider aws.CredentialsProvider = stscreds.NewAssumeRoleProvider(stsClient, spec.Role, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = sessionName(store)
			if spec.ExternalID != "" {
				o.ExternalID = aws.String(spec.ExternalID)
			}
			o.Tags = sessionTags(store, spec.SessionTags)
			if len(spec.TransitiveTagKeys) > 0 {
				o.TransitiveTagKeys = append([]string(nil), spec.TransitiveTagKeys...)
			}
		})
		if len(spec.AdditionalRoles) > 0 {
			provider = hopProvider{arn: spec.Role, provider: provider}
		}
		cfg.Credentials = aws.NewCredentialsCache(provider)
		identity = "role " + spec.Role + " assumed with " + identity
	}

	b := base{store: store.String(), identity: identity, endpoint: urls[0].String(), prefix: spec.Prefix, transport: transport}
	endpoint := aws.String(urls[0].String())
	switch spec.Service {
	case configv1alpha1.AWSServiceCertificateManager:
		return newACMClient(b, cfg, endpoint), nil
	case configv1alpha1.AWSServiceSecretsManager:
		recovery := int64(0)
		force := false
		if sm := spec.SecretsManager; sm != nil {
			recovery, force = sm.RecoveryWindowInDays, sm.ForceDeleteWithoutRecovery
		}
		return &secretsManagerClient{base: b, recoveryWindowDays: recovery, forceDelete: force,
			api: secretsmanager.NewFromConfig(cfg, func(o *secretsmanager.Options) { o.BaseEndpoint = endpoint })}, nil
	}
	return &parameterStoreClient{base: b,
		api: ssm.NewFromConfig(cfg, func(o *ssm.Options) { o.BaseEndpoint = endpoint })}, nil
}

// newRetryer is the SDK's standard retryer, which backs off on throttling
// and transient failures (what still fails after it becomes Unavailable),
// except that an endpoint the allowlist refused is not tried again.
func newRetryer() aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		notAllowed := retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			var na *allowlist.NotAllowedError
			if errors.As(err, &na) {
				return aws.FalseTernary
			}
			return aws.UnknownTernary
		})
		o.Retryables = append([]retry.IsErrorRetryable{notAllowed}, o.Retryables...)
	})
}

// hopProvider names the role of a hop of a chain in the errors of its
// AssumeRole, so that a failure deep in the chain says which role STS
// refused. The ARN is configuration, not a secret.
type hopProvider struct {
	arn      string
	provider aws.CredentialsProvider
}

func (h hopProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	c, err := h.provider.Retrieve(ctx)
	if err != nil {
		return c, &hopError{arn: h.arn, err: err}
	}
	return c, nil
}

// hopError is the failure to assume one role of a chain.
type hopError struct {
	arn string
	err error
}

func (e *hopError) Error() string { return "assuming role " + e.arn + ": " + e.err.Error() }
func (e *hopError) Unwrap() error { return e.err }

// failedHop is the role of the innermost hop of a chain that failed: the
// hop STS refused, under the hops that needed its credentials.
func failedHop(err error) string {
	arn := ""
	var walk func(error)
	walk = func(e error) {
		for e != nil {
			if h, ok := e.(*hopError); ok {
				arn = h.arn
			}
			if m, ok := e.(interface{ Unwrap() []error }); ok {
				for _, x := range m.Unwrap() {
					walk(x)
				}
				return
			}
			e = errors.Unwrap(e)
		}
	}
	walk(err)
	return arn
}

func newSTSClient(cfg aws.Config, endpoint *url.URL) *sts.Client {
	return sts.NewFromConfig(cfg, func(o *sts.Options) { o.BaseEndpoint = aws.String(endpoint.String()) })
}

// sessionName names a role session after the store; CloudTrail shows it
// in every event of the session. STS allows 64 characters of [\w+=,.@-],
// which Kubernetes names always are.
func sessionName(store *providers.Store) string {
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

func sessionTags(store *providers.Store, extra []configv1alpha1.AWSTag) []ststypes.Tag {
	tags := []ststypes.Tag{{Key: aws.String(TagStoreKind), Value: aws.String(string(store.Kind))}}
	if store.Namespace != "" {
		tags = append(tags, ststypes.Tag{Key: aws.String(TagStoreNamespace), Value: aws.String(store.Namespace)})
	}
	tags = append(tags, ststypes.Tag{Key: aws.String(TagStoreName), Value: aws.String(store.Name)})
	for _, t := range extra {
		tags = append(tags, ststypes.Tag{Key: aws.String(t.Key), Value: aws.String(t.Value)})
	}
	return tags
}

// serviceAccountTokens hands the SDK's web identity provider a fresh
// ServiceAccount token whenever it renews the role's credentials.
type serviceAccountTokens struct {
	creds providers.Credentials
	sa    configv1alpha1.ServiceAccountSelector

	mu        sync.Mutex
	first     string
	firstTime time.Time
}

func (t *serviceAccountTokens) prefetch(ctx context.Context) error {
	token, err := t.creds.ServiceAccountToken(ctx, t.sa, webIdentityTokenSeconds)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.first, t.firstTime = token, time.Now()
	t.mu.Unlock()
	return nil
}

// GetIdentityToken is called by the SDK without a context, so it bounds
// its own TokenRequest. The prefetched token serves the first exchange if
// it is still fresh; it is never used twice.
func (t *serviceAccountTokens) GetIdentityToken() ([]byte, error) {
	t.mu.Lock()
	token, fresh := t.first, t.first != "" && time.Since(t.firstTime) < time.Minute
	t.first = ""
	t.mu.Unlock()
	if fresh {
		return []byte(token), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token, err := t.creds.ServiceAccountToken(ctx, t.sa, webIdentityTokenSeconds)
	if err != nil {
		return nil, err
	}
	return []byte(token), nil
}

func secretName(store *providers.Store, sel configv1alpha1.SecretKeySelector) string {
	ns := store.Namespace
	if sel.Namespace != nil && *sel.Namespace != "" {
		ns = *sel.Namespace
	}
	return ns + "/" + sel.Name
}

func serviceAccountName(store *providers.Store, sel configv1alpha1.ServiceAccountSelector) string {
	ns := store.Namespace
	if sel.Namespace != nil && *sel.Namespace != "" {
		ns = *sel.Namespace
	}
	return ns + "/" + sel.Name
}
