package remote

import (
	"context"
	"errors"
	"time"

	"k8s.io/klog/v2"

	"github.com/veil-dev/veil/pkg/providers"
	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// watchBackoff is how long a client waits before it opens a change stream
// again after one failed: initial, doubling up to max, and back to
// initial once a stream delivered its initial state. A Throttled error's
// retry time is waited if longer, up to max.
var watchBackoff = struct{ initial, max time.Duration }{500 * time.Millisecond, 30 * time.Second}

// callbackError carries the error of the caller's changed func, which
// ends the watch as it is.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

// watchChanges is providers.ChangeWatcher over WatchChanges. A stream that
// fails for a reason that may pass (Unavailable: the connection was lost,
// the provider restarted or its connection reached its maximum age;
// Throttled) is opened again after a bounded backoff. The new stream's
// initial state is the resync: it is compared with the versions last
// delivered, and only the keys that differ are delivered, so a change
// made while no stream was open is reported once and none is missed.
// Other reasons (Forbidden, Invalid, NotFound...) end the watch with the
// error: the caller looks in another way, or later.
func (c *client) watchChanges(ctx context.Context, keys []string, changed func(providers.KeyChange) error) error {
	if err := providers.CheckWatchKeys(keys); err != nil {
		return err
	}
	// last is what was delivered; nil until the first initial state is.
	var last map[string]providers.KeyChange
	delay := watchBackoff.initial
	for {
		synced, err := c.watchStream(ctx, keys, &last, changed)
		if ctx.Err() != nil {
			return nil
		}
		var cbErr *callbackError
		if errors.As(err, &cbErr) {
			return cbErr.err
		}
		if r := providers.ReasonOf(err); r != providers.Unavailable && r != providers.Throttled {
			return err
		}
		if synced {
			delay = watchBackoff.initial
		}
		wait := delay
		var pe *providers.Error
		if errors.As(err, &pe) && pe.RetryAfter > wait {
			wait = min(pe.RetryAfter, watchBackoff.max)
		}
		klog.V(2).InfoS("Change stream interrupted; opening it again", "provider", c.where, "store", keyOf(c.ref).String(), "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, watchBackoff.max)
	}
}

// watchStream runs one stream until it fails or ctx ends. synced says
// whether its initial state arrived.
func (c *client) watchStream(ctx context.Context, keys []string, last *map[string]providers.KeyChange, changed func(providers.KeyChange) error) (synced bool, _ error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.WatchChanges(ctx, &providerv1.WatchChangesRequest{Store: c.ref, Keys: keys})
	if err != nil {
		return false, fromStatus(err, c.where)
	}
	deliver := func(kc providers.KeyChange) error {
		(*last)[kc.Key] = kc
		if err := changed(kc); err != nil {
			return &callbackError{err}
		}
		return nil
	}

	// The initial state, whole, before anything is delivered: a stream
	// that fails within it delivers nothing.
	initial := make([]providers.KeyChange, 0, len(keys))
	for len(initial) < len(keys) {
		m, err := stream.Recv()
		if err != nil {
			return false, fromStatus(err, c.where)
		}
		if m.GetKey() != keys[len(initial)] {
			return false, providers.Errorf(providers.Invalid, "%s sent an initial state that is not one change a key in the order asked (key %d of %d)", c.where, len(initial)+1, len(keys))
		}
		initial = append(initial, changeOf(m))
	}
	first := *last == nil
	if first {
		*last = make(map[string]providers.KeyChange, len(keys))
	}
	for _, kc := range initial {
		if prev, ok := (*last)[kc.Key]; first || !ok || !sameChange(prev, kc) {
			if err := deliver(kc); err != nil {
				return true, err
			}
		}
	}
	watched := make(map[string]bool, len(keys))
	for _, k := range keys {
		watched[k] = true
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return true, fromStatus(err, c.where)
		}
		if !watched[m.GetKey()] {
			return true, providers.Errorf(providers.Invalid, "%s sent a change of a key the stream does not watch", c.where)
		}
		kc := changeOf(m)
		if prev := (*last)[kc.Key]; sameChange(prev, kc) {
			continue
		}
		if err := deliver(kc); err != nil {
			return true, err
		}
	}
}

func changeOf(m *providerv1.Change) providers.KeyChange {
	kc := providers.KeyChange{Key: m.GetKey()}
	if v := m.GetVersion(); v != nil {
		kc.Exists, kc.Version = true, versionFromProto(v)
	}
	return kc
}

func sameChange(a, b providers.KeyChange) bool {
	return a.Exists == b.Exists && a.Version.ID == b.Version.ID && a.Version.Scope == b.Version.Scope && a.Version.Changed.Equal(b.Version.Changed)
}
