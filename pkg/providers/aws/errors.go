package aws

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/veil-dev/veil/pkg/allowlist"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

// failure is what Veil makes of an error of the SDK.
type failure struct {
	reason providers.Reason
	// code is AWS's error code, when the response carried one it could
	// parse; status the HTTP status, 0 when there was no response.
	code      string
	status    int
	requestID string
	// service and op name the innermost call that failed: STS AssumeRole
	// when fetching credentials failed under a GetSecretValue.
	service, op string
	// hop is the role ARN of the hop of a role chain that failed, if any.
	hop string
}

var (
	notFoundCodes = map[string]bool{
		"ResourceNotFoundException": true,
		"ParameterNotFound":         true,
		"ParameterVersionNotFound":  true,
	}
	signatureCodes = map[string]bool{
		"SignatureDoesNotMatch":     true,
		"InvalidSignatureException": true,
		"IncompleteSignature":       true,
	}
	unknownKeyCodes = map[string]bool{
		"UnrecognizedClientException": true,
		"InvalidClientTokenId":        true,
		"MissingAuthenticationToken":  true,
		"AuthFailure":                 true,
	}
	expiredCodes = map[string]bool{
		"ExpiredTokenException": true,
		"ExpiredToken":          true,
	}
	deniedCodes = map[string]bool{
		"AccessDeniedException": true,
		"AccessDenied":          true,
		"InvalidIdentityToken":  true,
		"IDPRejectedClaim":      true,
		"DecryptionFailure":     true,
	}
)

// sensitiveOps send a value or a token. AWS validation messages may quote
// the input they reject, so errors of these carry the error code only.
var sensitiveOps = map[string]bool{
	"CreateSecret":              true,
	"PutSecretValue":            true,
	"PutParameter":              true,
	"ImportCertificate":         true,
	"ExportCertificate":         true,
	"AssumeRoleWithWebIdentity": true,
}

// throttled says whether AWS answered code to slow the caller down.
func throttled(code string) bool {
	_, ok := retry.DefaultThrottleErrorCodes[code]
	return ok
}

func classify(err error) failure {
	var f failure
	var oe *smithy.OperationError
	for cur := err; errors.As(cur, &oe); cur = oe.Err {
		f.service, f.op = oe.ServiceID, oe.OperationName
	}
	var ae smithy.APIError
	// UnknownError is what the SDK calls an error it could not parse.
	if errors.As(err, &ae) && ae.ErrorCode() != "UnknownError" {
		f.code = ae.ErrorCode()
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		f.status, f.requestID = re.HTTPStatusCode(), re.ServiceRequestID()
	}
	f.hop = failedHop(err)
	var na *allowlist.NotAllowedError
	switch {
	case errors.As(err, &na):
		f.reason = providers.Forbidden
	case notFoundCodes[f.code]:
		f.reason = providers.NotFound
	case signatureCodes[f.code], unknownKeyCodes[f.code], expiredCodes[f.code], deniedCodes[f.code],
		f.status == http.StatusUnauthorized, f.status == http.StatusForbidden:
		f.reason = providers.Forbidden
	case throttled(f.code), f.status == http.StatusTooManyRequests, f.status >= 500:
		f.reason = providers.Unavailable
	case f.status >= 400:
		f.reason = providers.Invalid
	default:
		// No response at all: a connection, a timeout, a cancelled request.
		f.reason = providers.Unavailable
	}
	return f
}

// cause is what of an SDK error may be shown: all of it, unless the call
// that failed carried a value or a token.
func (f failure) cause(err error) error {
	if !sensitiveOps[f.op] {
		return err
	}
	code := f.code
	if code == "" {
		code = http.StatusText(f.status)
	}
	return fmt.Errorf("%s %s failed: HTTP %d %s (request ID %s)", f.service, f.op, f.status, code, f.requestID)
}

// callError turns an SDK error into a *providers.Error that says what
// failed, for which store, and what to do about it. doing says what the
// call was for: `reading secret "db"`.
func (b *base) callError(err error, doing string) error {
	f := classify(err)
	cause := f.cause(err)
	var na *allowlist.NotAllowedError
	if errors.As(err, &na) {
		return providers.Wrap(providers.Forbidden, na, "%s: %s", b.store, doing)
	}
	switch f.reason {
	case providers.NotFound:
		return providers.Wrap(providers.NotFound, cause, "%s: %s: it does not exist", b.store, doing)
	case providers.Forbidden:
		return providers.Wrap(providers.Forbidden, cause, "%s: AWS refused %s %s: %s", b.store, b.identity, doing, f.hint())
	case providers.Invalid:
		return providers.Wrap(providers.Invalid, cause, "%s: AWS rejected the request %s", b.store, doing)
	}
	switch {
	case throttled(f.code) || f.status == http.StatusTooManyRequests:
		return providers.Wrap(providers.Unavailable, cause, "%s: AWS throttled %s, also after retries; retry later, or raise the account's API quota", b.store, doing)
	case f.status >= 500:
		return providers.Wrap(providers.Unavailable, cause, "%s: AWS failed %s (HTTP %d); retry later", b.store, doing, f.status)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return providers.Wrap(providers.Unavailable, cause, "%s: AWS at %s did not answer in time %s", b.store, b.endpoint, doing)
	}
	// The SDK marks a failure to get credentials only in its text.
	if strings.Contains(err.Error(), "get identity: ") {
		return providers.Wrap(providers.Unavailable, cause, "%s: could not get AWS credentials from %s %s", b.store, b.identity, doing)
	}
	return providers.Wrap(providers.Unavailable, cause, "%s: could not reach AWS at %s %s; check that it is up and reachable from veil-apiserver", b.store, b.endpoint, doing)
}

// hint says what to check when AWS refused a call.
func (f failure) hint() string {
	sts := f.service == "STS"
	switch {
	case signatureCodes[f.code]:
		return "the secret access key does not match the access key ID (" + f.code + "); fix the keys"
	case unknownKeyCodes[f.code]:
		return "AWS does not know the access key ID or session token (" + f.code + "); fix the keys"
	case expiredCodes[f.code]:
		return "the session token has expired (" + f.code + "); renew it"
	case f.code == "DecryptionFailure":
		return "the identity may not decrypt the value with its KMS key (" + f.code + "); grant kms:Decrypt"
	case sts && f.op == "AssumeRoleWithWebIdentity":
		return "STS refused to exchange the ServiceAccount token for the role (" + orStatus(f) + "); check the role's trust policy names the cluster's OIDC provider, the audience and the ServiceAccount"
	case sts && f.hop != "":
		return "STS refused " + f.op + " of role " + f.hop + " in the chain (" + orStatus(f) + "); check that role's trust policy allows the identity before it in the chain (and, for spec.provider.aws.role, sts:TagSession and the external ID)"
	case sts:
		return "STS refused " + f.op + " (" + orStatus(f) + "); check that the role's trust policy allows the identity, sts:TagSession and the external ID"
	case f.code != "":
		return "the identity is not allowed to " + f.op + " (" + f.code + "); allow it in its IAM policy"
	}
	return fmt.Sprintf("HTTP %d: the credentials are wrong, or the identity is not allowed to %s; check the keys and the IAM policy", f.status, f.op)
}

func orStatus(f failure) string {
	if f.code != "" {
		return f.code
	}
	return fmt.Sprintf("HTTP %d", f.status)
}

// apiOptions add to every SDK client Veil builds — Secrets Manager,
// Parameter Store and STS — a middleware that records each API call in
// veil_provider_calls_total under its operation name.
func apiOptions() []func(*middleware.Stack) error {
	return []func(*middleware.Stack) error{func(s *middleware.Stack) error {
		return s.Initialize.Add(middleware.InitializeMiddlewareFunc("VeilProviderCalls", observeCall), middleware.Before)
	}}
}

func observeCall(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	start := time.Now()
	out, md, err := next.HandleInitialize(ctx, in)
	var result error
	if err != nil {
		result = &providers.Error{Reason: classify(err).reason}
	}
	metrics.ObserveProviderCall("aws", middleware.GetOperationName(ctx), start, result)
	return out, md, err
}
