package syncer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

// Event reasons. Events carry their own timestamps and, with the status and
// the managedFields of the Secret (field manager veil-syncer), are the
// record of when what was written.
const (
	EventSynced    = "Synced"
	EventUpdated   = "Updated"
	EventDeleted   = "Deleted"
	EventSyncError = "SyncError"
)

// Results of a successful sync in veil_syncer_syncs_total; a failed sync
// counts under its Ready reason (configv1alpha1).
const (
	resultCreated   = "Created"
	resultUpdated   = "Updated"
	resultRefreshed = "Refreshed"
	resultRepaired  = "Repaired"
	resultDeleted   = "Deleted"
	resultGone      = "Gone"
	// resultHeld: spec.syncWindows held a refresh; nothing was read or written.
	resultHeld = "Held"
)

// writableSecretTypes are the Secret types a target may have; the
// admission policy veil-syncer-secrets allows the same.
var writableSecretTypes = []corev1.SecretType{corev1.SecretTypeOpaque, corev1.SecretTypeBasicAuth, corev1.SecretTypeSSHAuth,
	corev1.SecretTypeTLS, corev1.SecretTypeDockercfg, corev1.SecretTypeDockerConfigJson}

// values returns the values of es: those the watch sent, if they are as
// new as es, or else those a GET reads.
func (c *Controller) values(ctx context.Context, es *configv1alpha1.ExternalSecret) (*esv1alpha1.ExternalSecretValue, error) {
	if v := c.feed.take(es); v != nil {
		valueReads.WithLabelValues("watch").Inc()
		c.feed.noteRead(keyOf(es), v.ResourceVersion)
		return v, nil
	}
	// Not older than the ExternalSecret this sync is for: a value change
	// recorded in its status must be seen by the replica that answers.
	v, err := c.veil.ExternalsecretsV1alpha1().ExternalSecretValues(es.Namespace).Get(ctx, es.Name, metav1.GetOptions{ResourceVersion: es.ResourceVersion})
	if err == nil {
		valueReads.WithLabelValues("get").Inc()
		c.feed.noteRead(keyOf(es), v.ResourceVersion)
	}
	return v, err
}

type result struct {
	result string
	// retry asks for a retry with backoff rather than at the refresh interval.
	retry bool
}

// sync brings the target of es in line with its values and records the
// outcome in its status and in Events. Values are held only in memory, for
// this call; no message built here contains one.
func (c *Controller) sync(ctx context.Context, es *configv1alpha1.ExternalSecret) result {
	t := es.Spec.Target
	st := es.Status.DeepCopy()
	if c.excluded.Has(es.Namespace) {
		return c.fail(ctx, es, st, configv1alpha1.ReasonNamespaceExcluded, fmt.Sprintf(
			"veil-syncer never writes in namespace %s (--excluded-namespaces): move the ExternalSecret to another namespace, or remove spec.target", es.Namespace), false)
	}
	if t.CreationPolicy == configv1alpha1.CreatePolicyNone {
		c.setReady(st, es, metav1.ConditionTrue, configv1alpha1.ReasonCreationPolicyNone, "creationPolicy None: veil-syncer writes no Secret")
		return c.finish(ctx, es, st, configv1alpha1.ReasonCreationPolicyNone, false)
	}
	name := targetName(es)
	if es.Spec.RefreshPolicy == configv1alpha1.RefreshCreatedOnce && st.TargetUID != "" {
		c.setReady(st, es, metav1.ConditionTrue, configv1alpha1.ReasonSynced, fmt.Sprintf("refreshPolicy CreatedOnce: Secret %s was written once and is not updated", name))
		return c.finish(ctx, es, st, resultRefreshed, false)
	}

	if held, msg := c.windowHolds(es, st); held {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: configv1alpha1.ConditionSyncWindow, Status: metav1.ConditionFalse,
			Reason: configv1alpha1.ReasonSyncWindowHeld, Message: msg, ObservedGeneration: es.Generation})
		return c.finish(ctx, es, st, resultHeld, false)
	}

	v, err := c.values(ctx, es)
	if apierrors.IsNotFound(err) {
		return c.remoteGone(ctx, es, st, name, err)
	}
	if err != nil {
		return c.fail(ctx, es, st, configv1alpha1.ReasonValuesUnavailable, "reading the values: "+err.Error(), true)
	}
	d, err := c.desired(ctx, es, v, name)
	if err != nil {
		var te *template.Error
		if errors.As(err, &te) {
			return c.fail(ctx, es, st, configv1alpha1.ReasonTemplateError, err.Error()+"; the Secret was left as it was", false)
		}
		return c.fail(ctx, es, st, configv1alpha1.ReasonTargetInvalid, err.Error(), false)
	}

	last := dataChanged
	switch {
	case st.TargetUID == "":
		last = neverWritten
	case st.DataHMAC == d.hmac && c.readyFor(es):
		last = unchanged
	}
	w, err := c.writer.write(ctx, d, last)
	if err != nil {
		return c.writeFailed(ctx, es, st, d, err)
	}
	st.TargetUID = w.uid

	newData := st.DataHMAC != "" && st.DataHMAC != d.hmac
	var restarted []string
	if newData {
		if restarted, err = c.restart(ctx, es, d.hmac); err != nil {
			// The data HMAC is not recorded, so the next attempt restarts
			// again (the same annotation value makes repeats harmless).
			return c.fail(ctx, es, st, configv1alpha1.ReasonRolloutFailed, fmt.Sprintf("Secret %s was written, but a rollout restart failed: %v", name, err), true)
		}
	}

	res := resultRefreshed
	switch {
	case w.created:
		res = resultCreated
		c.recorder.Eventf(es, corev1.EventTypeNormal, EventSynced, "Created Secret %s (resourceVersion %s, data HMAC %s)", name, w.resourceVersion, short(d.hmac))
	case w.repaired:
		// Someone else changed the Secret: the record says so.
		res = resultRepaired
		c.recorder.Eventf(es, corev1.EventTypeWarning, EventUpdated,
			"Secret %s was changed outside veil-syncer; its data and marks were written again (resourceVersion %s, data HMAC %s)", name, w.resourceVersion, short(d.hmac))
	case newData || st.DataHMAC == "":
		res = resultUpdated
		msg := fmt.Sprintf("Wrote new data to Secret %s (resourceVersion %s, data HMAC %s)", name, w.resourceVersion, short(d.hmac))
		if len(restarted) > 0 {
			msg += "; restarted " + strings.Join(restarted, ", ")
		}
		c.recorder.Event(es, corev1.EventTypeNormal, EventUpdated, msg)
	}
	if res != resultRefreshed {
		klog.FromContext(ctx).Info("Wrote target Secret", "externalSecret", klog.KObj(es), "secret", name,
			"result", res, "resourceVersion", w.resourceVersion, "dataHMAC", short(d.hmac))
	}
	if st.SyncedResourceVersion == "" {
		timeToFirstSync.Observe(c.clock.Since(es.CreationTimestamp.Time).Seconds())
	}
	now := metav1.NewTime(c.clock.Now())
	st.RefreshTime = &now
	st.DataHMAC = d.hmac
	st.SyncedResourceVersion = fmt.Sprintf("%d-%s", es.Generation, w.resourceVersion)
	c.setReady(st, es, metav1.ConditionTrue, configv1alpha1.ReasonSynced, fmt.Sprintf("Secret %s is in sync", name))
	return c.finish(ctx, es, st, res, false)
}

// desired renders the target from the values.
func (c *Controller) desired(ctx context.Context, es *configv1alpha1.ExternalSecret, v *esv1alpha1.ExternalSecretValue, name string) (*desired, error) {
	t := es.Spec.Target
	d := &desired{
		namespace:   es.Namespace,
		name:        name,
		es:          es,
		policy:      t.CreationPolicy,
		secretType:  corev1.SecretType(v.Type),
		data:        v.Data,
		immutable:   t.Immutable,
		labels:      map[string]string{},
		annotations: map[string]string{},
	}
	if d.policy == "" {
		d.policy = configv1alpha1.CreatePolicyOwner
	}
	if tmpl := t.Template; tmpl != nil {
		if tmpl.Type != "" {
			d.secretType = tmpl.Type
		}
		if tmpl.EngineVersion != "" && tmpl.EngineVersion != "v2" {
			return nil, fmt.Errorf("template engineVersion %s is not supported: Veil's templates are External Secrets Operator's v2 engine; rewrite the templates for v2 and set engineVersion v2", tmpl.EngineVersion)
		}
		sources, err := c.templateSources(ctx, es)
		if err != nil {
			return nil, err
		}
		if len(sources) > 0 {
			data, err := template.RenderSources(sources, v.Data)
			if err != nil {
				return nil, err
			}
			// mergePolicy Merge lays the rendered keys over the values;
			// Replace (the default) keeps only what was rendered.
			if tmpl.MergePolicy == configv1alpha1.MergePolicyMerge {
				data = mergeOver(v.Data, data)
			}
			d.data = data
		}
		// Labels and annotations are copied, never templated: metadata is
		// readable by anyone who can list Secrets' names.
		maps.Copy(d.labels, tmpl.Metadata.Labels)
		maps.Copy(d.annotations, tmpl.Metadata.Annotations)
		if d.policy != configv1alpha1.CreatePolicyMerge {
			if err := checkFinalizers(tmpl.Metadata.Finalizers); err != nil {
				return nil, err
			}
			d.finalizers = tmpl.Metadata.Finalizers
		}
	}
	if d.secretType == "" {
		d.secretType = corev1.SecretTypeOpaque
	}
	if !slices.Contains(writableSecretTypes, d.secretType) {
		// Other types can mean something to Kubernetes: it fills a
		// ServiceAccount token Secret with a token of the ServiceAccount it
		// names, and a bootstrap token lets a node join. The admission
		// policy veil-syncer-secrets refuses them too.
		return nil, fmt.Errorf("template type %s is refused: veil-syncer writes only Secrets of type Opaque, %s, %s, %s, %s or %s", d.secretType,
			corev1.SecretTypeBasicAuth, corev1.SecretTypeSSHAuth, corev1.SecretTypeTLS, corev1.SecretTypeDockercfg, corev1.SecretTypeDockerConfigJson)
	}
	d.hmac = dataHMAC(c.key, es, d.data)
	d.labels[configv1alpha1.ManagedByLabel] = configv1alpha1.ManagedBySyncer
	d.annotations[configv1alpha1.ExternalSecretAnnotation] = es.Name
	d.annotations[configv1alpha1.DataHMACAnnotation] = d.hmac
	return d, nil
}

// writeFailed records why a write was refused.
func (c *Controller) writeFailed(ctx context.Context, es *configv1alpha1.ExternalSecret, st *configv1alpha1.ExternalSecretStatus, d *desired, err error) result {
	var invalid *invalidError
	switch {
	case errors.Is(err, errConflict) && d.policy == configv1alpha1.CreatePolicyMerge:
		return c.fail(ctx, es, st, configv1alpha1.ReasonTargetConflict, fmt.Sprintf(
			"Secret %s has not opted in to creationPolicy Merge: veil-syncer adds keys only to a Secret annotated %s=%s; the Secret was not changed",
			d.name, configv1alpha1.MergeFromAnnotation, es.Name), false)
	case errors.Is(err, errConflict):
		return c.fail(ctx, es, st, configv1alpha1.ReasonTargetConflict, fmt.Sprintf(
			"Secret %s exists and was not created by veil-syncer for this ExternalSecret (label %s=%s, annotation %s=%s); it was not changed. "+
				"Delete it, choose another target name, or use creationPolicy Merge", d.name, configv1alpha1.ManagedByLabel, configv1alpha1.ManagedBySyncer, configv1alpha1.ExternalSecretAnnotation, es.Name), false)
	case errors.Is(err, errMissing):
		return c.fail(ctx, es, st, configv1alpha1.ReasonTargetMissing, fmt.Sprintf(
			"creationPolicy Merge writes into an existing Secret only: create Secret %s annotated %s=%s", d.name, configv1alpha1.MergeFromAnnotation, es.Name), false)
	case errors.As(err, &invalid) && d.immutable:
		return c.fail(ctx, es, st, configv1alpha1.ReasonTargetImmutable, fmt.Sprintf(
			"Secret %s is immutable and its data or type changed: delete it and veil-syncer creates it again (%v)", d.name, invalid.err), false)
	case errors.As(err, &invalid):
		return c.fail(ctx, es, st, configv1alpha1.ReasonTargetInvalid, fmt.Sprintf("kube-apiserver refused the change to Secret %s: %v", d.name, invalid.err), false)
	default:
		return c.fail(ctx, es, st, configv1alpha1.ReasonWriteFailed, fmt.Sprintf("writing Secret %s: %v", d.name, err), true)
	}
}

// remoteGone handles values that no longer exist: the target keeps its last
// values (Retain) or is deleted (Delete) — only if it is still the very
// Secret veil-syncer wrote, by UID.
func (c *Controller) remoteGone(ctx context.Context, es *configv1alpha1.ExternalSecret, st *configv1alpha1.ExternalSecretStatus, name string, notFound error) result {
	t := es.Spec.Target
	msg := notFound.Error()
	switch {
	case t.CreationPolicy == configv1alpha1.CreatePolicyMerge:
		return c.fail(ctx, es, st, configv1alpha1.ReasonRemoteNotFound, fmt.Sprintf("%s; Secret %s keeps the keys veil-syncer added (a Secret merged into is never deleted)", msg, name), false)
	case t.DeletionPolicy != configv1alpha1.DeletionPolicyDelete:
		return c.fail(ctx, es, st, configv1alpha1.ReasonRemoteNotFound, fmt.Sprintf("%s; Secret %s keeps its last values (deletionPolicy Retain)", msg, name), false)
	case st.TargetUID == "":
		return c.fail(ctx, es, st, configv1alpha1.ReasonRemoteNotFound, fmt.Sprintf("%s; no Secret written by veil-syncer is left to delete (deletionPolicy Delete)", msg), false)
	}
	// The values are also "not found" when the ExternalSecret itself was
	// just deleted and our informer has not seen it yet: deleting then
	// would delete a target that creationPolicy Orphan must keep.
	live, err := c.veil.ConfigV1alpha1().ExternalSecrets(es.Namespace).Get(ctx, es.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && (live.UID != es.UID || live.DeletionTimestamp != nil)) {
		return result{result: resultGone}
	}
	if err != nil {
		return c.fail(ctx, es, st, configv1alpha1.ReasonValuesUnavailable, "reading the ExternalSecret: "+err.Error(), true)
	}
	uid := st.TargetUID
	deleted := false
	switch err := c.writer.delete(ctx, es.Namespace, name, uid); {
	case err == nil:
		deleted = true
		msg = fmt.Sprintf("%s; deleted Secret %s (deletionPolicy Delete)", msg, name)
		c.recorder.Eventf(es, corev1.EventTypeNormal, EventDeleted, "Deleted Secret %s (UID %s): its values no longer exist", name, uid)
		klog.FromContext(ctx).Info("Deleted target Secret", "externalSecret", klog.KObj(es), "secret", name, "uid", uid)
	case apierrors.IsNotFound(err):
		msg = fmt.Sprintf("%s; Secret %s no longer exists", msg, name)
	case apierrors.IsConflict(err):
		// The UID stays in the status, so every refresh reports the same;
		// a delete on it can never remove another Secret.
		return c.fail(ctx, es, st, configv1alpha1.ReasonRemoteNotFound,
			fmt.Sprintf("%s; Secret %s is not the Secret veil-syncer created (UID %s) and was left in place", msg, name, uid), false)
	default:
		return c.fail(ctx, es, st, configv1alpha1.ReasonWriteFailed, fmt.Sprintf("deleting Secret %s: %v", name, err), true)
	}
	st.TargetUID, st.DataHMAC = "", ""
	res := c.fail(ctx, es, st, configv1alpha1.ReasonRemoteNotFound, msg, false)
	if deleted && res.result == configv1alpha1.ReasonRemoteNotFound {
		res.result = resultDeleted
	}
	return res
}

func targetName(es *configv1alpha1.ExternalSecret) string {
	if es.Spec.Target.Name != "" {
		return es.Spec.Target.Name
	}
	return es.Name
}

// short is enough of an HMAC to tell writes apart in Events and logs.
func short(hmac string) string { return hmac[:min(12, len(hmac))] }

// mergeOver returns values with rendered laid over them.
func mergeOver(values, rendered map[string][]byte) map[string][]byte {
	out := maps.Clone(values)
	if out == nil {
		out = map[string][]byte{}
	}
	maps.Copy(out, rendered)
	return out
}
