package resolve

import (
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// ClusterExternalSecretGetter gets a ClusterExternalSecret by name (its
// lister is one).
type ClusterExternalSecretGetter interface {
	Get(name string) (*configv1alpha1.ClusterExternalSecret, error)
}

// CheckClusterOwned holds back the values of an ExternalSecret that says it
// is a ClusterExternalSecret's (its label veil.dev/cluster-external-secret,
// or a controller owner reference to one) unless it is exactly what that
// ClusterExternalSecret asks for: label and owner reference naming it,
// with its UID, and the same spec. veil-syncer, which writes such
// ExternalSecrets with no check of its own rights (the author of the
// ClusterExternalSecret proved theirs, in all namespaces), may write only
// ones so labelled (admission policy veil-syncer-externalsecrets); this
// check makes one it wrote with any other spec — by a bug, or with its
// token stolen — read nothing. A user may label their own ExternalSecret
// so too: it is then served only as the ClusterExternalSecret says.
func CheckClusterOwned(owners ClusterExternalSecretGetter, es *configv1alpha1.ExternalSecret) error {
	label, labelled := es.Labels[configv1alpha1.ClusterExternalSecretLabel]
	ref := metav1.GetControllerOfNoCopy(es)
	owned := ref != nil && ref.Kind == "ClusterExternalSecret" && ref.APIVersion == configv1alpha1.SchemeGroupVersion.String()
	if !labelled && !owned {
		return nil
	}
	if owners == nil {
		return providers.Errorf(providers.Invalid, "it is labelled as a ClusterExternalSecret's, which this veil-apiserver does not serve")
	}
	if !labelled || !owned || ref.Name != label {
		return providers.Errorf(providers.Invalid,
			"its label %s and controller owner reference must both name the same ClusterExternalSecret, or neither be set: remove them to make it an ordinary ExternalSecret",
			configv1alpha1.ClusterExternalSecretLabel)
	}
	ces, err := owners.Get(label)
	if apierrors.IsNotFound(err) || err == nil && ces.UID != ref.UID {
		return providers.Errorf(providers.Conflict,
			"it belongs to ClusterExternalSecret %s, which no longer exists (veil-syncer deletes it): its values are not served", label)
	}
	if err != nil {
		return providers.Wrap(providers.Unavailable, err, "reading ClusterExternalSecret %s", label)
	}
	if !equality.Semantic.DeepEqual(ces.Spec.ExternalSecretSpec, es.Spec) {
		return providers.Errorf(providers.Conflict,
			"it belongs to ClusterExternalSecret %s and its spec is not that ClusterExternalSecret's externalSecretSpec (veil-syncer puts it back within moments): its values are served only as the ClusterExternalSecret says", label)
	}
	return nil
}
