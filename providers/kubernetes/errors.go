package kubeprovider

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// Reason is the protocol's error reason (ErrorDetail.reason).
type Reason string

// The reasons of veil.provider.v1's ErrorDetail.
const (
	NotFound    Reason = "NotFound"
	Forbidden   Reason = "Forbidden"
	Unavailable Reason = "Unavailable"
	Invalid     Reason = "Invalid"
	Throttled   Reason = "Throttled"
)

// codeOf is the gRPC code each reason travels as, so that a peer reading
// only the code still sees a fitting one.
var codeOf = map[Reason]codes.Code{
	NotFound:    codes.NotFound,
	Forbidden:   codes.PermissionDenied,
	Unavailable: codes.Unavailable,
	Invalid:     codes.InvalidArgument,
	Throttled:   codes.ResourceExhausted,
}

// Error is what every call fails with. Its message names stores, keys,
// Secrets and namespaces, never a value.
type Error struct {
	Reason     Reason
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

func errorf(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Message: fmt.Sprintf(format, args...)}
}

// status is err as a gRPC status carrying an ErrorDetail.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var pe *Error
	if !errors.As(err, &pe) {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			pe = errorf(Unavailable, "the call ran out of time in veil-provider-kubernetes")
		case errors.Is(err, context.Canceled):
			pe = errorf(Unavailable, "the call was canceled")
		default:
			pe = errorf(Unavailable, "veil-provider-kubernetes failed: %v", err)
		}
	}
	st := status.New(codeOf[pe.Reason], pe.Message)
	withDetail, derr := st.WithDetails(&providerv1.ErrorDetail{Reason: string(pe.Reason), RetryAfterMillis: pe.RetryAfter.Milliseconds()})
	if derr != nil {
		return st.Err()
	}
	return withDetail.Err()
}

// kubeError classifies an error of kube-apiserver for what: "reading
// Secret x in namespace y". The API's own message is not passed on: it
// names the provider's identity and resource, which the reason and the
// provider's log say better; transport errors are, as they name only the
// server.
func kubeError(err error, what, namespace string) *Error {
	switch {
	case apierrors.IsNotFound(err):
		return errorf(NotFound, "%s: it does not exist", what)
	case apierrors.IsForbidden(err):
		return errorf(Forbidden, "%s: kube-apiserver refused this provider's identity; grant it get, list and watch on secrets in namespace %q (the Role of deploy/rbac.yaml)", what, namespace)
	case apierrors.IsUnauthorized(err):
		return errorf(Forbidden, "%s: kube-apiserver did not accept this provider's credentials (its service account token or kubeconfig)", what)
	case apierrors.IsTooManyRequests(err):
		d := time.Second
		if s, ok := apierrors.SuggestsClientDelay(err); ok && s > 0 {
			d = time.Duration(s) * time.Second
		}
		return &Error{Reason: Throttled, RetryAfter: d, Message: fmt.Sprintf("%s: kube-apiserver is throttling this provider; retry in %s", what, d)}
	case apierrors.IsBadRequest(err), apierrors.IsInvalid(err):
		return errorf(Invalid, "%s: kube-apiserver refused the request as invalid (%s)", what, apierrors.ReasonForError(err))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errorf(Unavailable, "%s: %v", what, err)
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return errorf(Unavailable, "%s: kube-apiserver answered %d %s", what, se.Status().Code, se.Status().Reason)
	}
	return errorf(Unavailable, "%s: %v", what, err)
}
