package resolve

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

type cesByName map[string]*configv1alpha1.ClusterExternalSecret

func (m cesByName) Get(name string) (*configv1alpha1.ClusterExternalSecret, error) {
	if c, ok := m[name]; ok {
		return c, nil
	}
	return nil, apierrors.NewNotFound(configv1alpha1.Resource("clusterexternalsecrets"), name)
}

// TestCheckClusterOwned: an ExternalSecret that says it is a
// ClusterExternalSecret's is served only when it is exactly what that
// ClusterExternalSecret asks for; an ordinary one is not concerned.
func TestCheckClusterOwned(t *testing.T) {
	spec := configv1alpha1.ExternalSecretSpec{
		SecretStoreRef: &configv1alpha1.SecretStoreRef{Name: "store", Kind: configv1alpha1.SecretStoreKind},
		Data:           []configv1alpha1.ExternalSecretData{{SecretKey: "k", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "app/db"}}},
	}
	owners := cesByName{"shared": {ObjectMeta: metav1.ObjectMeta{Name: "shared", UID: "u1"}, Spec: configv1alpha1.ClusterExternalSecretSpec{ExternalSecretSpec: spec}}}
	ref := func(name, uid string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "config.veil.dev/v1alpha1", Kind: "ClusterExternalSecret", Name: name, UID: k8stypes.UID(uid), Controller: ptr.To(true)}}
	}
	label := map[string]string{configv1alpha1.ClusterExternalSecretLabel: "shared"}
	other := *spec.DeepCopy()
	other.Data[0].RemoteRef.Key = "elsewhere"
	for _, c := range []struct {
		name   string
		labels map[string]string
		owners []metav1.OwnerReference
		spec   configv1alpha1.ExternalSecretSpec
		reason providers.Reason
		says   string
	}{
		{"ordinary", nil, nil, other, "", ""},
		{"as the ClusterExternalSecret says", label, ref("shared", "u1"), spec, "", ""},
		{"another spec", label, ref("shared", "u1"), other, providers.Conflict, "is not that ClusterExternalSecret's externalSecretSpec"},
		{"an earlier ClusterExternalSecret", label, ref("shared", "u0"), spec, providers.Conflict, "no longer exists"},
		{"a ClusterExternalSecret gone", map[string]string{configv1alpha1.ClusterExternalSecretLabel: "gone"}, ref("gone", "u1"), spec, providers.Conflict, "no longer exists"},
		{"label only", label, nil, spec, providers.Invalid, "must both name the same ClusterExternalSecret"},
		{"owner only", nil, ref("shared", "u1"), spec, providers.Invalid, "must both name the same ClusterExternalSecret"},
		{"label and owner disagree", label, ref("other", "u1"), spec, providers.Invalid, "must both name the same ClusterExternalSecret"},
	} {
		t.Run(c.name, func(t *testing.T) {
			es := &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "app", Labels: c.labels, OwnerReferences: c.owners}, Spec: c.spec}
			err := CheckClusterOwned(owners, es)
			if c.reason == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil || providers.ReasonOf(err) != c.reason || !strings.Contains(err.Error(), c.says) {
				t.Errorf("error %v, want %s saying %q", err, c.reason, c.says)
			}
		})
	}
	// Without the lister, none is served.
	es := &configv1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Labels: label, OwnerReferences: ref("shared", "u1")}, Spec: spec}
	if err := CheckClusterOwned(nil, es); err == nil {
		t.Error("served with no ClusterExternalSecrets to check against")
	}
}
