package syncer

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// restart patches the pod template of each rollout restart target, which
// makes its controller roll the pods, and returns the ones it restarted. A
// target that does not exist is reported in an Event and skipped: the data
// is already written, and retrying cannot make the workload appear.
func (c *Controller) restart(ctx context.Context, es *configv1alpha1.ExternalSecret, hmac string) ([]string, error) {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{configv1alpha1.RestartedForAnnotation: es.Name + "@" + hmac},
	}}}})
	if err != nil {
		return nil, err
	}
	opts := metav1.PatchOptions{FieldManager: fieldManager}
	var restarted []string
	for _, r := range es.Spec.Target.RolloutRestartTargets {
		switch r.Kind {
		case "Deployment":
			_, err = c.apps.Deployments(es.Namespace).Patch(ctx, r.Name, types.StrategicMergePatchType, patch, opts)
		case "StatefulSet":
			_, err = c.apps.StatefulSets(es.Namespace).Patch(ctx, r.Name, types.StrategicMergePatchType, patch, opts)
		case "DaemonSet":
			_, err = c.apps.DaemonSets(es.Namespace).Patch(ctx, r.Name, types.StrategicMergePatchType, patch, opts)
		default:
			// The CRD's enum makes this unreachable short of a schema change.
			err = fmt.Errorf("kind %q cannot be restarted", r.Kind)
		}
		ref := r.Kind + "/" + r.Name
		switch {
		case apierrors.IsNotFound(err):
			c.recorder.Eventf(es, corev1.EventTypeWarning, EventSyncError, "%s: %s does not exist and was not restarted", configv1alpha1.ReasonRolloutFailed, ref)
		case err != nil:
			return restarted, fmt.Errorf("%s: %w", ref, err)
		default:
			restarted = append(restarted, ref)
		}
	}
	return restarted, nil
}
