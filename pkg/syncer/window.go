package syncer

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/syncwindow"
)

// windowHolds says whether spec.syncWindows hold this sync, as External
// Secrets Operator's do: only the refresh of a Periodic ExternalSecret
// already synced for its generation is held. The first write, a change of
// the spec (a new generation) or of labels or annotations (which the
// informer queues as forced), and refreshPolicy CreatedOnce or OnChange
// are not. A held sync reads nothing and writes nothing but the
// SyncWindow condition; when windows allow, the condition says so. st is
// updated either way.
func (c *Controller) windowHolds(es *configv1alpha1.ExternalSecret, st *configv1alpha1.ExternalSecretStatus) (bool, string) {
	w := es.Spec.SyncWindows
	forced := c.takeForced(keyOf(es))
	if w == nil {
		meta.RemoveStatusCondition(&st.Conditions, configv1alpha1.ConditionSyncWindow)
		return false, ""
	}
	d := syncwindow.Decide(w, c.clock.Now())
	invalid := ""
	if len(d.Invalid) > 0 {
		invalid = "; ignored, as not understood: " + strings.Join(d.Invalid, "; ")
	}
	if d.Allowed || !periodic(es) || !syncedFor(es, st) || forced {
		msg := "refreshes of the target are allowed now"
		switch {
		case !d.Allowed && !periodic(es):
			msg = fmt.Sprintf("spec.syncWindows apply to refreshPolicy Periodic only (this is %s): not held", es.Spec.RefreshPolicy)
		case !d.Allowed:
			msg = "this write is not a periodic refresh (the first, or after a change of the ExternalSecret), which windows never hold"
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: configv1alpha1.ConditionSyncWindow, Status: metav1.ConditionTrue,
			Reason: configv1alpha1.ReasonSyncWindowOpen, Message: msg + invalid, ObservedGeneration: es.Generation})
		return false, ""
	}
	msg := fmt.Sprintf("refresh held by spec.syncWindows: %s; the Secret keeps the data of the last sync", d.Reason)
	if !d.Until.IsZero() {
		msg += fmt.Sprintf(", and is looked at again at %s UTC", d.Until.UTC().Format(time.RFC3339))
	}
	return true, msg + invalid
}

// syncedFor: the target was written for the current generation.
func syncedFor(es *configv1alpha1.ExternalSecret, st *configv1alpha1.ExternalSecretStatus) bool {
	return st.TargetUID != "" && strings.HasPrefix(st.SyncedResourceVersion, fmt.Sprintf("%d-", es.Generation))
}

// windowRequeue is when to look again at an ExternalSecret whose last
// sync was held: when the window decision may change (at least a second
// on, at most a day). A refresh that comes due is tried, and held then if
// it must be, so that the SyncWindow condition says so.
func (c *Controller) windowRequeue(es *configv1alpha1.ExternalSecret) (time.Duration, bool) {
	held := meta.FindStatusCondition(es.Status.Conditions, configv1alpha1.ConditionSyncWindow)
	if es.Spec.SyncWindows == nil || held == nil || held.Status != metav1.ConditionFalse {
		return 0, false
	}
	now := c.clock.Now()
	d := syncwindow.Decide(es.Spec.SyncWindows, now)
	if d.Allowed {
		return 0, false
	}
	after := 24 * time.Hour
	if !d.Until.IsZero() {
		after = min(max(d.Until.Sub(now)+time.Second, time.Second), after)
	}
	return after, true
}

// markForced records that key changed in a way windows never hold (its
// labels or annotations; a new generation is seen in its status).
func (c *Controller) markForced(key string) {
	c.forcedMu.Lock()
	defer c.forcedMu.Unlock()
	if c.forced == nil {
		c.forced = map[string]bool{}
	}
	c.forced[key] = true
}

func (c *Controller) takeForced(key string) bool {
	c.forcedMu.Lock()
	defer c.forcedMu.Unlock()
	f := c.forced[key]
	delete(c.forced, key)
	return f
}
