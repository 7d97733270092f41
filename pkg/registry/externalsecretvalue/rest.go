// Package externalsecretvalue serves the virtual externalsecretvalues
// resource: every get or list reads the ExternalSecret from an informer and
// its values from the store. Nothing is stored.
package externalsecretvalue

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/warning"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	configclient "github.com/veil-dev/veil/pkg/generated/clientset/versioned/typed/config/v1alpha1"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/metrics"
	"github.com/veil-dev/veil/pkg/providers"
	"github.com/veil-dev/veil/pkg/registry"
	"github.com/veil-dev/veil/pkg/throttle"
)

// Resolver reads the values of an ExternalSecret; *resolve.Resolver is one.
type Resolver interface {
	Resolve(ctx context.Context, es *configv1alpha1.ExternalSecret) (*externalsecrets.ExternalSecretValue, error)
}

// REST is the storage of externalsecretvalues.
type REST struct {
	externalSecrets configlisters.ExternalSecretLister
	// live is read when the informer does not have an ExternalSecret yet,
	// so one created a moment ago is not answered 404.
	live     configclient.ExternalSecretsGetter
	resolver Resolver
	// reads is every namespace's read budget; nil admits every read.
	reads *throttle.Reads
	// authz decides which values a watcher is sent (see watch.go).
	authz authorizer.Authorizer
	// listVersion is the resource version of what externalSecrets holds:
	// the version a list answers with, from which a watch resumes.
	listVersion func() string
	watches     *watches
}

// Options are what NewREST needs besides the ExternalSecrets and values.
type Options struct {
	// Reads is every namespace's read budget; nil admits every read.
	Reads *throttle.Reads
	// Authorizer decides which values a watcher may be sent.
	Authorizer authorizer.Authorizer
	// ListVersion returns the resource version the lister of
	// ExternalSecrets has seen (its informer's LastSyncResourceVersion).
	ListVersion func() string
	// MaxWatchesPerNamespace bounds the watches open at once in one
	// namespace; 0 means DefaultMaxWatchesPerNamespace.
	MaxWatchesPerNamespace int
}

// NewREST returns the storage of externalsecretvalues.
func NewREST(externalSecrets configlisters.ExternalSecretLister, live configclient.ExternalSecretsGetter, resolver Resolver, o Options) *REST {
	maxWatches := o.MaxWatchesPerNamespace
	if maxWatches <= 0 {
		maxWatches = DefaultMaxWatchesPerNamespace
	}
	listVersion := o.ListVersion
	if listVersion == nil {
		listVersion = func() string { return "" }
	}
	return &REST{
		externalSecrets: externalSecrets, live: live, resolver: resolver, reads: o.Reads,
		authz: o.Authorizer, listVersion: listVersion,
		watches: &watches{max: maxWatches, open: map[string]int{}},
	}
}

var (
	_ rest.Storage              = &REST{}
	_ rest.Getter               = &REST{}
	_ rest.Lister               = &REST{}
	_ rest.Watcher              = &REST{}
	_ rest.Scoper               = &REST{}
	_ rest.KindProvider         = &REST{}
	_ rest.SingularNameProvider = &REST{}
	_ rest.TableConvertor       = &REST{}
	_ rest.CategoriesProvider   = &REST{}
	_ rest.ShortNamesProvider   = &REST{}
)

var resource = externalsecrets.Resource("externalsecretvalues")

// maxParallelResolves bounds the ExternalSecrets one list resolves at once.
const maxParallelResolves = 8

func (r *REST) New() runtime.Object     { return &externalsecrets.ExternalSecretValue{} }
func (r *REST) NewList() runtime.Object { return &externalsecrets.ExternalSecretValueList{} }
func (r *REST) Destroy()                {}
func (r *REST) NamespaceScoped() bool   { return true }
func (r *REST) Kind() string            { return "ExternalSecretValue" }
func (r *REST) GetSingularName() string { return "externalsecretvalue" }
func (r *REST) ShortNames() []string    { return []string{"esv"} }
func (r *REST) Categories() []string    { return []string{"veil"} }

// Get resolves the ExternalSecret of the same namespace and name. With a
// resourceVersion, as in Kubernetes, the answer is not older than it: a
// client that saw the ExternalSecret at that version (veil-syncer, told
// of a value change by its own watch) is never answered from this
// replica's informer while it still holds an older version, which would
// serve the value cached before the change.
func (r *REST) Get(ctx context.Context, name string, opts *metav1.GetOptions) (_ runtime.Object, err error) {
	defer observe("get", time.Now(), &err)
	ns, ok := genericapirequest.NamespaceFrom(ctx)
	if !ok || ns == "" {
		return nil, apierrors.NewBadRequest("externalsecretvalues are namespaced: name a namespace")
	}
	// A namespace over its budget is refused before any work is done.
	if err := r.reads.Admit(ns, "get"); err != nil {
		return nil, registry.APIError(resource, name, err)
	}
	var atLeast uint64
	if opts != nil && opts.ResourceVersion != "" && opts.ResourceVersion != "0" {
		if atLeast, err = strconv.ParseUint(opts.ResourceVersion, 10, 64); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("resourceVersion %q is not a resource version of an ExternalSecret: leave it out, or give one read from an ExternalSecret or ExternalSecretValue", opts.ResourceVersion))
		}
	}
	es, err := r.externalSecrets.ExternalSecrets(ns).Get(name)
	if err == nil && olderThan(es.ResourceVersion, atLeast) {
		err = apierrors.NewNotFound(resource, name) // not yet in the informer at that version: read it live
	}
	if apierrors.IsNotFound(err) {
		es, err = r.live.ExternalSecrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && olderThan(es.ResourceVersion, atLeast) {
			return nil, storage.NewTooLargeResourceVersionError(atLeast, mustVersion(es.ResourceVersion), 1)
		}
	}
	if apierrors.IsNotFound(err) {
		nf := apierrors.NewNotFound(resource, name)
		nf.ErrStatus.Message = fmt.Sprintf("externalsecretvalue %q not found: there is no ExternalSecret %q in namespace %q", name, name, ns)
		return nil, nf
	}
	if err != nil {
		return nil, registry.APIError(resource, name, providers.Wrap(providers.Unavailable, err, "reading ExternalSecret %s/%s", ns, name))
	}
	v, err := r.resolver.Resolve(ctx, es)
	if err != nil {
		return nil, registry.APIError(resource, name, err)
	}
	r.reads.Charge(ns, throttle.Cost(valueBytes(v)))
	return v, nil
}

// olderThan says whether resource version rv is below atLeast (0: no
// bound). Versions are etcd revisions, so they compare as integers.
func olderThan(rv string, atLeast uint64) bool {
	return atLeast > 0 && mustVersion(rv) < atLeast
}

// mustVersion is rv as an integer, 0 when it is not one.
func mustVersion(rv string) uint64 {
	v, _ := strconv.ParseUint(rv, 10, 64)
	return v
}

// List resolves every ExternalSecret that matches the selectors. One that
// cannot be resolved is left out with a warning naming it and why, so one
// broken store does not hide every other value.
func (r *REST) List(ctx context.Context, opts *metainternalversion.ListOptions) (_ runtime.Object, err error) {
	defer observe("list", time.Now(), &err)
	labelSel, fieldSel := labels.Everything(), fields.Everything()
	if opts != nil && opts.LabelSelector != nil {
		labelSel = opts.LabelSelector
	}
	if opts != nil && opts.FieldSelector != nil {
		fieldSel = opts.FieldSelector
		if err := checkFieldSelector(fieldSel.Requirements()); err != nil {
			return nil, err
		}
	}

	ns := genericapirequest.NamespaceValue(ctx)
	// Read before the lister: what it holds is at least this version.
	version := r.listVersion()
	// A list across namespaces is charged under "" and each value on its
	// page to the namespace it is in.
	if err := r.reads.Admit(ns, "list"); err != nil {
		return nil, registry.APIError(resource, "", err)
	}
	var ess []*configv1alpha1.ExternalSecret
	if ns == "" {
		ess, err = r.externalSecrets.List(labelSel)
	} else {
		ess, err = r.externalSecrets.ExternalSecrets(ns).List(labelSel)
	}
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	matched := ess[:0:0]
	for _, es := range ess {
		if fieldSel.Matches(fieldsOf(es)) {
			matched = append(matched, es)
		}
	}
	sort.Slice(matched, func(i, j int) bool {
		if matched[i].Namespace != matched[j].Namespace {
			return matched[i].Namespace < matched[j].Namespace
		}
		return matched[i].Name < matched[j].Name
	})

	start, err := decodeContinue(opts)
	if err != nil {
		return nil, err
	}
	if start != nil {
		matched = matched[sort.Search(len(matched), func(i int) bool { return after(matched[i], start) }):]
	}
	limit := int64(0)
	if opts != nil {
		limit = opts.Limit
	}
	list, err := r.page(ctx, matched, limit)
	if err != nil {
		return nil, err
	}
	list.ResourceVersion = version
	return list, nil
}

// fieldsOf are the fields a value may be selected by: its name and
// namespace, and its ExternalSecret's spec.target.creationPolicy (a
// selectable field of the CRD, so a watch passes it to kube-apiserver),
// "" without a target, as kube-apiserver evaluates an absent field.
func fieldsOf(es *configv1alpha1.ExternalSecret) fields.Set {
	policy := ""
	if es.Spec.Target != nil {
		policy = string(es.Spec.Target.CreationPolicy)
	}
	return fields.Set{"metadata.name": es.Name, "metadata.namespace": es.Namespace, esv1alpha1.TargetCreationPolicyField: policy}
}

// checkFieldSelector refuses fields other than those of fieldsOf.
func checkFieldSelector(reqs fields.Requirements) error {
	known := fieldsOf(&configv1alpha1.ExternalSecret{})
	for _, req := range reqs {
		if _, ok := known[req.Field]; !ok {
			return apierrors.NewBadRequest(fmt.Sprintf("field selector %q is not supported: externalsecretvalues support %s", req.Field, strings.Join(slices.Sorted(maps.Keys(known)), ", ")))
		}
	}
	return nil
}

// The bounds of one list response, before it is encoded. A page stops at
// the limit the client asked for (kubectl asks for 500) or when its values
// add up to maxListBytes, whichever comes first, with a continue token; a
// client that asked for no limit and would get more than maxListBytes is
// told to page instead of being sent an unbounded response.
const (
	maxListBytes = 16 << 20
	maxListItems = 500
)

// page resolves matched (sorted) in order, a few at a time, until the page
// is full, so memory stays bounded whatever the list would add up to.
func (r *REST) page(ctx context.Context, matched []*configv1alpha1.ExternalSecret, limit int64) (*externalsecrets.ExternalSecretValueList, error) {
	pageItems := maxListItems
	if limit > 0 && limit < int64(pageItems) {
		pageItems = int(limit)
	}
	list := &externalsecrets.ExternalSecretValueList{Items: []externalsecrets.ExternalSecretValue{}}
	size := 0
	next := 0 // the first of matched not yet in the page
	for next < len(matched) && len(list.Items) < pageItems {
		chunk := matched[next:min(next+maxParallelResolves, len(matched))]
		items := make([]*externalsecrets.ExternalSecretValue, len(chunk))
		errs := make([]error, len(chunk))
		var wg sync.WaitGroup
		for i, es := range chunk {
			wg.Go(func() { items[i], errs[i] = r.resolver.Resolve(ctx, es) })
		}
		wg.Wait()
		for i, v := range items {
			if len(list.Items) == pageItems {
				break
			}
			if errs[i] != nil {
				msg := registry.APIError(resource, chunk[i].Name, errs[i]).Error()
				warning.AddWarning(ctx, "", fmt.Sprintf("externalsecretvalue %s/%s left out: %s", chunk[i].Namespace, chunk[i].Name, msg))
				next++
				continue
			}
			n := valueBytes(v)
			if size+n > maxListBytes && len(list.Items) > 0 {
				if limit <= 0 {
					return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the externalsecretvalues listed add up to more than %d MiB; list them in pages with limit (kubectl --chunk-size, client-go's pager)", maxListBytes>>20))
				}
				return withContinue(list, matched, next), nil
			}
			size += n
			r.reads.Charge(v.Namespace, 1+throttle.Cost(n))
			list.Items = append(list.Items, *v)
			next++
		}
	}
	if next < len(matched) {
		if limit <= 0 {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("more than %d externalsecretvalues match; list them in pages with limit (kubectl --chunk-size, client-go's pager), or narrow the selectors", maxListItems))
		}
		return withContinue(list, matched, next), nil
	}
	return list, nil
}

// withContinue ends a page before matched[next].
func withContinue(list *externalsecrets.ExternalSecretValueList, matched []*configv1alpha1.ExternalSecret, next int) *externalsecrets.ExternalSecretValueList {
	last := matched[next-1]
	list.Continue = encodeContinue(last.Namespace, last.Name)
	remaining := int64(len(matched) - next)
	list.RemainingItemCount = &remaining
	return list
}

func valueBytes(v *externalsecrets.ExternalSecretValue) int {
	n := 0
	for k, d := range v.Data {
		n += len(k) + len(d)
	}
	return n
}

// observe records the latency of a read and the status it was answered with.
func observe(verb string, start time.Time, err *error) {
	code := http.StatusOK
	if *err != nil {
		code = http.StatusInternalServerError
		var status apierrors.APIStatus
		if errors.As(*err, &status) {
			code = int(status.Status().Code)
		}
	}
	metrics.ObserveRead(verb, start, code)
}

// ConvertToTable shows where values come from, never a value.
func (r *REST) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: columns}
	add := func(v *externalsecrets.ExternalSecretValue) {
		t.Rows = append(t.Rows, metav1.TableRow{
			Object: runtime.RawExtension{Object: v},
			Cells: []any{
				v.Name,
				v.Source.StoreRef.Kind + "/" + v.Source.StoreRef.Name,
				int64(len(v.Data)),
				age(v.Source.FetchTime),
				age(v.CreationTimestamp),
			},
		})
	}
	switch o := obj.(type) {
	case *externalsecrets.ExternalSecretValue:
		t.ResourceVersion = o.ResourceVersion
		add(o)
	case *externalsecrets.ExternalSecretValueList:
		t.ResourceVersion, t.Continue, t.RemainingItemCount = o.ResourceVersion, o.Continue, o.RemainingItemCount
		for i := range o.Items {
			add(&o.Items[i])
		}
	default:
		return nil, fmt.Errorf("cannot show %T as a table", obj)
	}
	return t, nil
}

var columns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name of the ExternalSecret the values belong to."},
	{Name: "Store", Type: "string", Description: "Kind/name of the store the values were read through."},
	{Name: "Keys", Type: "integer", Description: "Number of keys in data."},
	{Name: "Fetched", Type: "string", Description: "How long ago the oldest value was read from the provider."},
	{Name: "Age", Type: "string", Description: "Age of the ExternalSecret."},
}

// age is how long ago t was, as kubectl shows ages.
func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}
