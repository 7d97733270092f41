// Package registry holds what the REST storages of veil-apiserver's
// resources (externalsecretvalue, secretpush) share: the typed Kubernetes
// API errors that provider errors become.
package registry

import (
	"errors"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"

	"github.com/veil-dev/veil/pkg/providers"
)

// APIError turns an error of resolution into the Kubernetes API error of the
// object being served (resource gr, name): NotFound 404, Forbidden 403,
// Invalid 422, Conflict 409, Throttled 429 with Retry-After, Unavailable 503. The message is the provider
// error's, which says what to fix and carries no value; anything that is not
// a provider error is logged and answered as a bare 500.
func APIError(gr schema.GroupResource, name string, err error) error {
	if _, ok := err.(apierrors.APIStatus); ok {
		return err
	}
	var pe *providers.Error
	if !errors.As(err, &pe) {
		klog.ErrorS(err, "Unexpected error resolving values", "resource", gr.String(), "name", name)
		return apierrors.NewInternalError(errors.New("unexpected error; see veil-apiserver's log"))
	}
	msg := pe.Error()
	switch pe.Reason {
	case providers.NotFound:
		se := apierrors.NewNotFound(gr, name)
		se.ErrStatus.Message = msg
		return se
	case providers.Forbidden:
		return apierrors.NewForbidden(gr, name, errors.New(msg))
	case providers.Invalid:
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
			Details: &metav1.StatusDetails{Group: gr.Group, Kind: gr.Resource, Name: name},
			Message: msg,
		}}
	case providers.Conflict:
		return apierrors.NewConflict(gr, name, errors.New(msg))
	case providers.Throttled:
		// The generic apiserver sends RetryAfterSeconds as Retry-After.
		return apierrors.NewTooManyRequests(msg, int(max(pe.RetryAfter, time.Second)/time.Second))
	default:
		return apierrors.NewServiceUnavailable(msg)
	}
}
