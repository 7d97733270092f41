package providers

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Waiting waits out Throttled answers, passes any other on, and stops
// when its context ends.
func TestWaiting(t *testing.T) {
	calls := 0
	throttledTwice := func() (func(), error) {
		calls++
		if calls <= 2 {
			return nil, &Error{Reason: Throttled, RetryAfter: time.Millisecond}
		}
		return func() {}, nil
	}
	if done, err := Waiting(context.Background(), throttledTwice)(); err != nil || done == nil || calls != 3 {
		t.Fatalf("after two refusals: done %v, err %v, %d calls; want admitted on the third", done != nil, err, calls)
	}

	other := errors.New("not a throttle")
	if _, err := Waiting(context.Background(), func() (func(), error) { return nil, other })(); !errors.Is(err, other) {
		t.Fatalf("another error came back as %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	always := func() (func(), error) { return nil, &Error{Reason: Throttled, RetryAfter: time.Hour} }
	if _, err := Waiting(ctx, always)(); !errors.Is(err, context.Canceled) {
		t.Fatalf("with its context ended: %v", err)
	}
}

// AdmitCall admits through the Admit a context carries, and always
// without one.
func TestAdmitCall(t *testing.T) {
	if done, err := AdmitCall(context.Background()); err != nil || done == nil {
		t.Fatalf("without an Admit: %v", err)
	}
	refused := errors.New("refused")
	ctx := WithAdmit(context.Background(), func() (func(), error) { return nil, refused })
	if _, err := AdmitCall(ctx); !errors.Is(err, refused) {
		t.Fatalf("with a refusing Admit: %v", err)
	}
}
