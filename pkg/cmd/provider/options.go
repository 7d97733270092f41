// Package provider holds veil-provider's command line: it serves one
// provider kind (vault, aws, fake) out of process, over the protocol of
// pkg/providers/remote, for the stores of its own configuration file.
// The binary (cmd/veil-provider) links the providers it may serve.
package provider

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/spf13/cobra"
	k8smetrics "k8s.io/component-base/metrics"
	"k8s.io/klog/v2"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/providers/remote"
)

// Options are veil-provider's flags.
type Options struct {
	Provider      string
	Listen        string
	CertFile      string
	KeyFile       string
	ClientCAFile  string
	AllowedClient string
	ConfigFile    string
	// AllowPlaintextBackends is --allow-plaintext-backends: stores of the
	// configuration may use http:// endpoints.
	AllowPlaintextBackends bool
	// MetricsListen is --metrics-listen: where to serve /metrics, if
	// anywhere.
	MetricsListen string

	// Listener and MetricsListener, when set, are served instead of
	// listening on Listen and MetricsListen (listeners handed over by the
	// process that started this one).
	Listener        net.Listener `json:"-"`
	MetricsListener net.Listener `json:"-"`
}

// Validate says every flag that is missing or wrong, at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Provider == "" {
		errs = append(errs, fmt.Errorf("--provider is required: one of %v", providers.Names()))
	} else if !slices.Contains(providers.Names(), o.Provider) {
		errs = append(errs, fmt.Errorf("--provider %q is not built into this veil-provider; it has %v", o.Provider, providers.Names()))
	}
	for _, f := range []struct{ flag, value string }{{"--tls-cert-file", o.CertFile}, {"--tls-private-key-file", o.KeyFile},
		{"--client-ca-file", o.ClientCAFile}, {"--allowed-client", o.AllowedClient}, {"--config", o.ConfigFile}} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("%s is required", f.flag))
		}
	}
	if o.Listener == nil && o.Listen == "" {
		errs = append(errs, errors.New("--listen is required"))
	}
	errs = append(errs, providers.ValidateOptions())
	return errors.Join(errs...)
}

// Run serves until ctx ends.
func (o *Options) Run(ctx context.Context) error {
	p, err := providers.For(specNaming(o.Provider))
	if err != nil {
		return err
	}
	creds, err := remote.ServerTLS(remote.TLSFiles{CertFile: o.CertFile, KeyFile: o.KeyFile, CAFile: o.ClientCAFile}, o.AllowedClient)
	if err != nil {
		return err
	}
	if err := providers.StartOptions(ctx, o.Provider); err != nil {
		return err
	}
	env := providers.Env{DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext, AllowPlaintext: o.AllowPlaintextBackends}
	srv, err := remote.NewServer(p, o.ConfigFile, env)
	if err != nil {
		return err
	}
	defer srv.Close(context.Background())
	if err := o.serveMetrics(ctx); err != nil {
		return err
	}
	lis := o.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", o.Listen); err != nil {
			return err
		}
	}
	klog.InfoS("Serving the provider protocol", "provider", o.Provider, "address", lis.Addr().String(), "allowedClient", o.AllowedClient, "config", o.ConfigFile)
	return remote.Serve(ctx, lis, srv, creds)
}

// serveMetrics serves the provider call metrics (veil_provider_calls_total
// and veil_provider_call_duration_seconds: provider, operation, result;
// veil_provider_throttled_total: calls refused over a store's limits;
// veil_vault_audit_entries_total and _connections_total, of
// --vault-audit-feed; never a store's key or value) on /metrics, when asked to, until ctx ends.
func (o *Options) serveMetrics(ctx context.Context) error {
	lis := o.MetricsListener
	if lis == nil {
		if o.MetricsListen == "" {
			return nil
		}
		var err error
		if lis, err = net.Listen("tcp", o.MetricsListen); err != nil {
			return err
		}
	}
	reg := k8smetrics.NewKubeRegistry()
	reg.MustRegister(metrics.ProviderCalls, metrics.ProviderCallDuration, metrics.ProviderThrottled, metrics.ProviderRequests,
		metrics.VaultAuditEntries, metrics.VaultAuditConnections)
	mux := http.NewServeMux()
	mux.Handle("/metrics", k8smetrics.HandlerFor(reg, k8smetrics.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	context.AfterFunc(ctx, func() { _ = hs.Close() })
	go func() {
		if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Serving metrics failed", "address", lis.Addr().String())
		}
	}()
	klog.InfoS("Serving metrics", "address", lis.Addr().String())
	return nil
}

// specNaming is a store spec whose provider block is name's, to look the
// provider up in the registry as a store would.
func specNaming(name string) *configv1alpha1.SecretStoreSpec {
	spec := &configv1alpha1.SecretStoreSpec{}
	switch name {
	case "vault":
		spec.Provider.Vault = &configv1alpha1.VaultProvider{}
	case "aws":
		spec.Provider.AWS = &configv1alpha1.AWSProvider{}
	case "fake":
		spec.Provider.Fake = &configv1alpha1.FakeProvider{}
	}
	return spec
}

// NewCommand is veil-provider's command, serving until ctx ends.
func NewCommand(ctx context.Context) *cobra.Command {
	o := &Options{Listen: ":8443"}
	cmd := &cobra.Command{
		Use:   "veil-provider",
		Short: "Serves one Veil provider out of process, over gRPC with mutual TLS",
		Long: "veil-provider serves the stores of its own configuration file to veil-apiserver over the\n" +
			"provider protocol (veil.provider.v1), reading their values with its own credentials.\n" +
			"It accepts only the client identity it is told to, and only the stores and keys its\n" +
			"configuration names; certificate and configuration files are read again when they change.",
		SilenceUsage: true,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	cmd.SetContext(ctx)
	fs := cmd.Flags()
	fs.StringVar(&o.Provider, "provider", o.Provider, "The provider kind to serve: vault, aws or fake.")
	fs.StringVar(&o.Listen, "listen", o.Listen, "The address to serve on.")
	fs.StringVar(&o.CertFile, "tls-cert-file", o.CertFile, "This provider's serving certificate (PEM, with its chain); read again when it changes.")
	fs.StringVar(&o.KeyFile, "tls-private-key-file", o.KeyFile, "The key of --tls-cert-file; read again when it changes.")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", o.ClientCAFile, "The CA bundle that signs veil-apiserver's client certificate; read again when it changes.")
	fs.StringVar(&o.AllowedClient, "allowed-client", o.AllowedClient,
		"The only client identity served: a URI SAN (spiffe://...) or a DNS SAN of the client certificate. The common name is not used.")
	fs.StringVar(&o.ConfigFile, "config", o.ConfigFile, "The stores served, with their backends, key prefixes, credentials and limits (YAML); read again when it changes.")
	fs.StringVar(&o.MetricsListen, "metrics-listen", o.MetricsListen,
		"Where to serve /metrics over plain HTTP (provider call counts, latencies and throttled calls; no key or value), e.g. 127.0.0.1:9090. Empty serves none.")
	// Flags of the linked providers (--vault-audit-feed).
	providers.AddOptionFlags(fs)
	fs.BoolVar(&o.AllowPlaintextBackends, "allow-plaintext-backends", o.AllowPlaintextBackends, "Allow stores with http:// backend endpoints. For local demos only.")
	gofs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(gofs)
	fs.AddGoFlagSet(gofs)
	return cmd
}
