package providers

import (
	"errors"
	"fmt"
	"time"
)

// Reason classifies a provider failure; veil-apiserver turns it into the
// matching Kubernetes API error.
type Reason string

const (
	// NotFound: the remote key, version or property does not exist.
	NotFound Reason = "NotFound"
	// Forbidden: the provider refused the store's identity.
	Forbidden Reason = "Forbidden"
	// Unavailable: the provider could not be reached or failed; retrying may help.
	Unavailable Reason = "Unavailable"
	// Invalid: the store or the request cannot work as written.
	Invalid Reason = "Invalid"
	// Conflict: a write lost a race (check-and-set) or would overwrite a
	// value Veil does not manage.
	Conflict Reason = "Conflict"
	// NotOwner: the remote key is held by another PushSecret (a push or a
	// delete), or, for a delete, is not Veil's at all. It does not change
	// by retrying.
	NotOwner Reason = "NotOwner"
	// Throttled: the call was not made, because the store, or the calling
	// namespace's share of it, is over its limits; retry after RetryAfter.
	Throttled Reason = "Throttled"
)

// Error is a provider failure. Message says what to fix; like every error in
// Veil it names keys and stores but never carries a secret value.
type Error struct {
	Reason  Reason
	Message string
	// Err is the underlying cause, for logs; it must not carry values.
	Err error
	// RetryAfter is when a Throttled call may be tried again.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given reason.
func Errorf(reason Reason, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error of the given reason around a cause.
func Wrap(reason Reason, err error, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...), Err: err}
}

// ReasonOf returns the reason of a provider error, Unavailable for others.
func ReasonOf(err error) Reason {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return Unavailable
}

// Within puts the name of the object being served in front of a provider
// error's message ("ExternalSecret app/db: key ... does not exist"),
// keeping its reason. Other errors are returned as they are.
func Within(err error, format string, args ...any) error {
	var pe *Error
	if !errors.As(err, &pe) {
		return err
	}
	return &Error{Reason: pe.Reason, Message: fmt.Sprintf(format, args...) + ": " + pe.Message, Err: pe.Err, RetryAfter: pe.RetryAfter}
}
