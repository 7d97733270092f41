package remote

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/veil-dev/veil/pkg/providers"
	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// codeOf is the gRPC code each reason travels as, so that a peer that
// ignores the detail still sees a fitting code.
var codeOf = map[providers.Reason]codes.Code{
	providers.NotFound:    codes.NotFound,
	providers.Forbidden:   codes.PermissionDenied,
	providers.Unavailable: codes.Unavailable,
	providers.Invalid:     codes.InvalidArgument,
	providers.Conflict:    codes.Aborted,
	providers.NotOwner:    codes.FailedPrecondition,
	providers.Throttled:   codes.ResourceExhausted,
}

// reasonOf is the reason of a status without a detail (one gRPC itself
// made: a deadline, a refused connection, a message over the size limit).
var reasonOf = map[codes.Code]providers.Reason{
	codes.NotFound:           providers.NotFound,
	codes.PermissionDenied:   providers.Forbidden,
	codes.Unauthenticated:    providers.Forbidden,
	codes.InvalidArgument:    providers.Invalid,
	codes.OutOfRange:         providers.Invalid,
	codes.Unimplemented:      providers.Invalid,
	codes.Aborted:            providers.Conflict,
	codes.FailedPrecondition: providers.NotOwner,
	// Without a detail, gRPC's own: a message over the size limit.
	codes.ResourceExhausted: providers.Invalid,
}

// toStatus is the provider side: err as a status with its reason. The
// message is the error's text, which (like every provider error) names
// keys and stores but never carries a value.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var pe *providers.Error
	if !errors.As(err, &pe) {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			pe = providers.Wrap(providers.Unavailable, err, "the call ran out of time in veil-provider")
		case errors.Is(err, context.Canceled):
			pe = providers.Wrap(providers.Unavailable, err, "the call was canceled")
		default:
			pe = providers.Wrap(providers.Unavailable, err, "veil-provider failed")
		}
	}
	st := status.New(codeOf[pe.Reason], pe.Error())
	withDetail, derr := st.WithDetails(&providerv1.ErrorDetail{Reason: string(pe.Reason), RetryAfterMillis: pe.RetryAfter.Milliseconds()})
	if derr != nil {
		return st.Err()
	}
	return withDetail.Err()
}

// fromStatus is the client side: a call's error as a provider error, with
// the reason the provider gave, or one that fits the status code. where
// names the provider in the message ("veil-provider at host:port").
func fromStatus(err error, where string) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return providers.Wrap(providers.Unavailable, err, "calling %s", where)
	}
	for _, d := range st.Details() {
		if detail, ok := d.(*providerv1.ErrorDetail); ok && known(providers.Reason(detail.Reason)) {
			return &providers.Error{Reason: providers.Reason(detail.Reason), Message: st.Message(),
				RetryAfter: time.Duration(detail.RetryAfterMillis) * time.Millisecond}
		}
	}
	reason, ok := reasonOf[st.Code()]
	if !ok {
		reason = providers.Unavailable
	}
	return providers.Errorf(reason, "%s: %s (%s)", where, st.Message(), st.Code())
}

func known(r providers.Reason) bool {
	_, ok := codeOf[r]
	return ok
}
