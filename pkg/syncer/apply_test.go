package syncer

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/managedfields"
	clienttesting "k8s.io/client-go/testing"

	veilfake "github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	veilscheme "github.com/veil-dev/veil/pkg/generated/clientset/versioned/scheme"
)

// newVeilClientset is veil's fake clientset, whose server-side applies are
// real ones: the fake's own handles an apply as a strategic merge patch,
// which never removes a field the applier stopped applying. As on a
// subresource, an apply never creates the object. Lists are atomic (the
// deduced schema knows no list keys), unlike conditions in kube-apiserver.
func newVeilClientset(objects ...runtime.Object) *veilfake.Clientset {
	cs := veilfake.NewSimpleClientset(objects...)
	cs.PrependReactor("patch", "*", func(a clienttesting.Action) (bool, runtime.Object, error) {
		p, ok := a.(clienttesting.PatchActionImpl)
		if !ok || p.GetPatchType() != types.ApplyPatchType {
			return false, nil, nil
		}
		out, err := fakeApply(cs.Tracker(), p)
		return true, out, err
	})
	return cs
}

func fakeApply(tracker clienttesting.ObjectTracker, p clienttesting.PatchActionImpl) (runtime.Object, error) {
	live, err := tracker.Get(p.GetResource(), p.GetNamespace(), p.GetName())
	if err != nil {
		return nil, err
	}
	kinds, _, err := veilscheme.Scheme.ObjectKinds(live)
	if err != nil {
		return nil, err
	}
	gvk := kinds[0]
	mgr, err := managedfields.NewDefaultFieldManager(managedfields.NewDeducedTypeConverter(), veilscheme.Scheme, noDefaults{},
		veilscheme.Scheme, gvk, gvk.GroupVersion(), p.GetSubresource(), nil)
	if err != nil {
		return nil, err
	}
	applied := &unstructured.Unstructured{}
	if err := json.Unmarshal(p.GetPatch(), &applied.Object); err != nil {
		return nil, err
	}
	force := p.PatchOptions.Force != nil && *p.PatchOptions.Force
	merged, err := mgr.Apply(live, applied, p.PatchOptions.FieldManager, force)
	if err != nil {
		return nil, err
	}
	out, err := veilscheme.Scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	switch m := merged.(type) {
	case *unstructured.Unstructured:
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m.Object, out); err != nil {
			return nil, err
		}
	default:
		if err := veilscheme.Scheme.Convert(merged, out, nil); err != nil {
			return nil, fmt.Errorf("converting %T: %w", merged, err)
		}
	}
	if err := tracker.Update(p.GetResource(), out, p.GetNamespace()); err != nil {
		return nil, err
	}
	return tracker.Get(p.GetResource(), p.GetNamespace(), p.GetName())
}

type noDefaults struct{}

func (noDefaults) Default(runtime.Object) {}
