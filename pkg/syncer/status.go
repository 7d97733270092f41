package syncer

import (
	"encoding/json"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// Status is written one way: a server-side apply of the status
// subresource, as fieldManager, forced. The applied object holds the status
// fields veil-syncer owns and nothing else: every field of the status but
// the conditions, and of the conditions only the ones it sets (Ready).
//
//   - A field veil-syncer cleared is simply not applied, and kube-apiserver
//     removes it, since no other manager owns it; no write lists fields by
//     hand or sends nulls.
//   - A condition another writer owns (by its type: conditions are a map
//     list) is never in the applied object, so it is neither removed nor
//     taken over.
//   - Forced: veil-syncer is the authority on the fields it writes; a
//     conflict with someone who edited them (kubectl edit --subresource
//     status) must not stop it from recording what it did.
//   - No resourceVersion: a concurrent spec change cannot make it fail, as
//     with the patches it replaces.
//
// An apply to the status subresource never creates the object: a deleted
// one answers NotFound.
//
// Upgrading: a status written by an older veil-syncer (a merge or JSON
// patch) carries a second entry in managedFields, veil-syncer with
// operation Update. A field it still co-owns — one never changed since —
// is not removed when veil-syncer stops applying it (say targetUID after
// a deletionPolicy Delete), until a write changes it. Folding that entry
// into the Apply one (client-go's csaupgrade) takes a patch of the object
// itself, which veil-syncer may not do to ExternalSecrets.
func applyOptions() metav1.PatchOptions {
	return metav1.PatchOptions{FieldManager: fieldManager, Force: ptr.To(true)}
}

// ownedConditions are the condition types veil-syncer sets.
var ownedConditions = []string{configv1alpha1.ConditionReady, configv1alpha1.ConditionSyncWindow}

// statusApply is the object veil-syncer applies: its type, name and
// status, nothing of its spec or metadata.
type statusApply[S any] struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        applyMetadata `json:"metadata"`
	Status          *S            `json:"status"`
}

type applyMetadata struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// applyStatusBody is the apply of st, whose conditions conditions points
// at, to the object of kind named namespace/name. st is not changed.
func applyStatusBody[S any](kind, namespace, name string, st *S, conditions func(*S) *[]metav1.Condition, copyStatus func(*S) *S) ([]byte, error) {
	owned := copyStatus(st)
	conds := conditions(owned)
	*conds = slices.DeleteFunc(*conds, func(c metav1.Condition) bool { return !slices.Contains(ownedConditions, c.Type) })
	return json.Marshal(&statusApply[S]{
		TypeMeta: metav1.TypeMeta{APIVersion: configv1alpha1.SchemeGroupVersion.String(), Kind: kind},
		Metadata: applyMetadata{Name: name, Namespace: namespace},
		Status:   owned,
	})
}
