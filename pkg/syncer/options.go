// Package syncer is veil-syncer: it materialises the ExternalSecrets that
// have a target as Secrets, for workloads that can only consume Secrets, and
// carries out PushSecrets. It holds no provider credentials — it reads
// values through the aggregated API (externalsecretvalues) and pushes them
// through it (secretpushes), as its own ServiceAccount. It writes Secrets
// with create, JSON patches that test Veil's marks first, and deletes with a
// UID precondition; the only Secrets it can read are the source Secrets of
// PushSecrets in namespaces that granted it them.
package syncer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apiserver/pkg/server/healthz"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"github.com/veil-dev/veil/pkg/cmd/logcap"
	versioned "github.com/veil-dev/veil/pkg/generated/clientset/versioned"
	veilscheme "github.com/veil-dev/veil/pkg/generated/clientset/versioned/scheme"
	configinformers "github.com/veil-dev/veil/pkg/generated/informers/externalversions"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

// informerFactory is what /readyz needs of a generated informer factory.
type informerFactory interface {
	WaitForCacheSync(stop <-chan struct{}) map[reflect.Type]bool
}

// LeaseName is the Lease replicas elect a leader with; the Role in
// artifacts/ grants update on it by name.
const LeaseName = "veil-syncer"

// Options are veil-syncer's flags.
type Options struct {
	// Kubeconfig; the in-cluster configuration when empty.
	Kubeconfig string
	// Namespace holds the Lease and the HMAC key Secret.
	Namespace string

	Workers int
	// NamespaceSyncQPS and NamespaceSyncBurst bound the syncs of each
	// namespace (see namespaceRate); a QPS of 0 turns the bound off.
	NamespaceSyncQPS   float64
	NamespaceSyncBurst int
	// HeldValuesMaxBytes bounds the values the watch of values holds for
	// syncs (valueFeed); 0 turns that watch off.
	HeldValuesMaxBytes     int
	QPS                    float32
	Burst                  int
	DefaultRefreshInterval time.Duration
	// ExcludedNamespaces are never written in; the admission policy
	// veil-syncer-excluded-namespaces enforces the same list.
	ExcludedNamespaces []string

	// MetricsBindAddress serves /metrics, /healthz and /readyz.
	MetricsBindAddress string

	LeaderElect   bool
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// Identity in the Lease; the host name and a random suffix when empty.
	Identity string
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		Namespace: "veil-system",
		Workers:   20,
		// A namespace's first hundred ExternalSecrets sync at once, the
		// rest and any it rewrites in a loop twenty a second: every sync
		// costs kube-apiserver a Secret write and a status write made as
		// veil-syncer, outside the tenant's own flow in kube-apiserver's
		// priority and fairness, so a namespace synced as fast as
		// kube-apiserver can go slows every other tenant's requests (make
		// bench's P6). Clusters that onboard thousands of ExternalSecrets
		// in one namespace at a time can raise the burst.
		NamespaceSyncQPS:   20,
		NamespaceSyncBurst: 100,
		// A first sync costs four requests (read the values, create the
		// Secret, write the status, record an Event): client-go's default
		// of 5 per second would make 1,000 new ExternalSecrets take over
		// ten minutes. kube-apiserver's priority and fairness still
		// protects it from a runaway syncer.
		HeldValuesMaxBytes:     32 << 20,
		QPS:                    500,
		Burst:                  1000,
		DefaultRefreshInterval: time.Hour,
		ExcludedNamespaces:     []string{"kube-system"},
		MetricsBindAddress:     ":8080",
		LeaderElect:            true,
		LeaseDuration:          15 * time.Second,
		RenewDeadline:          10 * time.Second,
		RetryPeriod:            2 * time.Second,
	}
}

// NewCommand returns the veil-syncer command.
func NewCommand(ctx context.Context) *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "veil-syncer",
		Short: "Keeps Secrets in sync with ExternalSecrets that ask for one, and pushes PushSecrets",
		Long: "veil-syncer materialises ExternalSecrets that have a spec.target as Secrets, for workloads that\n" +
			"can only consume Secrets, and pushes the source Secrets of PushSecrets. It reads and writes values\n" +
			"through the Kubernetes API (externalsecretvalues and secretpushes, served by veil-apiserver) and\n" +
			"holds no provider credentials.",
		SilenceUsage: true,
		RunE: func(c *cobra.Command, _ []string) error {
			// Request and response bodies are values and Secrets.
			if err := logcap.Apply(); err != nil {
				return err
			}
			o.Complete()
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	cmd.SetContext(ctx)
	fs := cmd.Flags()
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Kubeconfig of the syncer's identity; the in-cluster ServiceAccount when empty.")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Namespace of the leader election Lease and of the HMAC key Secret.")
	fs.IntVar(&o.Workers, "workers", o.Workers, "ExternalSecrets synced in parallel, and as many PushSecrets.")
	fs.Float64Var(&o.NamespaceSyncQPS, "namespace-sync-qps", o.NamespaceSyncQPS,
		"Syncs per second veil-syncer does for one namespace (its ExternalSecrets and PushSecrets together: first syncs, changes, refreshes and retries), "+
			"so that a namespace that writes ExternalSecrets in a loop cannot keep kube-apiserver busy for everyone; 0 turns the bound off. A sync over it waits for its turn.")
	fs.IntVar(&o.NamespaceSyncBurst, "namespace-sync-burst", o.NamespaceSyncBurst, "Syncs a namespace may have at once above --namespace-sync-qps.")
	fs.IntVar(&o.HeldValuesMaxBytes, "held-values-max-bytes", o.HeldValuesMaxBytes,
		"Bytes of values the leader may hold between its watch of externalsecretvalues sending them and the syncs that take them (each for at most a minute); "+
			"past it, syncs read their values with a GET. 0 turns the watch off: every sync reads by GET.")
	fs.Float32Var(&o.QPS, "kube-api-qps", o.QPS, "Requests per second to kube-apiserver, shared by all workers (leader election has its own budget).")
	fs.IntVar(&o.Burst, "kube-api-burst", o.Burst, "Burst of requests to kube-apiserver above --kube-api-qps.")
	fs.DurationVar(&o.DefaultRefreshInterval, "default-refresh-interval", o.DefaultRefreshInterval,
		"Refresh interval of ExternalSecrets that set none. veil-syncer does not read stores, so it cannot use a store's defaultRefreshInterval.")
	fs.StringSliceVar(&o.ExcludedNamespaces, "excluded-namespaces", o.ExcludedNamespaces,
		"Namespaces veil-syncer never writes in: their ExternalSecrets report Ready=False, NamespaceExcluded. "+
			"Keep it equal to the namespaces of the ValidatingAdmissionPolicyBinding veil-syncer-excluded-namespaces, which makes kube-apiserver refuse such writes.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address of /metrics, /healthz and /readyz (plain HTTP: they carry no values).")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Elect a leader among replicas with a Lease; only the leader writes.")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", o.LeaseDuration, "How long followers wait after the last renewal before taking the lease.")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", o.RenewDeadline, "How long the leader tries to renew before it stops acting.")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", o.RetryPeriod, "How often replicas try to acquire or renew the lease.")
	fs.StringVar(&o.Identity, "leader-elect-identity", o.Identity, "This replica's name in the Lease; the host name and a random suffix when empty.")
	return cmd
}

// Complete fills in what has a computed default.
func (o *Options) Complete() {
	if o.Identity == "" {
		host, _ := os.Hostname()
		o.Identity = host + "_" + string(uuid.NewUUID())
	}
}

// Validate checks the options, reporting every problem at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace must not be empty"))
	}
	if slices.Contains(o.ExcludedNamespaces, o.Namespace) {
		errs = append(errs, fmt.Errorf("--excluded-namespaces must not include --namespace %s, which holds veil-syncer's Lease and HMAC key", o.Namespace))
	}
	if o.HeldValuesMaxBytes < 0 {
		errs = append(errs, errors.New("--held-values-max-bytes must not be negative"))
	}
	if o.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	if o.NamespaceSyncQPS < 0 || (o.NamespaceSyncQPS > 0 && o.NamespaceSyncBurst < 1) {
		errs = append(errs, fmt.Errorf("--namespace-sync-qps must not be negative, and --namespace-sync-burst must be at least 1 when it is set"))
	}
	if o.QPS <= 0 || o.Burst < 1 {
		errs = append(errs, errors.New("--kube-api-qps must be positive and --kube-api-burst at least 1"))
	}
	if o.DefaultRefreshInterval < 0 {
		errs = append(errs, errors.New("--default-refresh-interval must not be negative"))
	}
	if _, _, err := net.SplitHostPort(o.MetricsBindAddress); err != nil {
		errs = append(errs, fmt.Errorf("--metrics-bind-address: %w", err))
	}
	if o.LeaderElect && (o.RetryPeriod <= 0 || o.RenewDeadline <= o.RetryPeriod || o.LeaseDuration <= o.RenewDeadline) {
		errs = append(errs, errors.New("leader election needs 0 < --leader-elect-retry-period < --leader-elect-renew-deadline < --leader-elect-lease-duration"))
	}
	return utilerrors.NewAggregate(errs)
}

// Run syncs until ctx is done (or leadership is lost, which is an error:
// the process exits rather than act without the lease).
func (o *Options) Run(ctx context.Context) error {
	register()
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "veil-syncer"
	// Leader election gets its own client, so a busy controller cannot
	// delay renewals until the lease is lost.
	leaderCfg := rest.CopyConfig(cfg)
	// One budget for every client of the controller: per-client limiters
	// would add up to several times --kube-api-qps.
	cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(o.QPS, o.Burst)

	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	veilCfg := rest.CopyConfig(cfg) // the same rate limiter: one budget
	veilCfg.Wrap(noWaitOnThrottle)
	veil, err := versioned.NewForConfig(veilCfg)
	if err != nil {
		return err
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return err
	}
	key, err := loadHMACKey(ctx, kube.CoreV1().Secrets(o.Namespace), o.Namespace)
	if err != nil {
		return err
	}
	template.SetEncodingKey(templateEncodingKey(key))

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	defer broadcaster.Shutdown()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(veilscheme.Scheme, corev1.EventSource{Component: "veil-syncer"})

	informers := configinformers.NewSharedInformerFactory(veil, 0)
	esInformer := informers.Config().V1alpha1().ExternalSecrets()
	ctrl, err := newController(esInformer, veil, kube.AppsV1(), &secretWriter{core: kube.CoreV1().RESTClient(), meta: meta},
		recorder, key, o.DefaultRefreshInterval)
	if err != nil {
		return err
	}
	ctrl.excluded = sets.New(o.ExcludedNamespaces...)
	if o.HeldValuesMaxBytes > 0 {
		ctrl.useFeed(newValueFeed(veil, esInformer.Informer().LastSyncResourceVersion, o.ExcludedNamespaces, o.HeldValuesMaxBytes))
	}
	ctrl.configMaps = kube.CoreV1()
	// One budget per namespace for both controllers.
	nsRate := newNamespaceRate(o.NamespaceSyncQPS, o.NamespaceSyncBurst)
	ctrl.rate = nsRate
	psInformer := informers.Config().V1alpha1().PushSecrets()
	// The source Secret watches stop with ctx, after the workers.
	pushCtrl, err := newPushController(ctx, psInformer, veil, kube, meta, recorder, key)
	if err != nil {
		return err
	}
	pushCtrl.rate = nsRate
	// ClusterExternalSecrets and ClusterPushSecrets: the namespace informer
	// is what their selectors are matched against.
	kubeInformers := kubeinformers.NewSharedInformerFactory(kube, 0)
	fanOut, err := newFanOutControllers(veil, informers.Config().V1alpha1(), kubeInformers.Core().V1().Namespaces(), recorder, ctrl.excluded)
	if err != nil {
		return err
	}
	// Followers keep their informers, source watches and queues warm, so a
	// failover does not start from an empty cache.
	informers.Start(ctx.Done())
	defer informers.Shutdown()
	kubeInformers.Start(ctx.Done())
	defer kubeInformers.Shutdown()

	leaderHealth := leaderelection.NewLeaderHealthzAdaptor(20 * time.Second)
	srv, err := o.serve(ctx, leaderHealth, informers)
	if err != nil {
		return err
	}
	defer srv.Close()

	work := func(ctx context.Context) {
		var wg sync.WaitGroup
		if ctrl.feed != nil {
			wg.Go(func() { ctrl.feed.run(ctx) })
		}
		wg.Go(func() { ctrl.Run(ctx, o.Workers) })
		wg.Go(func() { pushCtrl.Run(ctx, o.Workers) })
		wg.Go(func() { fanOut.ces.Run(ctx, fanOutWorkers) })
		wg.Go(func() { fanOut.cps.Run(ctx, fanOutWorkers) })
		wg.Wait()
	}
	if !o.LeaderElect {
		work(ctx)
		return nil
	}
	leaderKube, err := kubernetes.NewForConfig(leaderCfg)
	if err != nil {
		return err
	}
	return o.lead(ctx, leaderKube, leaderHealth, work)
}

// lead runs work while this replica holds the Lease. On shutdown it stops
// work first and releases the Lease after, so two replicas never act at
// once and the next one need not wait for the Lease to expire.
func (o *Options) lead(ctx context.Context, kube kubernetes.Interface, health *leaderelection.HealthzAdaptor, work func(context.Context)) error {
	logger := klog.FromContext(ctx)
	electCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElection()
	workDone := make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: LeaseName, Namespace: o.Namespace},
			Client:     kube.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
		},
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            LeaseName,
		WatchDog:        health,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leading context.Context) {
				defer close(workDone)
				logger.Info("Leading", "identity", o.Identity)
				// Stop on shutdown or on losing the lease, whichever first.
				workCtx, stop := context.WithCancel(ctx)
				defer stop()
				defer context.AfterFunc(leading, stop)()
				work(workCtx)
			},
			OnStoppedLeading: func() { logger.Info("Stopped leading", "identity", o.Identity) },
			OnNewLeader: func(identity string) {
				if identity != o.Identity {
					logger.Info("Following", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		if le.IsLeader() {
			select {
			case <-workDone:
			case <-time.After(o.RenewDeadline):
			}
		}
		stopElection()
	}()
	le.Run(electCtx)
	if ctx.Err() == nil {
		return errors.New("lost the leader election lease; exiting so as never to act without it")
	}
	return nil
}

// serve starts /metrics, /healthz (fails when the leader cannot renew its
// Lease) and /readyz (fails until the ExternalSecret and PushSecret
// informers have listed). informers must have been started: the check
// covers only informers that were.
func (o *Options) serve(ctx context.Context, leader *leaderelection.HealthzAdaptor, informers informerFactory) (*http.Server, error) {
	mux := monitoring(leader, informers)
	l, err := net.Listen("tcp", o.MetricsBindAddress)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.FromContext(ctx).Error(err, "Serving metrics and health")
		}
	}()
	return srv, nil
}

// monitoring serves /metrics, /healthz and /readyz the way veil-apiserver
// and kube-apiserver serve theirs: per-check paths (/readyz/informer-sync),
// ?verbose and ?exclude, and a failing /healthz or /readyz that names the
// failed check and logs why.
func monitoring(leader healthz.HealthChecker, informers informerFactory) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", legacyregistry.Handler())
	healthz.InstallHandler(mux, leader)
	healthz.InstallReadyzHandler(mux, healthz.NewInformerSyncHealthz(informers))
	return mux
}
