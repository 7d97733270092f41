// Package server holds veil-apiserver's command line: options, their
// validation, and the configuration they produce.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/veil-dev/veil/pkg/allowlist"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apiserver"
	valuecache "github.com/veil-dev/veil/pkg/cache"
	"github.com/veil-dev/veil/pkg/changes"
	"github.com/veil-dev/veil/pkg/cmd/logcap"
	"github.com/veil-dev/veil/pkg/credentials"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	configinformers "github.com/veil-dev/veil/pkg/generated/informers/externalversions"
	generatedopenapi "github.com/veil-dev/veil/pkg/generated/openapi"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/push"
	"github.com/veil-dev/veil/pkg/registry/externalsecretvalue"
	"github.com/veil-dev/veil/pkg/resolve"
	"github.com/veil-dev/veil/pkg/stores"
	"github.com/veil-dev/veil/pkg/stores/remotes"
	"github.com/veil-dev/veil/pkg/storestatus"
	"github.com/veil-dev/veil/pkg/throttle"

	// Providers built into veil-apiserver.
	_ "github.com/veil-dev/veil/pkg/providers/aws"
	_ "github.com/veil-dev/veil/pkg/providers/fake"
	_ "github.com/veil-dev/veil/pkg/providers/vault"
)

// Options are veil-apiserver's flags. They are the generic server's
// recommended options minus etcd (nothing is stored) and admission (nothing
// is written), plus Veil's own.
type Options struct {
	SecureServing  *genericoptions.SecureServingOptionsWithLoopback
	Authentication *genericoptions.DelegatingAuthenticationOptions
	Authorization  *genericoptions.DelegatingAuthorizationOptions
	Audit          *genericoptions.AuditOptions
	Features       *genericoptions.FeatureOptions
	// CoreAPI is the kubeconfig for reading ExternalSecrets, stores,
	// namespaces and credentials (in-cluster config when unset).
	CoreAPI *genericoptions.CoreAPIOptions

	AllowedProviderEndpoints []string
	AllowPlaintextProviders  bool
	// InProcessProviders serves stores whose provider runs in
	// veil-apiserver's process (spec.provider.vault, .aws, .fake). Off,
	// only stores naming a ProviderRegistration are served, and
	// veil-apiserver never reads a credential or requests a token.
	InProcessProviders bool
	// ProviderClientCertFile and ProviderClientKeyFile are veil-apiserver's
	// client certificate towards provider processes (ProviderRegistrations).
	ProviderClientCertFile string
	ProviderClientKeyFile  string
	// AllowDirectBearerTokens accepts bearer tokens sent straight to
	// veil-apiserver, checked with a TokenReview.
	AllowDirectBearerTokens bool
	CredentialCacheTTL      time.Duration

	// The value cache; see pkg/cache.
	CacheMaxBytes          resource.QuantityValue
	CacheMaxTTL            time.Duration
	CacheKeyRotation       time.Duration
	DefaultRefreshInterval time.Duration
	NegativeCacheTTL       time.Duration
	MaxStale               time.Duration
	MinRefreshInterval     time.Duration

	// ProviderLimits bound the calls to each store's provider; see
	// pkg/throttle.
	ProviderLimits throttle.Limits
	// ReadLimits bound the reads of values veil-apiserver answers for each
	// namespace; see throttle.Reads.
	ReadLimits throttle.ReadLimits
	// MaxWatchesPerNamespace bounds the watches of values open at once in
	// one namespace.
	MaxWatchesPerNamespace int

	// ChangeDetectionInterval is how often the replica holding the Lease
	// asks providers which values changed; 0 turns detection off.
	ChangeDetectionInterval time.Duration
	// ChangeDetectionCallsPerStore bounds one cycle's provider calls
	// through one store.
	ChangeDetectionCallsPerStore int
	// LeaderEndpointSlice and LeaderAddress: the EndpointSlice the change
	// detection leader points at itself, with the ports of provider work
	// only the leader does (Vault audit feeds).
	LeaderEndpointSlice string
	LeaderAddress       string
	// Namespace holds the Lease (veil-apiserver's own namespace).
	Namespace string
	// Identity is this replica's name in the Lease.
	Identity string
	// KubeAPIQPS and KubeAPIBurst bound veil-apiserver's own requests to
	// kube-apiserver (credential reads, status writes, informers).
	KubeAPIQPS   float32
	KubeAPIBurst int
	// ShutdownDelayDuration keeps serving after SIGTERM while /readyz
	// fails, so the Service drops this replica before it stops.
	ShutdownDelayDuration time.Duration
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	o := &Options{
		SecureServing:      genericoptions.NewSecureServingOptions().WithLoopback(),
		Authentication:     genericoptions.NewDelegatingAuthenticationOptions(),
		Authorization:      genericoptions.NewDelegatingAuthorizationOptions(),
		Audit:              genericoptions.NewAuditOptions(),
		Features:           genericoptions.NewFeatureOptions(),
		CoreAPI:            genericoptions.NewCoreAPIOptions(),
		CredentialCacheTTL: 10 * time.Second,
		InProcessProviders: true,
		// 64Mi holds tens of thousands of typical secrets.
		CacheMaxBytes:          resource.QuantityValue{Quantity: resource.MustParse("64Mi")},
		CacheMaxTTL:            24 * time.Hour,
		CacheKeyRotation:       24 * time.Hour,
		DefaultRefreshInterval: time.Hour,
		NegativeCacheTTL:       10 * time.Second,
		MinRefreshInterval:     10 * time.Second,
		// Rotation reaches readers within seconds (P7: p50 is about half
		// the interval plus a second); a cycle costs each store one call
		// a key (Vault) or one per ten or fifty keys (AWS).
		ChangeDetectionInterval: 5 * time.Second,
		// At most 10 calls a second through a store, a tenth of its
		// default budget (100/s): detection never crowds out reads.
		ChangeDetectionCallsPerStore: 50,
		KubeAPIQPS:                   50,
		KubeAPIBurst:                 100,
		Namespace:                    "veil-system",
		// Well above what one namespace's reads need once the cache is
		// warm, well below what makes a provider throttle everyone.
		ProviderLimits: throttle.Limits{QPS: 100, Burst: 200, MaxInFlight: 32, NamespaceShare: 0.5},
		// A namespace's first sync of a thousand ExternalSecrets fits in
		// the burst; a namespace reading in a loop gets a few hundred small
		// values a second, or a few MiB of large ones.
		ReadLimits:             throttle.ReadLimits{CostPerSecond: 200, Burst: 1000},
		MaxWatchesPerNamespace: externalsecretvalue.DefaultMaxWatchesPerNamespace,
	}
	o.SecureServing.BindPort = 8443
	// kube-apiserver multiplexes many users' requests over few HTTP/2
	// connections to an aggregated server.
	o.SecureServing.HTTP2MaxStreamsPerConnection = 1000
	// kube-apiserver already applied priority and fairness to every request
	// it proxies here; a second layer would need Veil to watch flow schemas
	// and would queue requests twice.
	o.Features.EnablePriorityAndFairness = false
	// Delegated authentication must not silently fall back to anonymous
	// when it cannot read the front-proxy CA.
	o.Authentication.TolerateInClusterLookupFailure = false
	return o
}

// NewCommand returns the veil-apiserver command.
func NewCommand(ctx context.Context) *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "veil-apiserver",
		Short: "Serves external secrets through the Kubernetes API without storing them",
		Long: "veil-apiserver is an aggregated API server: kube-apiserver proxies requests for\n" +
			"externalsecrets.veil.dev to it, and it answers them by reading values from the\n" +
			"providers named by SecretStores and ClusterSecretStores.",
		SilenceUsage: true,
		RunE: func(c *cobra.Command, _ []string) error {
			// Request and response bodies are credentials, tokens and
			// values.
			if err := logcap.Apply(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	cmd.SetContext(ctx)
	fs := cmd.Flags()
	o.SecureServing.AddFlags(fs)
	o.Authentication.AddFlags(fs)
	o.Authorization.AddFlags(fs)
	// --feature-gates: the generic server's, WatchList among them.
	utilfeature.DefaultMutableFeatureGate.AddFlag(fs)
	o.Audit.AddFlags(fs)
	o.Features.AddFlags(fs)
	o.CoreAPI.AddFlags(fs)
	fs.StringSliceVar(&o.AllowedProviderEndpoints, "allowed-provider-endpoints", o.AllowedProviderEndpoints,
		"Provider endpoints stores may use: host names, *.suffix patterns, IP addresses and CIDRs (CIDRs match IP-literal endpoints only). "+
			"Empty allows any host. Whatever the list, a host is refused when it resolves to a link-local or metadata address (169.254.0.0/16, fe80::/10, fd00:ec2::254, ...) "+
			"that no IP or CIDR entry lists, and, for a SecretStore, to a loopback or private address unless the list names the host.")
	fs.BoolVar(&o.AllowDirectBearerTokens, "allow-direct-bearer-tokens", o.AllowDirectBearerTokens,
		"Accept bearer tokens sent straight to veil-apiserver's port, checked with a TokenReview, for a faster read path. "+
			"Such requests bypass kube-apiserver's API Priority and Fairness and its audit log (veil-apiserver's own audit log still records them). "+
			"Off, only requests proxied by kube-apiserver (front-proxy client certificate) and client certificates are authenticated.")
	// Flags of the providers linked in process (--vault-audit-feed).
	providers.AddOptionFlags(fs)
	fs.BoolVar(&o.AllowPlaintextProviders, "allow-plaintext-providers", o.AllowPlaintextProviders,
		"Allow stores with http:// endpoints. For local demos only: values and tokens then cross the network unencrypted.")
	fs.BoolVar(&o.InProcessProviders, "in-process-providers", o.InProcessProviders,
		"Serve stores whose provider runs in veil-apiserver's process (spec.provider.vault, .aws, .fake), for which veil-apiserver reads credential Secrets and ConfigMaps and requests ServiceAccount tokens. "+
			"false: serve only stores that name a ProviderRegistration (spec.provider.remote.registration); others are refused (422) before any credential read, token request or provider call, "+
			"so veil-apiserver needs no RBAC on Secrets, ConfigMaps or serviceaccounts/token (omit the veil-apiserver:provider-credentials ClusterRoleBinding).")
	fs.StringVar(&o.ProviderClientCertFile, "provider-client-cert-file", o.ProviderClientCertFile,
		"PEM certificate (with its chain) veil-apiserver presents to provider processes (veil-provider) that ProviderRegistrations name; read again when it changes. "+
			"Without it, stores that name a ProviderRegistration cannot be read.")
	fs.StringVar(&o.ProviderClientKeyFile, "provider-client-key-file", o.ProviderClientKeyFile,
		"PEM private key of --provider-client-cert-file; read again when it changes.")
	fs.DurationVar(&o.CredentialCacheTTL, "credential-cache-ttl", o.CredentialCacheTTL,
		"How long a credential Secret read for a store is reused; a rotated credential takes effect within this time.")
	fs.Var(&o.CacheMaxBytes, "cache-max-bytes",
		"Memory the value cache may use for sealed values and their bookkeeping, as a quantity (64Mi, 1Gi); the least used values are evicted beyond it.")
	fs.DurationVar(&o.CacheMaxTTL, "cache-max-ttl", o.CacheMaxTTL,
		"Longest time a cached value is served: a refresh interval above it is treated as this, and values expire after the longest refresh interval in use up to this.")
	fs.DurationVar(&o.CacheKeyRotation, "cache-key-rotation", o.CacheKeyRotation,
		"How often the in-memory key that seals cached values is replaced; values sealed under the previous key are read again from their providers.")
	fs.DurationVar(&o.DefaultRefreshInterval, "default-refresh-interval", o.DefaultRefreshInterval,
		"How old a value served for an ExternalSecret may be when neither its spec.refreshInterval nor its store's spec.defaultRefreshInterval is set.")
	fs.DurationVar(&o.MinRefreshInterval, "min-refresh-interval", o.MinRefreshInterval,
		"The shortest refresh interval in effect: a value is never read from its provider again sooner than this, whatever an ExternalSecret or store asks. "+
			"A refreshInterval of 0 means, as in External Secrets Operator, read once and not refreshed (served from the cache up to --cache-max-ttl).")
	fs.Float64Var(&o.ProviderLimits.QPS, "provider-qps", o.ProviderLimits.QPS,
		"Provider calls per second allowed through each store, for all its users together; 0 turns the limit off. A call over it is not made: the read is answered with a cached value younger than --max-stale, or 429 with Retry-After.")
	fs.IntVar(&o.ProviderLimits.Burst, "provider-burst", o.ProviderLimits.Burst,
		"Provider calls allowed through each store in a burst above --provider-qps.")
	fs.IntVar(&o.ProviderLimits.MaxInFlight, "provider-max-in-flight", o.ProviderLimits.MaxInFlight,
		"Provider calls allowed at a time through each store; 0 turns the limit off.")
	fs.Float64Var(&o.ProviderLimits.NamespaceShare, "provider-namespace-share", o.ProviderLimits.NamespaceShare,
		"The fraction (more than 0, at most 1) of each of a ClusterSecretStore's provider limits one namespace may use, so that no namespace can take a shared store from the others.")
	fs.Float64Var(&o.ReadLimits.CostPerSecond, "namespace-read-qps", o.ReadLimits.CostPerSecond,
		"Reads of values veil-apiserver answers per second for each namespace, whoever reads (its users, or veil-syncer for it); 0 turns the budget off. "+
			fmt.Sprintf("A get counts 1, plus 1 for every %d KiB of values it returns; a list 1, plus as much as a get of each value on its page. ", throttle.ReadUnitBytes>>10)+
			"A namespace over its budget is answered 429 with Retry-After before any work is done, and other namespaces are not held up.")
	fs.IntVar(&o.ReadLimits.Burst, "namespace-read-burst", o.ReadLimits.Burst,
		"Reads a namespace may make in a burst above --namespace-read-qps, counted as it counts them.")
	fs.DurationVar(&o.ChangeDetectionInterval, "change-detection-interval", o.ChangeDetectionInterval,
		"How often one replica (elected with a Lease) asks each store's provider which remote keys that ExternalSecrets read have changed: Vault KV v2 metadata, one call a key; Secrets Manager ListSecrets, one call per ten keys; Parameter Store DescribeParameters, one call per fifty keys. "+
			"The readers of a changed key are read again and their watchers and materialised Secrets updated, whatever their refresh interval. 0 turns detection off.")
	fs.IntVar(&o.ChangeDetectionCallsPerStore, "change-detection-calls-per-store", o.ChangeDetectionCallsPerStore,
		"The most provider calls one change detection cycle makes through one store (each is also admitted by the store's --provider-qps budget); keys past it are looked at in the next cycles. 0: only the budget bounds them.")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "veil-apiserver's own namespace, which holds the Lease of change detection.")
	fs.StringVar(&o.LeaderEndpointSlice, "leader-endpointslice", o.LeaderEndpointSlice,
		"An EndpointSlice in --namespace that the change detection leader points at itself (--leader-address, with the ports of --vault-audit-feed), "+
			"so that a Service without selector, labelled with it, routes Vault's socket audit devices to the replica whose watches use them. Empty: none is written.")
	fs.StringVar(&o.LeaderAddress, "leader-address", o.LeaderAddress, "This replica's pod IP, for --leader-endpointslice.")
	fs.StringVar(&o.Identity, "leader-elect-identity", o.Identity, "This replica's name in the change detection Lease; the host name and a random suffix when empty.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "Requests per second veil-apiserver itself makes to kube-apiserver (credential reads, status.lastValueChange and store condition writes), over all its clients.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Requests veil-apiserver may make to kube-apiserver in a burst above --kube-api-qps.")
	fs.DurationVar(&o.ShutdownDelayDuration, "shutdown-delay-duration", o.ShutdownDelayDuration,
		"After SIGTERM, how long to keep serving, with /readyz failing, before stopping: time for the Service's endpoints (and kube-apiserver's routing to them) to drop this replica, so no request reaches it after it stops. Set it when running several replicas.")
	fs.IntVar(&o.MaxWatchesPerNamespace, "max-watches-per-namespace", o.MaxWatchesPerNamespace,
		"Watches of externalsecretvalues open at once in one namespace (watches across all namespaces count together); one more is answered 429. Each holds a watch in kube-apiserver.")
	fs.DurationVar(&o.NegativeCacheTTL, "negative-cache-ttl", o.NegativeCacheTTL,
		"How long a remote key that does not exist is remembered as missing before the provider is asked again; 0 always asks.")
	fs.DurationVar(&o.MaxStale, "max-stale", o.MaxStale,
		"When a provider is unavailable, serve a cached value younger than this (with a warning) instead of failing; 0 disables. Only has an effect above the refresh intervals in use.")
	return cmd
}

// Validate checks the options, reporting every problem at once.
func (o *Options) Validate() error {
	var errs []error
	errs = append(errs, o.SecureServing.Validate()...)
	errs = append(errs, o.Authentication.Validate()...)
	errs = append(errs, o.Authorization.Validate()...)
	errs = append(errs, o.Audit.Validate()...)
	errs = append(errs, o.Features.Validate()...)
	errs = append(errs, o.CoreAPI.Validate()...)
	if _, err := allowlist.Parse(o.AllowedProviderEndpoints); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, providers.ValidateOptions())
	if (o.LeaderEndpointSlice == "") != (o.LeaderAddress == "") {
		errs = append(errs, errors.New("--leader-endpointslice and --leader-address go together: set both or neither"))
	} else if o.LeaderAddress != "" && net.ParseIP(o.LeaderAddress) == nil {
		errs = append(errs, fmt.Errorf("--leader-address %q is not an IP address", o.LeaderAddress))
	}
	if providers.OptionsAsked() && o.ChangeDetectionInterval <= 0 {
		errs = append(errs, errors.New("--vault-audit-feed serves change detection, which --change-detection-interval=0 turns off"))
	}
	if !o.InProcessProviders && providers.OptionsAsked() {
		errs = append(errs, errors.New("--vault-audit-feed and --vault-audit-sources are for stores served in process; with --in-process-providers=false, give them to veil-provider-vault"))
	}
	if (o.ProviderClientCertFile == "") != (o.ProviderClientKeyFile == "") {
		errs = append(errs, fmt.Errorf("--provider-client-cert-file and --provider-client-key-file go together: set both or neither"))
	} else if o.ProviderClientCertFile != "" {
		if _, err := tls.LoadX509KeyPair(o.ProviderClientCertFile, o.ProviderClientKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("--provider-client-cert-file and --provider-client-key-file: %w", err))
		}
	}
	if o.CredentialCacheTTL < 0 {
		errs = append(errs, fmt.Errorf("--credential-cache-ttl must not be negative"))
	}
	if o.CacheMaxBytes.Value() < 1<<20 {
		errs = append(errs, fmt.Errorf("--cache-max-bytes must be at least 1Mi, not %s", o.CacheMaxBytes.String()))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"cache-max-ttl", o.CacheMaxTTL}, {"cache-key-rotation", o.CacheKeyRotation}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive", d.flag))
		}
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"default-refresh-interval", o.DefaultRefreshInterval}, {"negative-cache-ttl", o.NegativeCacheTTL}, {"max-stale", o.MaxStale}, {"min-refresh-interval", o.MinRefreshInterval}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("--%s must not be negative", d.flag))
		}
	}
	if o.MaxWatchesPerNamespace < 1 {
		errs = append(errs, fmt.Errorf("--max-watches-per-namespace must be at least 1"))
	}
	if err := o.ReadLimits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.ProviderLimits.Validate(); err != nil {
		errs = append(errs, err)
	}
	return utilerrors.NewAggregate(errs)
}

// healthPaths are the only paths an anonymous request may reach.
var healthPaths = sets.New("/healthz", "/livez", "/readyz")

// Config builds the server configuration.
func (o *Options) Config() (*apiserver.Config, error) {
	metrics.Register()
	if err := o.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("creating self-signed serving certificate: %w", err)
	}

	c := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	c.EffectiveVersion = utilcompatibility.DefaultBuildEffectiveVersion()
	c.FeatureGate = utilfeature.DefaultFeatureGate
	namer := openapi.NewDefinitionNamer(apiserver.Scheme)
	c.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(generatedopenapi.GetOpenAPIDefinitions, namer)
	c.OpenAPIConfig.Info.Title, c.OpenAPIConfig.Info.Version = "Veil", "v1alpha1"
	c.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(generatedopenapi.GetOpenAPIDefinitions, namer)
	c.OpenAPIV3Config.Info.Title, c.OpenAPIV3Config.Info.Version = "Veil", "v1alpha1"

	c.ShutdownDelayDuration = o.ShutdownDelayDuration
	if err := o.SecureServing.ApplyToConfig(&c.Config); err != nil {
		return nil, err
	}
	if err := o.Authentication.ApplyTo(&c.Authentication, c.SecureServing, c.OpenAPIConfig); err != nil {
		return nil, err
	}
	// The delegating authenticator lets anonymous requests through to every
	// path; Veil answers them only on health paths, 401 elsewhere.
	c.Authentication.Authenticator = anonymousOnly(c.Authentication.Authenticator, healthPaths)
	if !o.AllowDirectBearerTokens {
		c.Authentication.Authenticator = withoutBearerTokens(c.Authentication.Authenticator)
	}
	if err := o.Authorization.ApplyTo(&c.Authorization); err != nil {
		return nil, err
	}
	if err := o.Audit.ApplyTo(&c.Config); err != nil {
		return nil, err
	}
	build := c.BuildHandlerChainFunc
	c.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
		return build(fixedVerbosity(h), c)
	}
	if err := o.CoreAPI.ApplyTo(c); err != nil {
		return nil, err
	}
	// client-go's default (5/s) would hold a change read by a thousand
	// ExternalSecrets for minutes; kube-apiserver's API Priority and
	// Fairness (veil-system level) bounds what this client may take.
	c.ClientConfig.QPS, c.ClientConfig.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	kube, err := kubernetes.NewForConfig(c.ClientConfig)
	if err != nil {
		return nil, err
	}
	if err := o.Features.ApplyTo(&c.Config, kube, c.SharedInformerFactory); err != nil {
		return nil, err
	}

	veil, err := versioned.NewForConfig(c.ClientConfig)
	if err != nil {
		return nil, err
	}
	endpoints, err := allowlist.Parse(o.AllowedProviderEndpoints)
	if err != nil {
		return nil, err
	}
	configInformers := configinformers.NewSharedInformerFactory(veil, 10*time.Minute)
	esInformer := configInformers.Config().V1alpha1().ExternalSecrets()
	ssInformer := configInformers.Config().V1alpha1().SecretStores()
	cssInformer := configInformers.Config().V1alpha1().ClusterSecretStores()
	psInformer := configInformers.Config().V1alpha1().PushSecrets()
	prInformer := configInformers.Config().V1alpha1().ProviderRegistrations()
	cesInformer := configInformers.Config().V1alpha1().ClusterExternalSecrets()
	nsInformer := c.SharedInformerFactory.Core().V1().Namespaces()

	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	creds := credentials.NewReader(kube, o.CredentialCacheTTL)
	if !o.InProcessProviders {
		creds = credentials.NewRefusing(stores.RemoteOnlyMessage)
	}
	clients := stores.NewClients(creds, providers.Env{
		DialContext:    dialer.DialContext,
		AllowPlaintext: o.AllowPlaintextProviders,
	})
	clients.Endpoints = endpoints
	clients.Limiter = throttle.New(o.ProviderLimits, nil)
	// A deleted store's client is closed at once, which revokes what it holds.
	forget := func(kind configv1alpha1.StoreKind) cache.ResourceEventHandler {
		return cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			switch s := obj.(type) {
			case *configv1alpha1.SecretStore:
				clients.Forget(string(kind), s.Namespace, s.Name)
			case *configv1alpha1.ClusterSecretStore:
				clients.Forget(string(kind), "", s.Name)
			}
		}}
	}
	if _, err := ssInformer.Informer().AddEventHandler(forget(configv1alpha1.SecretStoreKind)); err != nil {
		return nil, err
	}
	if _, err := cssInformer.Informer().AddEventHandler(forget(configv1alpha1.ClusterSecretStoreKind)); err != nil {
		return nil, err
	}

	remoteProviders := &remotes.Providers{
		Registrations: prInformer.Lister(),
		Live:          veil.ConfigV1alpha1(),
		CertFile:      o.ProviderClientCertFile,
		KeyFile:       o.ProviderClientKeyFile,
		Endpoints:     endpoints,
		Dial:          dialer.DialContext,
		CloseDelay:    time.Minute,
	}
	// A deleted registration's connection is closed at once.
	if _, err := prInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if r, ok := obj.(*configv1alpha1.ProviderRegistration); ok {
			remoteProviders.Forget(r.Name)
		}
	}}); err != nil {
		return nil, err
	}

	// Every replica keeps the condition; they apply the same one, once.
	statuses, err := storestatus.New(veil.ConfigV1alpha1(), cssInformer.Informer(), cssInformer.Lister())
	if err != nil {
		return nil, err
	}

	// The ProviderRegistered condition of stores that name a registration.
	registered, err := storestatus.NewRegistered(&storestatus.Registered{
		Client:               veil.ConfigV1alpha1(),
		SecretStores:         ssInformer.Lister(),
		ClusterStores:        cssInformer.Lister(),
		Registrations:        prInformer.Lister(),
		Endpoints:            endpoints,
		HasClientCertificate: o.ProviderClientCertFile != "",
		RemoteOnly:           !o.InProcessProviders,
	}, ssInformer.Informer(), cssInformer.Informer(), prInformer.Informer())
	if err != nil {
		return nil, err
	}

	values, err := valuecache.New(valuecache.Config{
		MaxBytes:    o.CacheMaxBytes.Value(),
		MaxTTL:      o.CacheMaxTTL,
		NegativeTTL: o.NegativeCacheTTL,
		MaxStale:    o.MaxStale,
		KeyRotation: o.CacheKeyRotation,
	})
	if err != nil {
		return nil, err
	}
	seen := changes.NewSeen(clock.RealClock{}, max(o.CacheMaxTTL, o.MaxStale))
	lookup := &stores.Lookup{
		SecretStores:        ssInformer.Lister(),
		ClusterSecretStores: cssInformer.Lister(),
		Namespaces:          nsInformer.Lister(),
		Live:                veil.ConfigV1alpha1(),
		LiveCore:            kube.CoreV1(),
		Endpoints:           endpoints,
		AllowPlaintext:      o.AllowPlaintextProviders,
		Remotes:             remoteProviders,
		RemoteOnly:          !o.InProcessProviders,
	}
	// A push marks its readers with the lookup reads use; detection runs
	// over every ExternalSecret every cycle, so it and its marks read the
	// informers only.
	markerWith := func(l *stores.Lookup) *changes.Marker {
		return &changes.Marker{ExternalSecrets: esInformer.Lister(), Client: veil.ConfigV1alpha1(), Clock: clock.RealClock{},
			Admits: func(ctx context.Context, ns string, s changes.Store, key string) bool {
				st, err := l.For(ctx, ns, configv1alpha1.SecretStoreRef{Kind: s.Kind, Name: s.Name})
				return err == nil && st.Scope.CheckKey(key) == nil
			},
			Serves: func(es *configv1alpha1.ExternalSecret) bool {
				return resolve.CheckClusterOwned(cesInformer.Lister(), es) == nil
			}}
	}
	cached := lookup.Cached()
	resolver := &resolve.Resolver{
		Stores:                 lookup,
		Clients:                clients,
		Clock:                  clock.RealClock{},
		Cache:                  values,
		DefaultRefreshInterval: o.DefaultRefreshInterval,
		MinRefreshInterval:     o.MinRefreshInterval,
		Changes:                seen,
		ClusterExternalSecrets: cesInformer.Lister(),
	}
	controllers := []func(context.Context){statuses.Run, registered.Run}
	if o.ChangeDetectionInterval > 0 {
		detector := &changes.Detector{ExternalSecrets: esInformer.Lister(), Stores: cached, Clients: clients, Marker: markerWith(cached), Interval: o.ChangeDetectionInterval, MaxCallsPerStore: o.ChangeDetectionCallsPerStore, Handover: leaseDuration}
		// Provider work only the leader does (audit feeds) waits for the
		// Lease, and the leader's EndpointSlice follows it.
		providers.FollowOptions()
		lead := func(ctx context.Context) {
			providers.LeadOptions(ctx)
			if o.LeaderEndpointSlice != "" {
				go o.publishLeader(ctx, kube)
			}
			detector.Run(ctx)
		}
		controllers = append(controllers, func(ctx context.Context) { o.leadChangeDetection(ctx, kube, lead) })
	}
	if !endpoints.Empty() {
		klog.InfoS("Provider endpoints are restricted", "allowed", endpoints.String())
	}

	return &apiserver.Config{
		GenericConfig: c,
		ExtraConfig: apiserver.ExtraConfig{
			ExternalSecrets:        esInformer.Lister(),
			ExternalSecretsVersion: esInformer.Informer().LastSyncResourceVersion,
			MaxWatchesPerNamespace: o.MaxWatchesPerNamespace,
			PushSecrets:            psInformer.Lister(),
			Live:                   veil.ConfigV1alpha1(),
			Pusher:                 &push.Pusher{Stores: resolver.Stores, Clients: clients, Marker: markerWith(lookup)},
			Resolver:               resolver,
			Reads:                  throttle.NewReads(o.ReadLimits, nil),
			Informers:              configInformers,
			Controllers:            controllers,
			Shutdown: func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				clients.Close(ctx)
				remoteProviders.Close()
				return nil
			},
		},
	}, nil
}

// Run serves until ctx is done.
func (o *Options) Run(ctx context.Context) error {
	if o.InProcessProviders {
		if err := providers.StartOptions(ctx); err != nil {
			return err
		}
	}
	config, err := o.Config()
	if err != nil {
		return err
	}
	server, err := config.Complete().New()
	if err != nil {
		return err
	}
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// fixedVerbosity refuses changes of -v through /debug/flags/v: klog checks
// -v before --vmodule, so a -v raised at run time would get past the cap
// logcap.Apply put on client-go's logging of bodies.
func fixedVerbosity(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(path.Clean(r.URL.Path), "/debug/flags/") && r.Method != http.MethodGet {
			http.Error(w, "veil-apiserver's verbosity is set by its -v and --vmodule flags at start and cannot be changed at run time", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// withoutBearerTokens authenticates a request as if it carried no bearer
// token, so that the delegated TokenReview never sees one. kube-apiserver
// removes the user's token before it proxies a request here, so only a
// request sent straight to veil-apiserver has one: such a request would
// skip kube-apiserver's API Priority and Fairness and its audit log.
func withoutBearerTokens(inner authenticator.Request) authenticator.Request {
	return authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		protocols := req.Header.Values("Sec-WebSocket-Protocol")
		if req.Header.Get("Authorization") == "" && len(protocols) == 0 {
			return inner.AuthenticateRequest(req)
		}
		stripped := req.Clone(req.Context())
		stripped.Header.Del("Authorization")
		// A WebSocket client may carry its token as a subprotocol.
		stripped.Header.Del("Sec-WebSocket-Protocol")
		for _, list := range protocols {
			for _, p := range strings.Split(list, ",") {
				if p = strings.TrimSpace(p); !strings.HasPrefix(p, "base64url.bearer.authorization.k8s.io.") {
					stripped.Header.Add("Sec-WebSocket-Protocol", p)
				}
			}
		}
		return inner.AuthenticateRequest(stripped)
	})
}

// anonymousOnly keeps anonymous authentication for the given paths only.
func anonymousOnly(inner authenticator.Request, paths sets.Set[string]) authenticator.Request {
	return authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		resp, ok, err := inner.AuthenticateRequest(req)
		if ok && resp.User.GetName() == user.Anonymous && !paths.Has(req.URL.Path) {
			return nil, false, err
		}
		return resp, ok, err
	})
}
