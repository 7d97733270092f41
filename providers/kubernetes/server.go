package kubeprovider

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/flowcontrol"

	providerv1 "github.com/veil-dev/veil/pkg/providers/remote/proto/veil/provider/v1"
)

// Name is the provider kind this process serves: what a
// ProviderRegistration's spec.provider names.
const Name = "kubernetes"

// ProtocolVersions are the versions of veil.provider.v1 this provider
// speaks, newest first.
var ProtocolVersions = []uint32{1}

// The bounds of what one call may ask or answer.
const (
	// MaxMessageSize bounds every message either way: a Secret is at most
	// 1 MiB, and its JSON (base64 for binary keys) fits.
	MaxMessageSize = 2 << 20
	// MaxFindResults is the most Secrets one find returns; a find that
	// matches more is refused, as veil-apiserver's own providers do.
	MaxFindResults = 500
	// MaxBatch is the most keys of one GetBatch.
	MaxBatch = 500
	// VersionsPerCall is the keys per Versions call the provider
	// advertises (callers chunk by it, one admission each); a call may
	// ask about up to MaxVersionKeys, since each lists the metadata of the
	// whole source namespace anyway.
	VersionsPerCall = 100
	// MaxVersionKeys is the most keys one Versions call may ask about.
	MaxVersionKeys = 10000
	// MaxWatchKeys is the most keys one WatchChanges stream watches.
	MaxWatchKeys = 10000
	// maxRegexp bounds a find's name regexp (Go's are linear in time,
	// but their memory grows with the expression).
	maxRegexp = 4096
	// listPage is the page size of lists.
	listPage = 250
)

var secretsResource = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// Server serves the Secrets of the namespaces its configuration names,
// for the stores it names, read-only.
type Server struct {
	providerv1.UnimplementedProviderServer

	config *configFile
	log    *slog.Logger

	mu      sync.Mutex
	budgets map[storeKey]*budget
	clients map[string]*kubeClients
}

// budget is one store's rate and in-flight limits; it outlives a
// configuration change that leaves the limits as they were.
type budget struct {
	limits  Limits
	rate    flowcontrol.RateLimiter
	slots   chan struct{}
	watches chan struct{}
}

// kubeClients reach one cluster: the typed client reads Secrets, the
// metadata client lists and watches their metadata (versions) without
// ever fetching a value.
type kubeClients struct {
	stamp    fileStamp
	typed    kubernetes.Interface
	metadata metadata.Interface
}

// served is a configured store with what serving it takes.
type served struct {
	key storeKey
	cfg StoreConfig
	*budget
	kube *kubeClients
}

// NewServer serves the stores of the configuration file at path, read
// again when it changes.
func NewServer(configPath string, log *slog.Logger) (*Server, error) {
	cfg, err := loadConfigFile(configPath, log)
	if err != nil {
		return nil, err
	}
	return &Server{config: cfg, log: log, budgets: map[storeKey]*budget{}, clients: map[string]*kubeClients{}}, nil
}

func keyOf(r *providerv1.StoreRef) storeKey {
	return storeKey{kind: r.GetKind(), namespace: r.GetNamespace(), name: r.GetName()}
}

// store is the store ref names, as the configuration says now. A store
// the configuration does not name is refused, whatever the caller is.
func (s *Server) store(ref *providerv1.StoreRef) (*served, error) {
	key := keyOf(ref)
	sc := s.config.current().store(key)
	if sc == nil {
		return nil, errorf(Forbidden, "veil-provider-kubernetes does not serve %s: it serves only the stores of its own configuration; add the store there", key)
	}
	kube, err := s.kubeFor(sc.Source.Kubeconfig)
	if err != nil {
		return nil, err
	}
	limits := sc.Limits.withDefaults()
	s.mu.Lock()
	b := s.budgets[key]
	if b == nil || b.limits != limits {
		b = &budget{limits: limits, rate: flowcontrol.NewTokenBucketRateLimiter(float32(limits.QPS), limits.Burst),
			slots: make(chan struct{}, limits.Concurrency), watches: make(chan struct{}, limits.Watches)}
		s.budgets[key] = b
	}
	s.mu.Unlock()
	return &served{key: key, cfg: *sc, budget: b, kube: kube}, nil
}

// kubeFor returns the clients of a kubeconfig ("" is in cluster), made
// again when the file changes.
func (s *Server) kubeFor(kubeconfig string) (*kubeClients, error) {
	var stamp fileStamp
	if kubeconfig != "" {
		var err error
		if stamp, err = stampOf(kubeconfig); err != nil {
			return nil, errorf(Unavailable, "reading the kubeconfig %s of this provider's configuration: %v", kubeconfig, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.clients[kubeconfig]; c != nil && c.stamp == stamp {
		return c, nil
	}
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	if err != nil {
		where := "the cluster it runs in"
		if kubeconfig != "" {
			where = "kubeconfig " + kubeconfig
		}
		return nil, errorf(Unavailable, "veil-provider-kubernetes cannot reach %s: %v", where, err)
	}
	cfg.UserAgent = "veil-provider-kubernetes"
	// The stores' own limits bound the calls; client-go's default (5 per
	// second) would throttle them all together.
	cfg.QPS, cfg.Burst = 500, 1000
	c := &kubeClients{stamp: stamp}
	if c.typed, err = kubernetes.NewForConfig(cfg); err == nil {
		c.metadata, err = metadata.NewForConfig(cfg)
	}
	if err != nil {
		return nil, errorf(Unavailable, "building a client for %s: %v", kubeconfig, err)
	}
	s.clients[kubeconfig] = c
	return c, nil
}

// admit takes a call slot of st within its rate; release gives it back.
func (st *served) admit() (release func(), err error) {
	if !st.rate.TryAccept() {
		d := time.Duration(math.Ceil(float64(time.Second) / st.limits.QPS))
		return nil, &Error{Reason: Throttled, RetryAfter: d,
			Message: fmt.Sprintf("%s is over the %g calls per second veil-provider-kubernetes admits for it; retry in %s", st.key, st.limits.QPS, d.Round(time.Millisecond))}
	}
	select {
	case st.slots <- struct{}{}:
		return func() { <-st.slots }, nil
	default:
		return nil, &Error{Reason: Throttled, RetryAfter: 100 * time.Millisecond,
			Message: fmt.Sprintf("%s has %d calls in flight, all veil-provider-kubernetes admits for it", st.key, cap(st.slots))}
	}
}

// call runs f for the store ref names, admitted, and returns its error as
// a status.
func (s *Server) call(ref *providerv1.StoreRef, f func(st *served) error) error {
	st, err := s.store(ref)
	if err != nil {
		return toStatus(err)
	}
	release, err := st.admit()
	if err != nil {
		return toStatus(err)
	}
	defer release()
	return toStatus(f(st))
}

// fits refuses a response larger than a message may be.
func fits(m proto.Message, what string) error {
	if n := proto.Size(m); n > MaxMessageSize {
		return errorf(Invalid, "%s come to %d bytes, more than the %d one response may carry; ask for fewer", what, n, MaxMessageSize)
	}
	return nil
}

func capabilities() *providerv1.Capabilities {
	return &providerv1.Capabilities{BatchGet: true, Versions: true, VersionsPerCall: VersionsPerCall, ChangeStream: true, ReadOnly: true}
}

// Handshake agrees on the newest protocol version both sides speak.
func (s *Server) Handshake(ctx context.Context, req *providerv1.HandshakeRequest) (*providerv1.HandshakeResponse, error) {
	var chosen uint32
	for _, v := range ProtocolVersions {
		if slices.Contains(req.GetProtocolVersions(), v) {
			chosen = v
			break
		}
	}
	if chosen == 0 {
		return nil, toStatus(errorf(Invalid, "veil-apiserver speaks provider protocol versions %v and veil-provider-kubernetes speaks %v: upgrade the older of the two", req.GetProtocolVersions(), ProtocolVersions))
	}
	if err := s.call(req.GetStore(), func(*served) error { return nil }); err != nil {
		return nil, err
	}
	return &providerv1.HandshakeResponse{ProtocolVersion: chosen, Provider: Name, Capabilities: capabilities()}, nil
}

// Validate checks that the provider may list the Secrets of the store's
// source namespace.
func (s *Server) Validate(ctx context.Context, req *providerv1.ValidateRequest) (*providerv1.ValidateResponse, error) {
	err := s.call(req.GetStore(), func(st *served) error {
		ns := st.cfg.Source.Namespace
		_, err := st.kube.metadata.Resource(secretsResource).Namespace(ns).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			return kubeError(err, fmt.Sprintf("%s: listing the Secrets of namespace %q", st.key, ns), ns)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &providerv1.ValidateResponse{}, nil
}

// get reads the Secret of key; what names it in errors.
func (st *served) get(ctx context.Context, key string) (*corev1.Secret, error) {
	name, err := st.secretName(key)
	if err != nil {
		return nil, err
	}
	ns := st.cfg.Source.Namespace
	sec, err := st.kube.typed.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, kubeError(err, fmt.Sprintf("remote key %q (Secret %q in namespace %q)", key, name, ns), ns)
	}
	return sec, nil
}

// value is the Secret of ref, at ref's version if it asks for one:
// Kubernetes keeps only the current one.
func (st *served) value(ctx context.Context, ref *providerv1.Ref) (*providerv1.Value, error) {
	sec, err := st.get(ctx, ref.GetKey())
	if err != nil {
		return nil, err
	}
	v := versionOf(sec)
	if want := ref.GetVersion(); want != "" && want != v {
		return nil, errorf(NotFound, "remote key %q has no version %q: Kubernetes keeps only a Secret's current version, now %q; remove remoteRef.version to read it", ref.GetKey(), want, v)
	}
	return &providerv1.Value{Data: encode(sec), Version: v}, nil
}

func (s *Server) Get(ctx context.Context, req *providerv1.GetRequest) (*providerv1.GetResponse, error) {
	var resp *providerv1.GetResponse
	err := s.call(req.GetStore(), func(st *served) error {
		v, err := st.value(ctx, req.GetRef())
		if err != nil {
			return err
		}
		resp = &providerv1.GetResponse{Value: v}
		return fits(resp, fmt.Sprintf("the value of %q", req.GetRef().GetKey()))
	})
	return resp, err
}

// GetBatch reads each key with its own GET, a few at a time; missing keys
// have no entry.
func (s *Server) GetBatch(ctx context.Context, req *providerv1.GetBatchRequest) (*providerv1.GetBatchResponse, error) {
	var resp *providerv1.GetBatchResponse
	err := s.call(req.GetStore(), func(st *served) error {
		refs := req.GetRefs()
		if len(refs) > MaxBatch {
			return errorf(Invalid, "a batch of %d keys is more than the %d one call may ask for", len(refs), MaxBatch)
		}
		for _, r := range refs {
			if _, err := st.secretName(r.GetKey()); err != nil {
				return err
			}
		}
		values, err := st.values(ctx, refs)
		if err != nil {
			return err
		}
		resp = &providerv1.GetBatchResponse{}
		for i, r := range refs {
			if values[i] != nil {
				resp.Values = append(resp.Values, &providerv1.GetBatchResponse_Entry{Ref: &providerv1.Ref{Key: r.GetKey(), Version: r.GetVersion()}, Value: values[i]})
			}
		}
		return fits(resp, fmt.Sprintf("the %d values of the batch", len(resp.Values)))
	})
	return resp, err
}

// values reads refs with a GET each, a few at a time: nil for a key that
// does not exist (or not at the version asked), and the first other error.
// It stops reading once the values read come to more than one message
// may carry, so a find or batch of large Secrets cannot hold more.
func (st *served) values(ctx context.Context, refs []*providerv1.Ref) ([]*providerv1.Value, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	values := make([]*providerv1.Value, len(refs))
	errs := make([]error, len(refs))
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
		over  bool
	)
	sem := make(chan struct{}, 8)
	for i, r := range refs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			values[i], errs[i] = st.value(ctx, r)
			mu.Lock()
			defer mu.Unlock()
			if total += len(values[i].GetData()); total > MaxMessageSize && !over {
				over = true
				cancel()
			}
		}()
	}
	wg.Wait()
	if over {
		return nil, errorf(Invalid, "the %d values asked of %s come to more than the %d bytes one response may carry; ask for fewer", len(refs), st.key, MaxMessageSize)
	}
	for i, err := range errs {
		if e, ok := err.(*Error); ok && e.Reason == NotFound {
			values[i] = nil
		} else if err != nil {
			return nil, err
		}
	}
	return values, nil
}

// selector is the label selector of a find's tags: a Secret's labels are
// its tags.
func selector(tags map[string]string) (string, error) {
	for k, v := range tags {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			return "", errorf(Invalid, "find.tags key %q is not a label key (%s): the tags of a Secret are its labels", k, strings.Join(msgs, "; "))
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			return "", errorf(Invalid, "find.tags[%q] is not a label value (%s): the tags of a Secret are its labels", k, strings.Join(msgs, "; "))
		}
	}
	return labels.SelectorFromSet(tags).String(), nil
}

// Find lists the metadata of the source namespace's Secrets whose remote
// key starts with path and matches the regexp, and whose labels hold
// every tag (a label selector, applied by kube-apiserver); then it reads
// the Secrets that match, and only those. A find matching more than
// MaxFindResults is refused before any is read.
func (s *Server) Find(ctx context.Context, req *providerv1.FindRequest) (*providerv1.FindResponse, error) {
	var resp *providerv1.FindResponse
	err := s.call(req.GetStore(), func(st *served) error {
		if n := len(req.GetNameRegexp()); n > maxRegexp {
			return errorf(Invalid, "find.name.regexp is %d bytes, more than the %d veil-provider-kubernetes compiles", n, maxRegexp)
		}
		re, err := regexp.Compile(req.GetNameRegexp())
		if err != nil {
			return errorf(Invalid, "find.name.regexp %q does not compile: %v", req.GetNameRegexp(), err)
		}
		sel, err := selector(req.GetTags())
		if err != nil {
			return err
		}
		ns := st.cfg.Source.Namespace
		var keys []string
		opts := metav1.ListOptions{LabelSelector: sel, Limit: listPage}
		for {
			list, err := st.kube.metadata.Resource(secretsResource).Namespace(ns).List(ctx, opts)
			if err != nil {
				return kubeError(err, fmt.Sprintf("%s: listing the Secrets of namespace %q for a find", st.key, ns), ns)
			}
			for i := range list.Items {
				key := st.remoteKey(list.Items[i].Name)
				if !strings.HasPrefix(key, req.GetPath()) || !re.MatchString(key) {
					continue
				}
				if len(keys) == MaxFindResults {
					return errorf(Invalid, "find under %q in %s matches more than %d Secrets; narrow find.path, find.name or find.tags", req.GetPath(), st.key, MaxFindResults)
				}
				keys = append(keys, key)
			}
			if list.Continue == "" {
				break
			}
			opts.Continue = list.Continue
		}
		refs := make([]*providerv1.Ref, len(keys))
		for i, k := range keys {
			refs[i] = &providerv1.Ref{Key: k}
		}
		values, err := st.values(ctx, refs)
		if err != nil {
			return err
		}
		resp = &providerv1.FindResponse{Values: make(map[string]*providerv1.Value, len(values))}
		for i, v := range values {
			if v != nil {
				resp.Values[keys[i]] = v
			}
		}
		return fits(resp, fmt.Sprintf("the %d values found under %q", len(resp.Values), req.GetPath()))
	})
	return resp, err
}

func (s *Server) refuseWrite(ref *providerv1.StoreRef, what string) error {
	return s.call(ref, func(st *served) error {
		return errorf(Forbidden, "%s of %s refused: veil-provider-kubernetes is read-only, it never writes a Secret (its Role grants get, list and watch only)", what, st.key)
	})
}

func (s *Server) Push(ctx context.Context, req *providerv1.PushRequest) (*providerv1.PushResponse, error) {
	return nil, s.refuseWrite(req.GetStore(), fmt.Sprintf("a push to %q", req.GetKey()))
}

func (s *Server) Delete(ctx context.Context, req *providerv1.DeleteRequest) (*providerv1.DeleteResponse, error) {
	return nil, s.refuseWrite(req.GetStore(), fmt.Sprintf("a delete of %q", req.GetKey()))
}

// versions lists the metadata of the Secrets of the source namespace
// (never a value) and returns the versions of those watched names, with
// the list's resourceVersion.
func (st *served) versions(ctx context.Context, names map[string]string) (map[string]*providerv1.KeyVersion, string, error) {
	ns := st.cfg.Source.Namespace
	out := map[string]*providerv1.KeyVersion{}
	opts := metav1.ListOptions{Limit: listPage}
	for {
		list, err := st.kube.metadata.Resource(secretsResource).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, "", kubeError(err, fmt.Sprintf("%s: listing the Secrets of namespace %q for their versions", st.key, ns), ns)
		}
		for i := range list.Items {
			m := &list.Items[i]
			if key, ok := names[m.Name]; ok {
				out[key] = &providerv1.KeyVersion{Id: versionOf(m), ChangedUnixNano: changedOf(m)}
			}
		}
		if list.Continue == "" {
			return out, list.ResourceVersion, nil
		}
		opts.Continue = list.Continue
	}
}

// namesOf maps the Secret names of keys to the keys. Keys that name no
// Secret are left out: they never have a version.
func (st *served) namesOf(keys []string) map[string]string {
	names := make(map[string]string, len(keys))
	for _, k := range keys {
		if n, err := st.secretName(k); err == nil {
			names[n] = k
		}
	}
	return names
}

// Versions answers from one list of the namespace's Secret metadata.
func (s *Server) Versions(ctx context.Context, req *providerv1.VersionsRequest) (*providerv1.VersionsResponse, error) {
	var resp *providerv1.VersionsResponse
	err := s.call(req.GetStore(), func(st *served) error {
		if n := len(req.GetKeys()); n > MaxVersionKeys {
			return errorf(Invalid, "%d keys is more than the %d one Versions call of veil-provider-kubernetes answers for", n, MaxVersionKeys)
		}
		got, _, err := st.versions(ctx, st.namesOf(req.GetKeys()))
		if err != nil {
			return err
		}
		resp = &providerv1.VersionsResponse{Versions: got}
		return nil
	})
	return resp, err
}

// logCalls logs each call (method, store, outcome) at debug and failed
// calls at info. Requests and responses are never logged: they carry
// keys and values.
func (s *Server) logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	store := ""
	if r, ok := req.(interface{ GetStore() *providerv1.StoreRef }); ok {
		store = keyOf(r.GetStore()).String()
	}
	if err != nil {
		s.log.Info("call failed", "method", info.FullMethod, "store", store, "err", err)
	} else {
		s.log.Debug("call", "method", info.FullMethod, "store", store, "took", time.Since(start).String())
	}
	return resp, err
}
