package remote

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// unimplemented is the status of a call the store's backend cannot serve
// at all: gRPC's code for it, with the reason Invalid for clients that
// read the detail.
func unimplemented(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	st := status.New(codes.Unimplemented, msg)
	if d, err := st.WithDetails(&providerv1.ErrorDetail{Reason: string(providers.Invalid)}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// WatchChanges serves a change stream from a backend that detects changes
// itself (providers.ChangeWatcher), for a configured store and keys under
// its prefixes only, with at most Limits.Streams streams open per store.
// The stream follows the store's configuration: when its configuration or
// credential files change, the backend's watch starts again on the new
// client and only the keys whose version differs from what was sent are
// sent; when the store or a key stops being served, the stream ends with
// PermissionDenied.
func (s *Server) WatchChanges(req *providerv1.WatchChangesRequest, stream providerv1.Provider_WatchChangesServer) (err error) {
	ctx := stream.Context()
	ref, keys := req.GetStore(), req.GetKeys()
	defer func() {
		if err != nil && ctx.Err() == nil {
			klog.V(2).InfoS("Provider call failed", "method", "WatchChanges", "store", keyOf(ref).String(), "err", err)
		}
	}()
	st, err := s.store(ctx, ref)
	if err != nil {
		return toStatus(err)
	}
	if _, ok := st.client.(providers.ChangeWatcher); !ok {
		return unimplemented("%s does not detect changes itself with the %s provider: ask for Versions (Capabilities.versions) instead", st.key, s.provider.Name())
	}
	if err := checkWatch(st, keys); err != nil {
		return toStatus(err)
	}
	release, err := st.admit()
	if err != nil {
		return toStatus(err)
	}
	// Opening a stream is a call within the store's rate; a stream open
	// takes no call slot, but one of the store's stream slots.
	release()
	closeStream, err := s.openStream(st)
	if err != nil {
		return toStatus(err)
	}
	defer closeStream()

	watched := make(map[string]bool, len(keys))
	for _, k := range keys {
		watched[k] = true
	}
	sent := make(map[string]*providerv1.KeyVersion, len(keys))
	initial := len(keys)
	// synced is closed once the first initial state is sent: the store's
	// client is not replaced in the middle of it.
	synced := make(chan struct{})
	if initial == 0 {
		close(synced)
	}
	send := func(kc providers.KeyChange) error {
		var v *providerv1.KeyVersion
		if kc.Exists {
			v = versionToProto(kc.Version)
		}
		if !watched[kc.Key] {
			return providers.Errorf(providers.Unavailable, "the %s provider reported a change of a key the stream of %s does not watch", s.provider.Name(), st.key)
		}
		if initial > 0 {
			// The first initial state goes out whole: it is the client's.
			if initial--; initial == 0 {
				defer close(synced)
			}
		} else if last, known := sent[kc.Key]; known && sameVersion(last, v) {
			return nil
		}
		sent[kc.Key] = v
		return stream.Send(&providerv1.Change{Key: kc.Key, Version: v})
	}
	for {
		next, err := s.watchOnce(ctx, st, keys, synced, send)
		if ctx.Err() != nil {
			return toStatus(providers.Errorf(providers.Unavailable, "the change stream of %s ended: veil-provider is stopping, or its client left", st.key))
		}
		if err != nil {
			return toStatus(err)
		}
		// The store's client was replaced: watch on with the new one,
		// whose initial state is compared with what was sent.
		if err := checkWatch(next, keys); err != nil {
			return toStatus(err)
		}
		if _, ok := next.client.(providers.ChangeWatcher); !ok {
			return unimplemented("%s no longer detects changes itself as configured now", next.key)
		}
		st = next
	}
}

// watchOnce runs the backend's watch on st's client until ctx ends, the
// backend fails, or the store's client is replaced (returned, with no
// error) because its configuration or credentials changed; it looks for
// that once synced is closed.
func (s *Server) watchOnce(ctx context.Context, st *served, keys []string, synced <-chan struct{}, send func(providers.KeyChange) error) (*served, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    *served
		lookErr error
		looked  = make(chan struct{})
	)
	go func() {
		defer close(looked)
		select {
		case <-wctx.Done():
			return
		case <-synced:
		}
		t := time.NewTicker(s.recheck)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			cur, err := s.store(wctx, &providerv1.StoreRef{Kind: st.key.kind, Namespace: st.key.namespace, Name: st.key.name})
			if wctx.Err() != nil {
				return
			}
			if err != nil || cur != st {
				next, lookErr = cur, err
				cancel()
				return
			}
		}
	}()
	// The watch's own calls go through the store's rate and call slots,
	// waiting for them rather than ending the watch.
	err := st.client.(providers.ChangeWatcher).WatchChanges(providers.WithAdmit(wctx, providers.Waiting(wctx, st.admit)), keys, send)
	cancel()
	<-looked
	switch {
	case ctx.Err() != nil:
		return nil, nil
	case lookErr != nil:
		return nil, lookErr
	case next != nil:
		return next, nil
	case err != nil:
		return nil, err
	}
	// The backend ended its watch with ctx still running: its contract
	// says it does not.
	return nil, providers.Errorf(providers.Unavailable, "the %s provider ended the change stream of %s", s.provider.Name(), st.key)
}

// checkWatch refuses the keys of a watch the store does not serve, before
// any is watched.
func checkWatch(st *served, keys []string) error {
	if err := providers.CheckWatchKeys(keys); err != nil {
		return err
	}
	for _, k := range keys {
		if err := st.checkKey(k); err != nil {
			return err
		}
	}
	return nil
}

// openStream takes one of st's stream slots; the returned func gives it
// back. Slots are counted by store, not by client, so a client rebuilt
// under open streams keeps them counted.
func (s *Server) openStream(st *served) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.streams[st.key]; n >= st.limits.Streams {
		metrics.ProviderThrottled.WithLabelValues(st.key.kind, "store", "streams").Inc()
		return nil, &providers.Error{Reason: providers.Throttled, RetryAfter: time.Second,
			Message: fmt.Sprintf("%s has %d change streams open, all this veil-provider admits for it", st.key, n)}
	}
	s.streams[st.key]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.streams[st.key]--; s.streams[st.key] <= 0 {
			delete(s.streams, st.key)
		}
	}, nil
}

func sameVersion(a, b *providerv1.KeyVersion) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.GetId() == b.GetId() && a.GetScope() == b.GetScope() && a.GetChangedUnixNano() == b.GetChangedUnixNano()
}
