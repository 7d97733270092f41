package kubeprovider

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// configCheck is how often an open stream checks that the configuration
// still serves its store as it did when the stream began.
const configCheck = 2 * time.Second

// WatchChanges streams the versions of the keys asked: first their
// initial state, one Change per key in the order asked (without a version
// for a key whose Secret does not exist), then a Change each time the
// version of one moves: the Secret was written, made, or deleted (a
// Change without a version). It watches the metadata of the source
// namespace's Secrets, so no value is ever read for it. When the watch
// ends (kube-apiserver's timeout, a compacted resourceVersion, a lost
// connection) it lists again and sends what moved meanwhile, so no change
// is lost. The stream ends when the client goes, or when the
// configuration stops serving the store as it did: Forbidden when it no
// longer serves it, Unavailable when it serves it otherwise (the client
// opens a stream again, whose initial state is the resync).
func (s *Server) WatchChanges(req *providerv1.WatchChangesRequest, stream grpc.ServerStreamingServer[providerv1.Change]) error {
	ctx := stream.Context()
	st, err := s.store(req.GetStore())
	if err != nil {
		return toStatus(err)
	}
	if !st.rate.TryAccept() {
		return toStatus(&Error{Reason: Throttled, RetryAfter: time.Second, Message: fmt.Sprintf("%s is over the calls per second veil-provider-kubernetes admits for it; retry in 1s", st.key)})
	}
	select {
	case st.watches <- struct{}{}:
		defer func() { <-st.watches }()
	default:
		return toStatus(&Error{Reason: Throttled, RetryAfter: 5 * time.Second,
			Message: fmt.Sprintf("%s has %d change streams open, all veil-provider-kubernetes admits for it", st.key, cap(st.watches))})
	}
	keys := req.GetKeys()
	if len(keys) > MaxWatchKeys {
		return toStatus(errorf(Invalid, "WatchChanges for %s names %d keys, more than the %d one stream watches; open more streams", st.key, len(keys), MaxWatchKeys))
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			return toStatus(errorf(Invalid, "WatchChanges for %s names key %q twice", st.key, k))
		}
		seen[k] = true
	}
	s.log.Debug("watch opened", "store", st.key.String(), "keys", len(keys))
	err = s.watch(ctx, st, keys, func(c *providerv1.Change) error { return stream.Send(c) })
	s.log.Debug("watch closed", "store", st.key.String(), "err", err)
	if ctx.Err() != nil {
		// The client went: nothing to tell it.
		return nil
	}
	return toStatus(err)
}

// watch runs until ctx ends or the store's configuration changes: it
// sends the initial state of keys, then a Change for each key whose
// version moves. A key that names no Secret never has a version.
func (s *Server) watch(ctx context.Context, st *served, keys []string, send func(*providerv1.Change) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	names := st.namesOf(keys)
	var last map[string]*providerv1.KeyVersion
	backoff := time.Second
	for {
		if err := s.stillServes(st); err != nil {
			return err
		}
		now, rv, err := st.versions(ctx, names)
		if err != nil {
			// Forbidden (the Role is missing) ends the watch for good;
			// Unavailable has the client open it again, and its initial
			// state is the resync.
			return err
		}
		if last == nil {
			// The initial state, in the order asked.
			for _, key := range keys {
				if err := send(&providerv1.Change{Key: key, Version: now[key]}); err != nil {
					return err
				}
			}
		} else {
			// What moved while no watch was open.
			for key, v := range now {
				if last[key].GetId() != v.GetId() {
					if err := send(&providerv1.Change{Key: key, Version: v}); err != nil {
						return err
					}
				}
			}
			for key := range last {
				if _, ok := now[key]; !ok {
					if err := send(&providerv1.Change{Key: key}); err != nil {
						return err
					}
				}
			}
		}
		last = now
		ended, err := s.follow(ctx, st, names, rv, last, send)
		if err != nil {
			return err
		}
		if ended {
			backoff = time.Second
		} else if !sleep(ctx, backoff) {
			return ctx.Err()
		} else {
			backoff = min(2*backoff, 30*time.Second)
		}
	}
}

// follow watches from rv, updating last and sending what moves. It
// returns when the watch ends (ended: it had run normally) or the
// configuration changes (an error).
func (s *Server) follow(ctx context.Context, st *served, names map[string]string, rv string, last map[string]*providerv1.KeyVersion, send func(*providerv1.Change) error) (ended bool, err error) {
	ns := st.cfg.Source.Namespace
	w, err := st.kube.metadata.Resource(secretsResource).Namespace(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Info("watching failed; listing again", "store", st.key.String(), "err", kubeError(err, "watching the Secrets of namespace "+ns, ns))
		}
		return false, nil
	}
	defer w.Stop()
	tick := time.NewTicker(configCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-tick.C:
			if err := s.stillServes(st); err != nil {
				return false, err
			}
		case ev, ok := <-w.ResultChan():
			if !ok {
				return true, nil
			}
			switch ev.Type {
			case watch.Error:
				// A compacted resourceVersion (410) or another end: list
				// again. The event's object is a Status; it is not logged
				// whole.
				s.log.Debug("watch ended with an error event; listing again", "store", st.key.String())
				return true, nil
			case watch.Bookmark:
				continue
			}
			m, ok := ev.Object.(metav1.Object)
			if !ok {
				continue
			}
			key, watched := names[m.GetName()]
			if !watched {
				continue
			}
			var c *providerv1.Change
			if ev.Type == watch.Deleted {
				if _, had := last[key]; had {
					delete(last, key)
					c = &providerv1.Change{Key: key}
				}
			} else if v := versionOf(m); last[key].GetId() != v {
				kv := &providerv1.KeyVersion{Id: v, ChangedUnixNano: changedOf(m)}
				last[key] = kv
				c = &providerv1.Change{Key: key, Version: kv}
			}
			if c != nil {
				if err := send(c); err != nil {
					return false, err
				}
			}
		}
	}
}

// stillServes refuses a stream whose store the configuration no longer
// serves as it did when the stream opened (removed, another source).
func (s *Server) stillServes(st *served) error {
	sc := s.config.current().store(st.key)
	if sc == nil {
		return errorf(Forbidden, "veil-provider-kubernetes no longer serves %s: its configuration changed", st.key)
	}
	if sc.fp != st.cfg.fp {
		return errorf(Unavailable, "the configuration of %s changed; watch again", st.key)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
