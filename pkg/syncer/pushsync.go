package syncer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

// PushSourceClusterRole is the ClusterRole (artifacts/base/syncer) a
// namespace binds to let veil-syncer read its PushSecrets' source Secrets
// and create SecretPushes. It is bound in no namespace by default.
const PushSourceClusterRole = "veil-syncer:push-source"

// Event reasons of PushSecrets, besides EventDeleted.
const (
	EventPushed     = "Pushed"
	EventPushFailed = "PushFailed"
	// EventDeleteRefused names the remote keys left behind when a
	// PushSecret was released without deleting them.
	EventDeleteRefused = "DeleteRefused"
)

// Results of veil_syncer_push_syncs_total besides failures (the Ready
// reasons in configv1alpha1) and the ExternalSecret results Refreshed,
// Deleted and Gone.
const (
	resultPushed    = "Pushed"
	resultUnchanged = "Unchanged"
	resultReleased  = "Released"
)

// Results of veil_syncer_secretpushes_total.
const (
	secretPushSucceeded = "Succeeded"
	secretPushFailed    = "Failed"
	secretPushRefused   = "Refused"
)

// sync pushes the source Secret of ps, or, if ps is being deleted, deletes
// its remote keys as its deletionPolicy says. Values are held only in
// memory, for this call; no message built here contains one.
func (c *PushController) sync(ctx context.Context, ps *configv1alpha1.PushSecret) result {
	if ps.DeletionTimestamp != nil {
		return c.finalize(ctx, ps)
	}
	ps, err := c.setFinalizer(ctx, ps, ps.Spec.DeletionPolicy == configv1alpha1.PushSecretDeletionPolicyDelete)
	if err != nil {
		return c.finalizerFailed(ctx, ps, err)
	}
	st := ps.Status.DeepCopy()
	if ps.Spec.Selector.GeneratorRef != nil {
		return c.syncGenerated(ctx, ps, st)
	}
	src := ps.Spec.Selector.Secret.Name

	data, resourceVersion, err := c.readSource(ctx, ps)
	var missing *missingKeysError
	var whole *wholeSecretError
	var tooMany *tooManyKeysError
	var tmplErr *pushTemplateError
	// The source is watched only once the syncer has been allowed to read it.
	switch {
	case apierrors.IsForbidden(err):
		c.sources.release(keyOf(ps))
	case err == nil, apierrors.IsNotFound(err), errors.As(err, &missing), errors.As(err, &whole), errors.As(err, &tooMany), errors.As(err, &tmplErr):
		c.sources.use(keyOf(ps), sourceOf(ps), resourceVersion)
	}
	switch {
	case apierrors.IsForbidden(err):
		return c.fail(ctx, ps, st, configv1alpha1.ReasonNotPermitted, notPermitted(ps.Namespace, "read Secret "+src, "nothing was pushed", err), true)
	case apierrors.IsNotFound(err):
		// The watch of the source reports its creation.
		return c.fail(ctx, ps, st, configv1alpha1.ReasonSourceNotFound, fmt.Sprintf("Secret %s does not exist: nothing was pushed, and no remote key was deleted", src), false)
	case errors.As(err, &missing):
		return c.fail(ctx, ps, st, configv1alpha1.ReasonKeyNotFound, fmt.Sprintf("Secret %s has no key %s: nothing was pushed, and no remote key was deleted", src, quoted(missing.keys)), false)
	case errors.As(err, &whole):
		return c.fail(ctx, ps, st, configv1alpha1.ReasonSourceInvalid, fmt.Sprintf("Secret %s: %v: nothing was pushed, and no remote key was deleted", src, whole), false)
	case errors.As(err, &tmplErr):
		return c.fail(ctx, ps, st, configv1alpha1.ReasonTemplateError, fmt.Sprintf("Secret %s: spec.template: %v: nothing was pushed, and no remote key was deleted", src, tmplErr.err), true)
	case errors.As(err, &tooMany):
		return c.fail(ctx, ps, st, configv1alpha1.ReasonTooManyKeys, fmt.Sprintf("Secret %s: %v: nothing was pushed, and no remote key was deleted", src, tooMany), false)
	case err != nil:
		return c.fail(ctx, ps, st, configv1alpha1.ReasonSourceUnavailable, fmt.Sprintf("reading Secret %s: %v", src, err), true)
	}

	mac := pushHMAC(c.key, ps, data)
	synced := syncedVersion(ps.Generation, resourceVersion)
	if mac == st.DataHMAC && c.readyFor(ps) && !c.refreshDue(ps) {
		// Nothing to push: no SecretPush, so no provider call at all.
		st.SyncedResourceVersion = synced
		return c.finish(ctx, ps, st, resultUnchanged, false)
	}

	sp, err := c.secretPush(ctx, ps, esv1alpha1.SecretPushActionPush, data, nil)
	if err != nil {
		return c.refused(ctx, ps, st, esv1alpha1.SecretPushActionPush, err)
	}
	now := metav1.NewTime(c.clock.Now())
	failures := recordResults(st, sp.Status.Results, now)
	if len(failures) > 0 {
		return c.fail(ctx, ps, st, configv1alpha1.ReasonPushFailed, fmt.Sprintf("%d of %d remote keys were not pushed: %s",
			len(failures), len(sp.Status.Results), listed(failures, "; ")), true)
	}

	var pushed []string
	for _, r := range sp.Status.Results {
		if r.Result == esv1alpha1.SecretPushResultPushed {
			pushed = append(pushed, storeName(r.StoreRef)+" "+remoteKeyName(r.RemoteKey, r.Property))
		}
	}
	res := resultRefreshed
	if len(pushed) > 0 {
		res = resultPushed
		c.recorder.Eventf(ps, corev1.EventTypeNormal, EventPushed, "Pushed Secret %s (resourceVersion %s, data HMAC %s) to %s",
			src, resourceVersion, short(mac), listed(pushed, ", "))
		klog.FromContext(ctx).Info("Pushed", "pushSecret", klog.KObj(ps), "secret", src, "resourceVersion", resourceVersion,
			"dataHMAC", short(mac), "remoteKeys", len(pushed))
	}
	st.RefreshTime = &now
	st.DataHMAC = mac
	st.SyncedResourceVersion = synced
	c.setReady(st, ps, metav1.ConditionTrue, configv1alpha1.ReasonSynced, fmt.Sprintf("Secret %s is pushed to %s", src, storesOf(sp.Status.Results)))
	return c.finish(ctx, ps, st, res, false)
}

// missingKeysError: the source Secret lacks keys the PushSecret maps.
type missingKeysError struct{ keys []string }

func (e *missingKeysError) Error() string { return "missing keys " + quoted(e.keys) }

// readSource gets the source Secret and returns the values the PushSecret
// maps, and the Secret's resourceVersion. The Secret itself is not kept.
func (c *PushController) readSource(ctx context.Context, ps *configv1alpha1.PushSecret) (map[string][]byte, string, error) {
	s, err := c.secrets.Secrets(ps.Namespace).Get(ctx, ps.Spec.Selector.Secret.Name, metav1.GetOptions{})
	if err != nil {
		return nil, "", err
	}
	src, named := s.Data, map[string]bool(nil)
	if ps.Spec.Template != nil {
		if src, named, err = c.renderPush(ctx, ps, s.Data); err != nil {
			return nil, "", &pushTemplateError{err: err}
		}
	}
	data := map[string][]byte{}
	var missing []string
	for _, d := range ps.Spec.Data {
		k := d.Match.SecretKey
		if k == "" {
			if _, done := data[k]; done {
				continue
			}
			whole, err := wholeSecret(src)
			if err != nil {
				return nil, "", err
			}
			data[k] = whole
			continue
		}
		v, ok := src[k]
		switch {
		case !ok && !slices.Contains(missing, k):
			missing = append(missing, k)
		case ok:
			data[k] = v
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, "", &missingKeysError{keys: missing}
	}
	if err := addDataTo(ps, src, named, data); err != nil {
		return nil, "", err
	}
	return data, s.ResourceVersion, nil
}

// pushTemplateError: spec.template does not render. Its message comes
// from the template engine, which never quotes a value.
type pushTemplateError struct{ err error }

func (e *pushTemplateError) Error() string { return e.err.Error() }

// renderPush applies spec.template to the source Secret's data, as
// External Secrets Operator does before a push: the rendered keys (laid
// over the data with mergePolicy Merge) are what data and dataTo name.
//
// It also returns the keys whose names are not rendered (nil: every key):
// the source Secret's keys and those a template is named by. A key that a
// KeysAndValues template renders may be made of a value, and dataTo would
// make it a remote key, which status and Events name; so dataTo matches
// only the keys returned. spec.data may still name any key: its remote
// key is in the spec.
func (c *PushController) renderPush(ctx context.Context, ps *configv1alpha1.PushSecret, values map[string][]byte) (map[string][]byte, map[string]bool, error) {
	tmpl := ps.Spec.Template
	if tmpl.EngineVersion != "" && tmpl.EngineVersion != "v2" {
		return nil, nil, fmt.Errorf("engineVersion %s is not supported: Veil's templates are External Secrets Operator's v2 engine; rewrite the templates for v2 and set engineVersion v2", tmpl.EngineVersion)
	}
	sources, err := templateSourcesOf(ctx, c.configMaps, ps.Namespace, tmpl)
	if err != nil {
		return nil, nil, err
	}
	if len(sources) == 0 {
		return values, nil, nil
	}
	data, err := template.RenderSources(sources, values)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.MergePolicy == configv1alpha1.MergePolicyMerge {
		data = mergeOver(values, data)
	}
	named := make(map[string]bool, len(values)+len(sources))
	for k := range values {
		named[k] = true
	}
	for _, s := range sources {
		if !s.KeysAndValues {
			named[s.Key] = true
		}
	}
	return data, named, nil
}

// tooManyKeysError: spec.dataTo matches more keys than one PushSecret may
// push with it. It names the count and the bound, never a value.
type tooManyKeysError struct{ n int }

func (e *tooManyKeysError) Error() string {
	return fmt.Sprintf("spec.dataTo matches %d of its keys, more than the %d one PushSecret may push with dataTo; narrow dataTo[].match.regexp or split the Secret",
		e.n, configv1alpha1.MaxDataToKeys)
}

// addDataTo adds to data the keys of the source Secret that spec.dataTo
// matches and spec.data does not name; veil-apiserver maps them to remote
// keys and checks each. named, when not nil, lists the only keys dataTo may
// match (see renderPush). A match regexp that does not compile is left to
// veil-apiserver, which refuses the push naming it.
func addDataTo(ps *configv1alpha1.PushSecret, src map[string][]byte, named map[string]bool, data map[string][]byte) error {
	if len(ps.Spec.DataTo) == 0 {
		return nil
	}
	matchers := make([]*regexp.Regexp, 0, len(ps.Spec.DataTo))
	all := false
	for _, d := range ps.Spec.DataTo {
		if d.Match == nil || d.Match.Regexp == "" {
			all = true
			continue
		}
		if re, err := regexp.Compile(d.Match.Regexp); err == nil {
			matchers = append(matchers, re)
		}
	}
	explicit := map[string]bool{}
	for _, d := range ps.Spec.Data {
		explicit[d.Match.SecretKey] = true
	}
	n := 0
	for k, v := range src {
		if explicit[k] || named != nil && !named[k] {
			continue
		}
		if !all && !slices.ContainsFunc(matchers, func(re *regexp.Regexp) bool { return re.MatchString(k) }) {
			continue
		}
		if n++; n > configv1alpha1.MaxDataToKeys {
			continue
		}
		data[k] = v
	}
	if n > configv1alpha1.MaxDataToKeys {
		return &tooManyKeysError{n: n}
	}
	return nil
}

// wholeSecretError: the source Secret cannot be pushed as one JSON object.
// It names keys and sizes, never values.
type wholeSecretError struct{ msg string }

func (e *wholeSecretError) Error() string { return e.msg }

// wholeSecret is the value of the data entries without secretKey, as in
// External Secrets Operator: a JSON object of every key of the Secret to
// its value as a string. encoding/json writes map keys sorted, so an
// unchanged Secret gives the same bytes, and the same HMAC. A value that is
// not UTF-8 would be changed by JSON (ESO pushes it mangled), so it is
// refused; and the object is bounded like any value Veil serves or pushes (1 MiB).
func wholeSecret(data map[string][]byte) ([]byte, error) {
	obj := make(map[string]string, len(data))
	var binary []string
	for k, v := range data {
		if !utf8.Valid(v) {
			binary = append(binary, k)
		}
		obj[k] = string(v)
	}
	if len(binary) > 0 {
		sort.Strings(binary)
		return nil, &wholeSecretError{fmt.Sprintf("the Secret's keys %s are not UTF-8 text, so it cannot be pushed whole as a JSON object of strings; "+
			"push those keys by secretKey instead", quoted(binary))}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// As ESO writes it: "<", ">" and "&" as they are.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(obj); err != nil {
		return nil, err
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	if len(out) > esv1alpha1.MaxWholeSecretBytes {
		return nil, &wholeSecretError{fmt.Sprintf("the Secret as one JSON object is %d bytes, more than the %d (1 MiB) Veil pushes as one value; "+
			"push its keys by secretKey instead", len(out), esv1alpha1.MaxWholeSecretBytes)}
	}
	return out, nil
}

// finalize handles a PushSecret being deleted. With deletionPolicy Delete,
// its remote keys are deleted through a SecretPush, which deletes only keys
// this PushSecret owns. A failure that may pass (a provider down) keeps the
// finalizer and is retried, and nothing is deleted meanwhile; a refusal
// that will not pass (a key not its own, a store that refuses or is gone)
// is reported in status and an Event, and the finalizer is released, so
// that neither the PushSecret nor its namespace waits forever. With None,
// or if nothing was ever pushed, the finalizer is removed and the remote
// keys stay.
func (c *PushController) finalize(ctx context.Context, ps *configv1alpha1.PushSecret) result {
	if !slices.Contains(ps.Finalizers, configv1alpha1.PushSecretFinalizer) {
		return result{result: resultGone}
	}
	if ps.Spec.DeletionPolicy != configv1alpha1.PushSecretDeletionPolicyDelete || !pushedAny(&ps.Status) {
		klog.FromContext(ctx).Info("Releasing a deleted PushSecret; its remote keys stay", "pushSecret", klog.KObj(ps), "deletionPolicy", ps.Spec.DeletionPolicy)
		return c.release(ctx, ps, resultReleased)
	}
	st := ps.Status.DeepCopy()
	sp, err := c.secretPush(ctx, ps, esv1alpha1.SecretPushActionDelete, nil, dataToKeys(ps))
	if err != nil {
		if c.refusedForGood(ctx, ps.Namespace, err) {
			return c.abandon(ctx, ps, st, fmt.Sprintf("veil-apiserver refused to delete the remote keys: %v", err))
		}
		if apierrors.IsForbidden(err) && c.namespaceTerminating(ctx, ps.Namespace) {
			// Deleting a namespace deletes its RoleBindings too, often
			// before its PushSecrets: the grant to push is gone for good,
			// and waiting for it would hold the namespace in Terminating.
			return c.abandon(ctx, ps, st, fmt.Sprintf("namespace %s is being deleted and no longer lets veil-syncer create secretpushes, so the remote keys were not deleted: %v", ps.Namespace, err))
		}
		return c.refused(ctx, ps, st, esv1alpha1.SecretPushActionDelete, err)
	}
	recordResults(st, sp.Status.Results, metav1.NewTime(c.clock.Now()))
	var deleted, failed, notOwned []string
	for _, r := range sp.Status.Results {
		name := storeName(r.StoreRef) + " " + remoteKeyName(r.RemoteKey, r.Property)
		switch r.Result {
		case esv1alpha1.SecretPushResultFailed:
			failed = append(failed, fmt.Sprintf("%s: %s: %s", name, r.Reason, r.Message))
		case esv1alpha1.SecretPushResultNotOwner:
			notOwned = append(notOwned, fmt.Sprintf("%s: %s", name, r.Message))
		default:
			deleted = append(deleted, name)
		}
	}
	if len(failed) > 0 {
		return c.fail(ctx, ps, st, configv1alpha1.ReasonDeleteFailed, fmt.Sprintf("%d of %d remote keys were not deleted: %s; the finalizer %s stays until they are "+
			"(remove it by hand to delete the PushSecret and keep them)", len(failed), len(sp.Status.Results), listed(failed, "; "), configv1alpha1.PushSecretFinalizer), true)
	}
	if len(notOwned) > 0 {
		msg := fmt.Sprintf("%d of %d remote keys are not this PushSecret's and were left as they were: %s", len(notOwned), len(sp.Status.Results), listed(notOwned, "; "))
		if len(deleted) > 0 {
			msg += "; deleted " + listed(deleted, ", ")
		}
		return c.abandon(ctx, ps, st, msg)
	}
	c.recorder.Eventf(ps, corev1.EventTypeNormal, EventDeleted, "Deleted %s (deletionPolicy Delete)", listed(deleted, ", "))
	klog.FromContext(ctx).Info("Deleted remote keys", "pushSecret", klog.KObj(ps), "remoteKeys", len(deleted))
	return c.release(ctx, ps, resultDeleted)
}

// dataToKeys are the source keys that status.syncedPushSecrets records
// beyond those spec.data names: the keys dataTo pushed, whose remote keys
// a Delete must name again. Sorted, and bounded as veil-apiserver bounds them.
func dataToKeys(ps *configv1alpha1.PushSecret) []string {
	if len(ps.Spec.DataTo) == 0 {
		return nil
	}
	named := map[string]bool{}
	for _, d := range ps.Spec.Data {
		named[d.Match.SecretKey] = true
	}
	var keys []string
	for _, byKey := range ps.Status.SyncedPushSecrets {
		for _, d := range byKey {
			if k := d.Match.SecretKey; k != "" && !named[k] && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	if len(keys) > configv1alpha1.MaxDataToKeys {
		keys = keys[:configv1alpha1.MaxDataToKeys]
	}
	return keys
}

// refusedForGood: veil-apiserver (not RBAC, which a namespace may yet
// grant) refused a delete in a way no retry changes: the store is gone or
// may not be used from the namespace (403), or the request cannot work
// (400, 404, 422).
func (c *PushController) refusedForGood(ctx context.Context, ns string, err error) bool {
	switch {
	case apierrors.IsNotFound(err), apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return true
	case apierrors.IsForbidden(err):
		allowed, rerr := c.mayCreateSecretPushes(ctx, ns)
		return rerr == nil && allowed
	}
	return false
}

// namespaceTerminating says whether ns is being deleted; an error reading it
// says no, so a transient failure never releases a finalizer.
func (c *PushController) namespaceTerminating(ctx context.Context, ns string) bool {
	n, err := c.namespaces.Namespaces().Get(ctx, ns, metav1.GetOptions{})
	return err == nil && n.DeletionTimestamp != nil
}

// abandon reports why the remote keys of a deleted PushSecret stay, in its
// status and a Warning Event, and releases the finalizer.
func (c *PushController) abandon(ctx context.Context, ps *configv1alpha1.PushSecret, st *configv1alpha1.PushSecretStatus, why string) result {
	msg := fmt.Sprintf("%s; the finalizer %s is released, so what was left must be deleted by hand if at all", why, configv1alpha1.PushSecretFinalizer)
	c.setReady(st, ps, metav1.ConditionFalse, configv1alpha1.ReasonDeleteRefused, msg)
	c.recorder.Eventf(ps, corev1.EventTypeWarning, EventDeleteRefused, "%s", msg)
	klog.FromContext(ctx).Info("Releasing a deleted PushSecret whose remote keys could not all be deleted", "pushSecret", klog.KObj(ps), "message", msg)
	updated, err := c.writeStatus(ctx, ps, st)
	switch {
	case apierrors.IsNotFound(err):
		return result{result: resultGone}
	case err != nil:
		klog.FromContext(ctx).Error(err, "Writing status", "pushSecret", klog.KObj(ps))
		return result{result: configv1alpha1.ReasonDeleteRefused, retry: true}
	}
	// The status write changed the resourceVersion the finalizer patch
	// must name.
	return c.release(ctx, updated, configv1alpha1.ReasonDeleteRefused)
}

// pushedAny: some remote key was written, or found holding the value, by a
// push of this PushSecret. Keys it never wrote — skipped because they
// existed (IfNotExists), or never reached — are not its to delete.
func pushedAny(st *configv1alpha1.PushSecretStatus) bool {
	for _, keys := range st.SyncedPushSecrets {
		for _, k := range keys {
			if k.PushTime != nil || k.Result == esv1alpha1.SecretPushResultPushed || k.Result == esv1alpha1.SecretPushResultUnchanged {
				return true
			}
		}
	}
	return false
}

// release removes the finalizer of a deleted PushSecret.
func (c *PushController) release(ctx context.Context, ps *configv1alpha1.PushSecret, res string) result {
	_, err := c.setFinalizer(ctx, ps, false)
	switch {
	case err == nil:
		return result{result: res}
	case apierrors.IsNotFound(err):
		return result{result: resultGone}
	default:
		klog.FromContext(ctx).Error(err, "Removing the finalizer", "pushSecret", klog.KObj(ps))
		return result{result: configv1alpha1.ReasonFinalizerFailed, retry: true}
	}
}

// setFinalizer adds or removes the PushSecret finalizer. The merge patch
// carries the resourceVersion, so it cannot drop a finalizer someone else
// added meanwhile: it fails with a conflict and is retried.
func (c *PushController) setFinalizer(ctx context.Context, ps *configv1alpha1.PushSecret, want bool) (*configv1alpha1.PushSecret, error) {
	if slices.Contains(ps.Finalizers, configv1alpha1.PushSecretFinalizer) == want {
		return ps, nil
	}
	finalizers := slices.DeleteFunc(slices.Clone(ps.Finalizers), func(f string) bool { return f == configv1alpha1.PushSecretFinalizer })
	if want {
		finalizers = append(finalizers, configv1alpha1.PushSecretFinalizer)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"finalizers":      finalizers,
		"resourceVersion": ps.ResourceVersion,
	}})
	if err != nil {
		return ps, err
	}
	updated, err := c.veil.ConfigV1alpha1().PushSecrets(ps.Namespace).Patch(ctx, ps.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
	if err != nil {
		return ps, err
	}
	return updated, nil
}

func (c *PushController) finalizerFailed(ctx context.Context, ps *configv1alpha1.PushSecret, err error) result {
	if apierrors.IsNotFound(err) {
		return result{result: resultGone}
	}
	if apierrors.IsConflict(err) {
		// Our informer has not seen the newest PushSecret yet.
		return result{result: configv1alpha1.ReasonFinalizerFailed, retry: true}
	}
	return c.fail(ctx, ps, ps.Status.DeepCopy(), configv1alpha1.ReasonFinalizerFailed, fmt.Sprintf("setting the finalizer %s: %v", configv1alpha1.PushSecretFinalizer, err), true)
}

// secretPush creates a SecretPush for ps and counts it and its results.
func (c *PushController) secretPush(ctx context.Context, ps *configv1alpha1.PushSecret, action esv1alpha1.SecretPushAction, data map[string][]byte, keys []string) (*esv1alpha1.SecretPush, error) {
	sp, err := c.veil.ExternalsecretsV1alpha1().SecretPushes(ps.Namespace).Create(ctx, &esv1alpha1.SecretPush{
		ObjectMeta: metav1.ObjectMeta{Name: ps.Name},
		Spec:       esv1alpha1.SecretPushSpec{Action: action, Data: data, SecretKeys: keys},
	}, metav1.CreateOptions{})
	if err != nil {
		secretPushes.WithLabelValues(string(action), secretPushRefused).Inc()
		return nil, err
	}
	res := secretPushSucceeded
	for _, r := range sp.Status.Results {
		pushedKeys.WithLabelValues(string(action), r.Result).Inc()
		if r.Result == esv1alpha1.SecretPushResultFailed {
			res = secretPushFailed
		}
	}
	secretPushes.WithLabelValues(string(action), res).Inc()
	return sp, nil
}

// refused records why the API refused a SecretPush; nothing was written.
func (c *PushController) refused(ctx context.Context, ps *configv1alpha1.PushSecret, st *configv1alpha1.PushSecretStatus, action esv1alpha1.SecretPushAction, err error) result {
	consequence := "nothing was pushed"
	if action == esv1alpha1.SecretPushActionDelete {
		consequence = fmt.Sprintf("the remote keys were not deleted, and the finalizer %s stays (remove it by hand to delete the PushSecret and keep them)", configv1alpha1.PushSecretFinalizer)
	}
	if apierrors.IsForbidden(err) {
		// A 403 is either RBAC's (no create on secretpushes here) or
		// veil-apiserver's (a read-only store, a ClusterSecretStore the
		// namespace may not use); only a review tells them apart.
		if allowed, rerr := c.mayCreateSecretPushes(ctx, ps.Namespace); rerr == nil && !allowed {
			return c.fail(ctx, ps, st, configv1alpha1.ReasonNotPermitted, notPermitted(ps.Namespace, "create secretpushes", consequence, err), true)
		}
	}
	reason := configv1alpha1.ReasonPushRefused
	switch {
	case action == esv1alpha1.SecretPushActionDelete:
		reason = configv1alpha1.ReasonDeleteFailed
	case !isClientError(err):
		// Not a refusal: the request did not get through, or failed.
		reason = configv1alpha1.ReasonPushFailed
	}
	return c.fail(ctx, ps, st, reason, fmt.Sprintf("SecretPush %s: %v; %s", action, err, consequence), true)
}

// isClientError: the API refused the request itself (4xx), rather than
// failing to carry it out.
func isClientError(err error) bool {
	var s apierrors.APIStatus
	if !errors.As(err, &s) {
		return false
	}
	code := s.Status().Code
	return code >= 400 && code < 500
}

// mayCreateSecretPushes asks kube-apiserver whether the syncer may create
// secretpushes in ns. Every authenticated user may ask about itself
// (system:basic-user).
func (c *PushController) mayCreateSecretPushes(ctx context.Context, ns string) (bool, error) {
	r, err := c.reviews.SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: "create", Group: esv1alpha1.SchemeGroupVersion.Group, Resource: "secretpushes",
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return r.Status.Allowed, nil
}

// notPermitted says what the namespace must grant for its PushSecrets to work.
func notPermitted(ns, what, consequence string, err error) string {
	return fmt.Sprintf("veil-syncer may not %s in namespace %s, so %s. To let it carry out this namespace's PushSecrets, bind the ClusterRole %s "+
		"to its ServiceAccount with a RoleBinding in %s (artifacts/examples/push), or grant it a Role with get, list and watch on the source Secret "+
		"by name (resourceNames) and create on secretpushes. kube-apiserver said: %v", what, ns, consequence, PushSourceClusterRole, ns, err)
}

// recordResults puts the results of a SecretPush into st.syncedPushSecrets
// and returns a description of each failure. Push times are kept for keys
// not written this time.
func recordResults(st *configv1alpha1.PushSecretStatus, results []esv1alpha1.SecretPushResult, now metav1.Time) []string {
	next := map[string]map[string]configv1alpha1.PushSecretSyncedData{}
	var failures []string
	for _, r := range results {
		store, key := storeName(r.StoreRef), remoteKeyName(r.RemoteKey, r.Property)
		e := configv1alpha1.PushSecretSyncedData{
			Match: configv1alpha1.PushSecretMatch{
				SecretKey: r.SecretKey,
				RemoteRef: configv1alpha1.PushSecretRemoteRef{RemoteKey: r.RemoteKey, Property: r.Property},
			},
			Result:   r.Result,
			PushTime: st.SyncedPushSecrets[store][key].PushTime,
		}
		if r.Result == esv1alpha1.SecretPushResultPushed {
			e.PushTime = &now
		}
		if next[store] == nil {
			next[store] = map[string]configv1alpha1.PushSecretSyncedData{}
		}
		next[store][key] = e
		if r.Result == esv1alpha1.SecretPushResultFailed || r.Result == esv1alpha1.SecretPushResultNotOwner {
			failures = append(failures, fmt.Sprintf("%s %s: %s: %s", store, key, r.Reason, r.Message))
		}
	}
	st.SyncedPushSecrets = next
	return failures
}

// storeName is the "Kind/name" of a store, the key of syncedPushSecrets.
func storeName(s esv1alpha1.StoreRef) string { return s.Kind + "/" + s.Name }

// remoteKeyName names a remote key, or one property of it, in
// syncedPushSecrets and messages. "#" separates the property because remote
// keys contain "/" and no AWS name may contain "#".
func remoteKeyName(key, property string) string {
	if property == "" {
		return key
	}
	return key + "#" + property
}

// storesOf lists the stores of results, for the Ready message.
func storesOf(results []esv1alpha1.SecretPushResult) string {
	var stores []string
	for _, r := range results {
		if s := storeName(r.StoreRef); !slices.Contains(stores, s) {
			stores = append(stores, s)
		}
	}
	return strings.Join(stores, ", ")
}

// maxListed bounds the items a status message or Event lists: with dataTo a
// push can write hundreds of remote keys, and a condition message holds at
// most 32768 characters.
const maxListed = 20

// listed joins items, the first maxListed of them, saying how many more.
func listed(items []string, sep string) string {
	if len(items) <= maxListed {
		return strings.Join(items, sep)
	}
	return fmt.Sprintf("%s%sand %d more", strings.Join(items[:maxListed], sep), sep, len(items)-maxListed)
}

func quoted(keys []string) string {
	q := make([]string, len(keys))
	for i, k := range keys {
		q[i] = fmt.Sprintf("%q", k)
	}
	return strings.Join(q, ", ")
}
