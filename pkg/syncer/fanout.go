package syncer

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// Reasons of a ClusterExternalSecret's or ClusterPushSecret's Ready
// condition.
const (
	// ReasonProvisioned: the object exists, as the spec says, in every
	// selected namespace.
	ReasonProvisioned = "Provisioned"
	// ReasonNamespacesFailed: some selected namespaces could not be
	// provisioned; status.failedNamespaces says why.
	ReasonNamespacesFailed = "NamespacesFailed"
	// ReasonTooManyNamespaces: more namespaces are selected than
	// configv1alpha1.MaxClusterNamespaces; the first ones by name are
	// provisioned.
	ReasonTooManyNamespaces = "TooManyNamespaces"
	// ReasonInvalidSelector: a namespace selector does not parse.
	ReasonInvalidSelector = "InvalidSelector"
)

// defaultFanOutRefresh is how often a ClusterExternalSecret or
// ClusterPushSecret is checked when it sets no refreshTime; changes of
// namespaces and of its objects are acted on at once anyway.
const defaultFanOutRefresh = time.Hour

// fanOutKind is what the fan-out controller knows of one cluster kind P
// (ClusterExternalSecret, ClusterPushSecret) and the namespaced kind C it
// creates (ExternalSecret, PushSecret).
type fanOutKind[P, C object] struct {
	// name and child are the Kinds; label is the label naming the parent
	// on each child.
	name, child, label string

	getParent  func(name string) (P, error)
	listParent func() ([]P, error)
	// owned lists the children carrying label, in all namespaces.
	owned    func(sel labels.Selector) ([]C, error)
	getChild func(namespace, name string) (C, error)

	// selection, childName, metadata and refreshTime read the parent's spec.
	selection   func(P) *configv1alpha1.NamespaceSelection
	childName   func(P) string
	metadata    func(P) configv1alpha1.ClusterSecretMetadata
	refreshTime func(P) *metav1.Duration
	status      func(P) *configv1alpha1.ClusterSecretFanOutStatus

	// newChild is a child of namespace/name with the parent's spec.
	newChild func(p P, namespace, name string) C
	// sameSpec: the child's spec is the parent's.
	sameSpec func(have, want C) bool
	// setSpec copies want's spec into have.
	setSpec func(have, want C)

	create      func(ctx context.Context, c C) error
	update      func(ctx context.Context, c C) error
	delete      func(ctx context.Context, namespace, name string, uid types.UID) error
	applyStatus func(ctx context.Context, name string, body []byte, opts metav1.PatchOptions) error
}

// fanOutController keeps one object of kind C, in every namespace a
// cluster object P selects, equal to the spec P gives, and deletes those P
// no longer selects. It creates nothing the author of P could not: the
// admission policies veil-clusterexternalsecrets and
// veil-clusterpushsecrets made them prove, when they wrote P, that they
// may create such an object in every namespace (docs/threat-model.md).
// veil-syncer changes and deletes only children that are P's (its label
// and controller owner reference, with P's UID), which its own admission
// policy also enforces; the children are then synced by the ordinary
// controllers, under the ordinary rules.
type fanOutController[P, C object] struct {
	kind       fanOutKind[P, C]
	namespaces corelisters.NamespaceLister
	queue      workqueue.TypedRateLimitingInterface[string]
	synced     []cache.InformerSynced
	recorder   record.EventRecorder
	// excluded namespaces are never written in (--excluded-namespaces).
	excluded sets.Set[string]
	// max is how many namespaces one parent is provisioned in.
	max int
}

func newFanOutController[P, C object](k fanOutKind[P, C], parents, children, namespaces cache.SharedIndexInformer,
	nsLister corelisters.NamespaceLister, recorder record.EventRecorder, excluded sets.Set[string]) (*fanOutController[P, C], error) {
	c := &fanOutController[P, C]{
		kind: k, namespaces: nsLister, recorder: recorder, excluded: excluded, max: configv1alpha1.MaxClusterNamespaces,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, maxRetryDelay),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "veil_syncer_" + strings.ToLower(k.name)}),
		synced: []cache.InformerSynced{parents.HasSynced, children.HasSynced, namespaces.HasSynced},
	}
	if _, err := parents.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.enqueueObject(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(P)
			n, ok2 := newObj.(P)
			// Our status writes change neither generation nor metadata.
			if ok1 && ok2 && (o.GetGeneration() != n.GetGeneration() || o.GetUID() != n.GetUID()) {
				c.enqueueObject(newObj)
			}
		},
		// Its children go with it: the garbage collector deletes them
		// (owner references), and so does the sync of a parent not found.
		DeleteFunc: func(obj any) {
			if p, ok := deleted[P](obj); ok {
				c.queue.Add(p.GetName())
			}
		},
	}); err != nil {
		return nil, err
	}
	// A child created, changed or deleted by someone else is put right.
	onChild := func(obj any) {
		if ch, ok := deleted[C](obj); ok {
			if name := ch.GetLabels()[k.label]; name != "" {
				c.queue.Add(name)
			}
		}
	}
	if _, err := children.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onChild,
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(C)
			n, ok2 := newObj.(C)
			// Not for status writes: a spec, label, annotation or owner change.
			if ok1 && ok2 && (o.GetGeneration() != n.GetGeneration() || !maps.Equal(o.GetLabels(), n.GetLabels()) ||
				!maps.Equal(o.GetAnnotations(), n.GetAnnotations()) || !equality.Semantic.DeepEqual(o.GetOwnerReferences(), n.GetOwnerReferences())) {
				onChild(oldObj)
				onChild(newObj)
			}
		},
		DeleteFunc: onChild,
	}); err != nil {
		return nil, err
	}
	// A namespace created, relabelled or deleted may change what every
	// parent selects.
	onNamespace := func(any) { c.enqueueAll() }
	if _, err := namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onNamespace,
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Namespace)
			n, ok2 := newObj.(*corev1.Namespace)
			if ok1 && ok2 && (!maps.Equal(o.Labels, n.Labels) || o.Status.Phase != n.Status.Phase) {
				c.enqueueAll()
			}
		},
		DeleteFunc: onNamespace,
	}); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *fanOutController[P, C]) enqueueObject(obj any) {
	if p, ok := obj.(P); ok {
		c.queue.Add(p.GetName())
	}
}

func (c *fanOutController[P, C]) enqueueAll() {
	ps, err := c.kind.listParent()
	if err != nil {
		return
	}
	for _, p := range ps {
		c.queue.Add(p.GetName())
	}
}

// Run syncs until ctx is done. Every child listed queues its parent's
// name, so the children of a parent deleted while no leader ran are
// deleted too, even with no garbage collector.
func (c *fanOutController[P, C]) Run(ctx context.Context, workers int) {
	if !cache.WaitForNamedCacheSyncWithContext(ctx, c.synced...) {
		return
	}
	runWorkers(ctx, c.kind.name+"s", func() bool { return true }, &workQueue{TypedRateLimitingInterface: c.queue}, workers, c.next)
}

func (c *fanOutController[P, C]) next(ctx context.Context) bool {
	name, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(name)
	after, err := c.sync(ctx, name)
	if ctx.Err() != nil {
		return true
	}
	if err != nil {
		klog.FromContext(ctx).Error(err, "Provisioning namespaces", "kind", c.kind.name, "name", name)
		c.queue.AddRateLimited(name)
		return true
	}
	c.queue.Forget(name)
	if after > 0 {
		c.queue.AddAfter(name, jitter(after))
	}
	return true
}

// owner is the controller owner reference of a child of p.
func (c *fanOutController[P, C]) owner(p P) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: configv1alpha1.SchemeGroupVersion.String(), Kind: c.kind.name,
		Name: p.GetName(), UID: p.GetUID(), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(false),
	}
}

// ownedBy says whether ch is the child of the parent with this name and UID:
// it carries the label and a controller owner reference to it. Either alone
// is not enough: anyone who may write a child could set both, but only to
// hand their own object to veil-syncer, never to take someone else's.
func (c *fanOutController[P, C]) ownedBy(ch C, name string, uid types.UID) bool {
	return c.controlledByName(ch, name) && metav1.GetControllerOfNoCopy(ch).UID == uid
}

// controlledByName: ch carries the label naming the parent name and a
// controller owner reference to a parent of that name (any UID).
func (c *fanOutController[P, C]) controlledByName(ch C, name string) bool {
	if ch.GetLabels()[c.kind.label] != name {
		return false
	}
	ref := metav1.GetControllerOfNoCopy(ch)
	return ref != nil && ref.Kind == c.kind.name && ref.Name == name &&
		ref.APIVersion == configv1alpha1.SchemeGroupVersion.String()
}

// sync provisions the parent name and returns when to check it again.
func (c *fanOutController[P, C]) sync(ctx context.Context, name string) (time.Duration, error) {
	p, err := c.kind.getParent(name)
	if apierrors.IsNotFound(err) {
		return 0, c.release(ctx, name)
	}
	if err != nil {
		return 0, err
	}
	if p.GetDeletionTimestamp() != nil {
		return 0, c.release(ctx, name)
	}
	refresh := defaultFanOutRefresh
	if d := c.kind.refreshTime(p); d != nil && d.Duration > 0 {
		refresh = max(d.Duration, minRefresh)
	}

	st := c.kind.status(p).DeepCopy()
	selected, err := c.selected(c.kind.selection(p))
	if err != nil {
		c.setReady(p, st, metav1.ConditionFalse, ReasonInvalidSelector, err.Error())
		return refresh, c.writeStatus(ctx, p, st)
	}
	var failed []configv1alpha1.ClusterSecretNamespaceFailure
	var provisioned []string
	var chosen []string
	for _, ns := range selected {
		if c.excluded.Has(ns) {
			failed = append(failed, configv1alpha1.ClusterSecretNamespaceFailure{Namespace: ns,
				Reason: "veil-syncer never writes in this namespace (--excluded-namespaces)"})
			continue
		}
		chosen = append(chosen, ns)
	}
	tooMany := len(chosen) > c.max
	if tooMany {
		chosen = chosen[:c.max]
	}
	childName := c.kind.childName(p)
	// Every chosen namespace keeps its child, also when provisioning it
	// failed this time: a failed update is no reason to delete it.
	keep := sets.New[string]()
	var writeErr error
	for _, ns := range chosen {
		keep.Insert(ns + "/" + childName)
		reason, err := c.provision(ctx, p, ns, childName)
		if err != nil {
			writeErr = err
			if reason == "" {
				reason = "retrying: " + c.refused(err)
			}
		}
		if reason != "" {
			failed = append(failed, configv1alpha1.ClusterSecretNamespaceFailure{Namespace: ns, Reason: reason})
			continue
		}
		provisioned = append(provisioned, ns)
	}
	if err := c.collect(ctx, name, keep); err != nil {
		writeErr = err
	}

	st.ProvisionedNamespaces = provisioned
	nFailed := len(failed)
	if len(failed) > configv1alpha1.MaxFailedNamespaces {
		failed = failed[:configv1alpha1.MaxFailedNamespaces]
	}
	st.FailedNamespaces = failed
	switch {
	case tooMany:
		c.setReady(p, st, metav1.ConditionFalse, ReasonTooManyNamespaces, fmt.Sprintf(
			"%d namespaces are selected, more than the %d one %s is provisioned in: the first %d by name are; narrow the selectors, or split it",
			len(selected), c.max, c.kind.name, c.max))
	case nFailed > 0:
		c.setReady(p, st, metav1.ConditionFalse, ReasonNamespacesFailed, fmt.Sprintf(
			"%d of %d selected namespaces have no %s of this %s; status.failedNamespaces says why", nFailed, len(selected), c.kind.child, c.kind.name))
	default:
		c.setReady(p, st, metav1.ConditionTrue, ReasonProvisioned, fmt.Sprintf(
			"%s %s exists in the %d selected namespaces", c.kind.child, childName, len(provisioned)))
	}
	if err := c.writeStatus(ctx, p, st); err != nil {
		return 0, err
	}
	return refresh, writeErr
}

// selected is the sorted names of the namespaces sel selects, not being
// deleted.
func (c *fanOutController[P, C]) selected(sel *configv1alpha1.NamespaceSelection) ([]string, error) {
	var selectors []labels.Selector
	for _, ls := range append([]*metav1.LabelSelector{sel.NamespaceSelector}, sel.NamespaceSelectors...) {
		if ls == nil {
			continue
		}
		s, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			return nil, fmt.Errorf("namespace selector: %v", err)
		}
		selectors = append(selectors, s)
	}
	byName := sets.New(sel.Namespaces...)
	all, err := c.namespaces.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ns := range all {
		if ns.Status.Phase == corev1.NamespaceTerminating || ns.DeletionTimestamp != nil {
			continue
		}
		if byName.Has(ns.Name) || slices.ContainsFunc(selectors, func(s labels.Selector) bool { return s.Matches(labels.Set(ns.Labels)) }) {
			out = append(out, ns.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// provision makes the child in ns what p says. A non-empty reason says why
// ns is not provisioned; an error, that it should be tried again.
func (c *fanOutController[P, C]) provision(ctx context.Context, p P, ns, name string) (string, error) {
	want := c.kind.newChild(p, ns, name)
	want.SetLabels(c.childLabels(p))
	want.SetAnnotations(c.kind.metadata(p).Annotations)
	want.SetOwnerReferences([]metav1.OwnerReference{c.owner(p)})

	have, err := c.kind.getChild(ns, name)
	if apierrors.IsNotFound(err) {
		err = c.kind.create(ctx, want)
		if apierrors.IsAlreadyExists(err) {
			return "", err // not in the cache yet: again, then decide
		}
		if err != nil {
			return c.refused(err), errIfTransient(err)
		}
		c.recorder.Eventf(p, corev1.EventTypeNormal, "Created", "Created %s %s/%s", c.kind.child, ns, name)
		return "", nil
	}
	if err != nil {
		return "cache: " + err.Error(), err
	}
	if c.controlledByName(have, p.GetName()) && !c.ownedBy(have, p.GetName(), p.GetUID()) {
		// Left by an earlier parent of the same name: replaced.
		if err := c.kind.delete(ctx, ns, name, have.GetUID()); err != nil && !apierrors.IsNotFound(err) {
			return c.refused(err), err
		}
		return "", fmt.Errorf("replacing %s %s/%s of an earlier %s", c.kind.child, ns, name, c.kind.name)
	}
	if !c.ownedBy(have, p.GetName(), p.GetUID()) {
		return fmt.Sprintf("%s %s already exists in this namespace and is not this %s's (label %s and controller owner reference): rename or delete it, or set another name",
			c.kind.child, name, c.kind.name, c.kind.label), nil
	}
	if c.kind.sameSpec(have, want) && maps.Equal(have.GetLabels(), want.GetLabels()) &&
		maps.Equal(have.GetAnnotations(), want.GetAnnotations()) {
		return "", nil
	}
	// Owner references are left as they are (they name p already): the
	// admission policy lets veil-syncer change none.
	upd := have.DeepCopyObject().(C)
	c.kind.setSpec(upd, want)
	upd.SetLabels(want.GetLabels())
	upd.SetAnnotations(want.GetAnnotations())
	if err := c.kind.update(ctx, upd); err != nil {
		if apierrors.IsConflict(err) {
			return "", err
		}
		return c.refused(err), errIfTransient(err)
	}
	c.recorder.Eventf(p, corev1.EventTypeNormal, "Updated", "Updated %s %s/%s to the %s's spec", c.kind.child, ns, name, c.kind.name)
	return "", nil
}

// childLabels are the parent's labels for its children plus its own,
// which no label of the spec may replace.
func (c *fanOutController[P, C]) childLabels(p P) map[string]string {
	l := maps.Clone(c.kind.metadata(p).Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[c.kind.label] = p.GetName()
	return l
}

// refused is the failedNamespaces reason for an error of kube-apiserver:
// its message, which says what to fix (an admission policy's, a schema's).
func (c *fanOutController[P, C]) refused(err error) string {
	msg := err.Error()
	if len(msg) > 1024 {
		msg = msg[:1024] + "…"
	}
	return msg
}

// errIfTransient keeps err for a retry when trying again may help; a
// refusal (invalid, forbidden) waits for a change instead.
func errIfTransient(err error) error {
	if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) {
		return nil
	}
	return err
}

// collect deletes the children of the parent name that are not in keep
// ("namespace/name"): labelled for it and controlled by a parent of that
// name, whatever its UID.
func (c *fanOutController[P, C]) collect(ctx context.Context, name string, keep sets.Set[string]) error {
	sel := labels.SelectorFromSet(labels.Set{c.kind.label: name})
	children, err := c.kind.owned(sel)
	if err != nil {
		return err
	}
	var firstErr error
	for _, ch := range children {
		if keep.Has(ch.GetNamespace() + "/" + ch.GetName()) {
			continue
		}
		// Children of an earlier parent of the same name (another UID) are
		// orphans too.
		if !c.controlledByName(ch, name) {
			continue
		}
		err := c.kind.delete(ctx, ch.GetNamespace(), ch.GetName(), ch.GetUID())
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		klog.FromContext(ctx).Info("Deleted", "kind", c.kind.child, "object", klog.KObj(ch), "owner", name)
	}
	return firstErr
}

// release deletes every child of the parent name, which is gone or being
// deleted.
func (c *fanOutController[P, C]) release(ctx context.Context, name string) error {
	return c.collect(ctx, name, sets.New[string]())
}

func (c *fanOutController[P, C]) setReady(p P, st *configv1alpha1.ClusterSecretFanOutStatus, status metav1.ConditionStatus, reason, msg string) {
	apimeta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: configv1alpha1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: p.GetGeneration(),
	})
}

// writeStatus applies st when it changed (status.go).
func (c *fanOutController[P, C]) writeStatus(ctx context.Context, p P, st *configv1alpha1.ClusterSecretFanOutStatus) error {
	if equality.Semantic.DeepEqual(st, c.kind.status(p)) {
		return nil
	}
	body, err := applyStatusBody(c.kind.name, "", p.GetName(), st,
		func(s *configv1alpha1.ClusterSecretFanOutStatus) *[]metav1.Condition { return &s.Conditions },
		(*configv1alpha1.ClusterSecretFanOutStatus).DeepCopy)
	if err != nil {
		return err
	}
	err = c.kind.applyStatus(ctx, p.GetName(), body, applyOptions())
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
