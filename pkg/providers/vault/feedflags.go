package vault

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/spf13/pflag"

	"github.com/veil-dev/veil/pkg/providers"
)

func init() { providers.RegisterOptions(providerName, &feedOptions{}) }

// feedOptions are --vault-audit-feed and --vault-audit-sources.
type feedOptions struct {
	feeds   []string
	sources []string
	parsed  []AuditFeedConfig
}

func (o *feedOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&o.feeds, "vault-audit-feed", o.feeds,
		"SERVER_URL@LISTEN_ADDRESS, repeatable: follow changes to the KV v2 keys of stores on the Vault server SERVER_URL (as stores name it in spec.provider.vault.server) "+
			"by that server's socket audit device, which connects to LISTEN_ADDRESS (vault audit enable socket address=<this process>:<port> socket_type=tcp). "+
			"Change detection then asks Vault only about keys that were written. The socket device must not be the server's only audit device: Vault refuses requests while none of its audit devices can write. "+
			"Only the change detection leader uses what it receives; route the device to it (see the chart's vaultAuditFeeds).")
	fs.StringSliceVar(&o.sources, "vault-audit-sources", o.sources,
		"Addresses and CIDRs audit feed connections may come from (the Vault servers' addresses); others are closed. Required with --vault-audit-feed.")
}

func (o *feedOptions) Validate() error {
	o.parsed = nil
	if len(o.feeds) == 0 {
		if len(o.sources) > 0 {
			return errors.New("--vault-audit-sources is set without --vault-audit-feed")
		}
		return nil
	}
	var errs []error
	sources, err := ParseSources(o.sources)
	if err != nil {
		errs = append(errs, fmt.Errorf("--vault-audit-sources: %v", err))
	} else if len(sources) == 0 {
		errs = append(errs, errors.New("--vault-audit-feed needs --vault-audit-sources: the addresses the Vault servers connect from"))
	}
	seen := map[string]bool{}
	for _, s := range o.feeds {
		cfg, err := ParseAuditFeed(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("--vault-audit-feed: %v", err))
			continue
		}
		if seen[cfg.Server] {
			errs = append(errs, fmt.Errorf("--vault-audit-feed names %s twice", cfg.Server))
		}
		seen[cfg.Server] = true
		cfg.Sources = sources
		o.parsed = append(o.parsed, cfg)
	}
	return errors.Join(errs...)
}

func (o *feedOptions) Asked() bool { return len(o.feeds) > 0 || len(o.sources) > 0 }

func (o *feedOptions) Start(ctx context.Context) error {
	if len(o.parsed) == 0 {
		return nil
	}
	return StartAuditFeeds(ctx, o.parsed)
}

var _ providers.Leader = &feedOptions{}

// Follow turns connections away until this process leads.
func (o *feedOptions) Follow() { setFeedsLeading(false) }

// Lead takes connections while ctx lasts, then closes them, so that Vault
// reconnects to the next leader.
func (o *feedOptions) Lead(ctx context.Context) {
	setFeedsLeading(true)
	context.AfterFunc(ctx, func() { setFeedsLeading(false) })
}

// LeaderPorts are the feeds' ports, named vault-audit-0, -1, ... in the
// order of --vault-audit-feed.
func (o *feedOptions) LeaderPorts() []providers.NamedPort {
	var out []providers.NamedPort
	for i, cfg := range o.parsed {
		f := feedFor(cfg.Server)
		if f == nil {
			continue
		}
		if a, ok := f.lis.Addr().(*net.TCPAddr); ok {
			out = append(out, providers.NamedPort{Name: fmt.Sprintf("vault-audit-%d", i), Port: int32(a.Port)})
		}
	}
	return out
}
