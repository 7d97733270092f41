package vault

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
)

// feedClient is the client of a KV v2 store on a server with an audit
// feed: it follows changes by the feed (providers.ChangeWatcher), so
// change detection asks Vault only about keys an entry says were written.
type feedClient struct {
	*client
	feed *auditFeed
	// namespace is spec.provider.vault.namespace, as entries name it.
	namespace string
}

var _ providers.ChangeWatcher = &feedClient{}

// WatchChanges reports the current version of each key, then the version
// of each key the feed says was written, as it is written. It proves first
// that the feed reaches this process for this store: the entry of a read
// of a key's metadata through this store must arrive after the watch
// began. It ends with an error when the feed may have lost an entry.
func (c *feedClient) WatchChanges(ctx context.Context, keys []string, changed func(providers.KeyChange) error) error {
	err := providers.CheckWatchKeys(keys)
	metrics.ObserveProviderCall(providerName, "watch", time.Now(), err)
	if err != nil {
		return err
	}
	// Keys as Vault names them, to the keys as asked.
	asked := make(map[string][]string, len(keys))
	clean := make(map[string]bool, len(keys))
	for _, k := range keys {
		if key, err := c.cleanKey(k); err == nil {
			asked[key] = append(asked[key], k)
			clean[key] = true
		}
	}
	sub, epoch, probed := c.feed.subscribe(c.namespace, c.mount, clean)
	defer c.feed.unsubscribe(sub)

	versions, read, err := c.initial(ctx, clean, epoch)
	if err != nil {
		return err
	}
	if read == 0 {
		// Every version was known: read one, for the probe.
		if err := c.probe(ctx, clean); err != nil {
			return err
		}
	}
	if err := c.awaitProbe(ctx, sub, probed); err != nil || ctx.Err() != nil {
		return err
	}

	for _, k := range keys {
		kc := providers.KeyChange{Key: k}
		if key, err := c.cleanKey(k); err == nil && versions[key] != nil {
			kc.Exists, kc.Version = true, versionOf(versions[key])
		}
		if err := changed(kc); err != nil {
			return err
		}
	}
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			// The feed still reaches this process.
			probed := c.feed.arm(sub)
			if err := c.probe(ctx, clean); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if err := c.awaitProbe(ctx, sub, probed); err != nil || ctx.Err() != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		case <-sub.done:
			return providers.Wrap(providers.Unavailable, sub.err, "%s: the audit feed of %s", c.store, c.server)
		case key := <-sub.changed:
			fk := feedKey{namespace: c.namespace, mount: c.mount, key: key}
			before := c.feed.touches(fk)
			meta, err := c.metadataAdmitted(ctx, key)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			c.feed.remember(fk, meta, epoch, before)
			for _, k := range asked[key] {
				kc := providers.KeyChange{Key: k}
				if meta != nil {
					kc.Exists, kc.Version = true, versionOf(meta)
				}
				if err := changed(kc); err != nil {
					return err
				}
			}
		}
	}
}

// metadataAdmitted reads key's metadata as one call within the budget
// ctx carries (the store's, as change detection's calls are).
func (c *feedClient) metadataAdmitted(ctx context.Context, key string) (*kvMetadata, error) {
	done, err := providers.AdmitCall(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	return c.metadata(ctx, key)
}

// probe reads the metadata of one key (the first, in order), whose entry
// proves the feed reaches this process.
func (c *feedClient) probe(ctx context.Context, keys map[string]bool) error {
	probe := "veil-audit-probe"
	for k := range keys {
		if probe == "veil-audit-probe" || k < probe {
			probe = k
		}
	}
	_, err := c.metadataAdmitted(ctx, probe)
	return err
}

// awaitProbe waits for the entry of a read made after probed was armed.
func (c *feedClient) awaitProbe(ctx context.Context, sub *feedSub, probed <-chan struct{}) error {
	t := time.NewTimer(probeWait)
	defer t.Stop()
	select {
	case <-probed:
		return nil
	case <-sub.done:
		return providers.Wrap(providers.Unavailable, sub.err, "%s: the audit feed of %s", c.store, c.server)
	case <-t.C:
		// The feed does not deliver: nothing it said to be current is.
		c.feed.fail(errors.New("a probe's entry did not arrive"))
		return providers.Errorf(providers.Unavailable, "%s: no entry from the audit feed of %s came for this process's own read within %s; check that Vault's socket audit device is enabled and connects to this process (the change detection leader), from an address --vault-audit-sources names", c.store, c.server, probeWait)
	case <-ctx.Done():
		return nil
	}
}

// initial reads the version of each key, but those the feed has seen no
// write of since they were read under epoch; read is how many it read.
func (c *feedClient) initial(ctx context.Context, keys map[string]bool, epoch uint64) (map[string]*kvMetadata, int, error) {
	var (
		mu   sync.Mutex
		out  = make(map[string]*kvMetadata, len(keys))
		read int
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelReads)
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		fk := feedKey{namespace: c.namespace, mount: c.mount, key: key}
		if meta, ok := c.feed.cached(fk, epoch); ok {
			// The reads started below write out too.
			mu.Lock()
			out[key] = meta
			mu.Unlock()
			continue
		}
		g.Go(func() error {
			before := c.feed.touches(fk)
			meta, err := c.metadataAdmitted(gctx, key)
			if err != nil {
				return err
			}
			c.feed.remember(fk, meta, epoch, before)
			mu.Lock()
			defer mu.Unlock()
			out[key] = meta
			read++
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, err
	}
	return out, read, nil
}

// versionOf is a key's version as Versions reports it.
func versionOf(meta *kvMetadata) providers.KeyVersion {
	return providers.KeyVersion{ID: strconv.Itoa(meta.version) + "/" + strconv.Itoa(meta.current), Changed: meta.updated}
}

// feedNamespace is a namespace as audit entries name it.
func feedNamespace(ns *string) string {
	if ns == nil {
		return ""
	}
	return strings.Trim(*ns, "/")
}
