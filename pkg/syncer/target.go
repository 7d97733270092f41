package syncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// fieldManager is veil-syncer's field manager in every write. The marks it
// puts on the Secrets it writes are API (configv1alpha1.ManagedByLabel and
// the annotations beside it). The syncer cannot read Secrets, so it never
// looks at them: every write starts with JSON patch "test" operations on
// them, and kube-apiserver refuses the whole patch (422, nothing changed)
// when a Secret does not carry them.
const fieldManager = "veil-syncer"

// desired is the Secret an ExternalSecret asks for, rendered.
type desired struct {
	namespace, name string
	es              *configv1alpha1.ExternalSecret
	policy          configv1alpha1.CreationPolicy
	secretType      corev1.SecretType
	// labels and annotations include Veil's own marks.
	labels, annotations map[string]string
	data                map[string][]byte
	hmac                string
	immutable           bool
	// finalizers are added to a target veil-syncer creates (not one
	// merged into), never removed.
	finalizers []string
}

// written says what a write did.
type written struct {
	uid             types.UID
	resourceVersion string
	created         bool
	// repaired: the target should have been unchanged but its data or
	// marks were changed by someone else, and were written again.
	repaired bool
	// meta is the target as kube-apiserver answered the write.
	meta *metav1.PartialObjectMetadata
}

// errConflict: the target exists and is not Veil's for this ExternalSecret
// (or, with Merge, has not opted in).
var errConflict = errors.New("target conflict")

// errMissing: creationPolicy Merge and the target does not exist.
var errMissing = errors.New("target missing")

// invalidError: kube-apiserver refused the write of a Secret that is ours,
// e.g. a change to an immutable Secret or to its type.
type invalidError struct{ err error }

func (e *invalidError) Error() string { return e.err.Error() }
func (e *invalidError) Unwrap() error { return e.err }

// secretWriter creates, patches and deletes Secrets without ever reading
// one: every response is requested as PartialObjectMetadata, so no Secret's
// data — not even a Secret merged into — is ever held by the syncer, and
// nothing it could log or leak contains it.
type secretWriter struct {
	core rest.Interface
	meta metadata.Interface
}

var secretsResource = corev1.SchemeGroupVersion.WithResource("secrets")

const metadataOnly = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

// lastWrite is what the syncer knows of its previous write of a target.
type lastWrite int

const (
	// neverWritten: create first, as the target most likely does not exist.
	neverWritten lastWrite = iota
	// dataChanged: the target exists with other data, or other marks.
	dataChanged
	// unchanged: the data HMAC is the one last written for the current
	// generation, so the write is a test-only patch, which kube-apiserver
	// answers without writing to etcd. It tests the data itself too, so an
	// edit made by someone else is found (and undone) without reading.
	unchanged
)

// write brings the target in line with d.
func (w *secretWriter) write(ctx context.Context, d *desired, last lastWrite) (written, error) {
	wr, err := w.writeTarget(ctx, d, last)
	if err != nil || d.policy == configv1alpha1.CreatePolicyMerge || len(d.finalizers) == 0 || wr.meta == nil {
		return wr, err
	}
	return w.addFinalizers(ctx, d, wr)
}

// addFinalizers adds to the target the finalizers of d it lacks, unless it
// is being deleted (as External Secrets Operator). The patch tests the
// Secret's UID, its marks and its finalizers as the write answered them,
// so it adds to exactly that list, on exactly that Secret, or fails.
func (w *secretWriter) addFinalizers(ctx context.Context, d *desired, wr written) (written, error) {
	have := wr.meta.Finalizers
	var missing []string
	for _, f := range d.finalizers {
		if !slices.Contains(have, f) && !slices.Contains(missing, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) == 0 || wr.meta.DeletionTimestamp != nil {
		return wr, nil
	}
	var current any // absent: a test for null
	if len(have) > 0 {
		current = have
	}
	ops := append(ownedTests(d), testOp("/metadata/uid", wr.meta.UID), testOp("/metadata/finalizers", current),
		addOp("/metadata/finalizers", append(slices.Clone(have), missing...)))
	m, err := w.patch(ctx, d, ops)
	if err != nil {
		return written{}, fmt.Errorf("adding finalizers %s to the Secret (it was changed meanwhile, or refused them; retried): %w", strings.Join(missing, ", "), err)
	}
	wr.resourceVersion, wr.meta = m.ResourceVersion, m
	return wr, nil
}

// writeTarget writes the data, type and marks of d.
func (w *secretWriter) writeTarget(ctx context.Context, d *desired, last lastWrite) (written, error) {
	if d.policy == configv1alpha1.CreatePolicyMerge {
		return w.merge(ctx, d, last == unchanged)
	}
	switch last {
	case neverWritten:
		return w.createOrPatch(ctx, d)
	case unchanged:
		m, err := w.patch(ctx, d, append(ownedTests(d), testOp(annotationPath(configv1alpha1.DataHMACAnnotation), d.hmac), testOp("/data", d.data)))
		switch {
		case err == nil:
			return written{uid: m.UID, resourceVersion: m.ResourceVersion, meta: m}, nil
		case apierrors.IsNotFound(err):
			// Deleted since (the syncer does not watch Secrets): recreate it.
			return w.createOrPatch(ctx, d)
		case !isPatchRefused(err):
			return written{}, err
		}
		// The data or the marks changed under us: rewrite.
	}
	m, err := w.patch(ctx, d, ownedPatch(d))
	if apierrors.IsNotFound(err) {
		return w.createOrPatch(ctx, d)
	}
	if isPatchRefused(err) {
		return written{}, w.explain(ctx, d, ownedTests(d), err)
	}
	if err != nil {
		return written{}, err
	}
	return written{uid: m.UID, resourceVersion: m.ResourceVersion, meta: m, repaired: last == unchanged}, nil
}

// createOrPatch creates the target, or patches it when it already exists
// (created by us before, or by someone else, which the patch's tests catch).
func (w *secretWriter) createOrPatch(ctx context.Context, d *desired) (written, error) {
	m, err := w.create(ctx, d)
	if err == nil {
		return written{uid: m.UID, resourceVersion: m.ResourceVersion, meta: m, created: true}, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return written{}, err
	}
	m, err = w.patch(ctx, d, ownedPatch(d))
	if isPatchRefused(err) {
		return written{}, w.explain(ctx, d, ownedTests(d), err)
	}
	if err != nil {
		return written{}, err
	}
	return written{uid: m.UID, resourceVersion: m.ResourceVersion, meta: m}, nil
}

// merge adds the data keys to a Secret that opted in, never removing others.
func (w *secretWriter) merge(ctx context.Context, d *desired, unchanged bool) (written, error) {
	tests := []patchOp{testOp(annotationPath(configv1alpha1.MergeFromAnnotation), d.es.Name)}
	if unchanged {
		check := append(append([]patchOp(nil), tests...), testOp(annotationPath(configv1alpha1.DataHMACAnnotation), d.hmac))
		for _, k := range sortedKeys(d.data) {
			check = append(check, testOp("/data/"+escape(k), d.data[k]))
		}
		m, err := w.patch(ctx, d, check)
		if err == nil {
			return written{uid: m.UID, resourceVersion: m.ResourceVersion, meta: m}, nil
		}
		if !isPatchRefused(err) {
			return written{}, notFoundIsMissing(err)
		}
	}
	hmacOp := addOp(annotationPath(configv1alpha1.DataHMACAnnotation), d.hmac)
	ops := append(append([]patchOp(nil), tests...), hmacOp)
	for _, k := range sortedKeys(d.data) {
		ops = append(ops, addOp("/data/"+escape(k), d.data[k]))
	}
	m, err := w.patch(ctx, d, ops)
	if err == nil {
		return written{uid: m.UID, resourceVersion: m.ResourceVersion, meta: m, repaired: unchanged}, nil
	}
	if !isPatchRefused(err) {
		return written{}, notFoundIsMissing(err)
	}
	// Adding a key fails when the Secret has no data at all; JSON patch has
	// no "add if absent", but a test for null passes only on an absent
	// field, so this cannot replace data someone added in between.
	m, err2 := w.patch(ctx, d, append(append([]patchOp(nil), tests...),
		testOp("/data", nil), hmacOp, addOp("/data", d.data)))
	if err2 == nil {
		return written{uid: m.UID, resourceVersion: m.ResourceVersion, meta: m, repaired: unchanged}, nil
	}
	if !isPatchRefused(err2) {
		return written{}, notFoundIsMissing(err2)
	}
	return written{}, w.explain(ctx, d, tests, err)
}

func notFoundIsMissing(err error) error {
	if apierrors.IsNotFound(err) {
		return errMissing
	}
	return err
}

// explain tells apart why a patch was refused: a test-only patch of the
// ownership marks says whether the Secret is ours. If it is, kube-apiserver
// refused the change itself (immutable data or type).
func (w *secretWriter) explain(ctx context.Context, d *desired, tests []patchOp, refused error) error {
	_, err := w.patch(ctx, d, tests)
	switch {
	case err == nil:
		return &invalidError{refused}
	case isPatchRefused(err):
		return errConflict
	case apierrors.IsNotFound(err) && d.policy == configv1alpha1.CreatePolicyMerge:
		return errMissing
	default:
		return err
	}
}

// delete deletes the target only if it is still the object with uid.
func (w *secretWriter) delete(ctx context.Context, namespace, name string, uid types.UID) error {
	return w.meta.Resource(secretsResource).Namespace(namespace).Delete(ctx, name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid},
	})
}

func (w *secretWriter) create(ctx context.Context, d *desired) (*metav1.PartialObjectMetadata, error) {
	s := &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name: d.name, Namespace: d.namespace,
			Labels: d.labels, Annotations: d.annotations,
			OwnerReferences: ownerReferences(d),
			Finalizers:      d.finalizers,
		},
		Type: d.secretType,
		Data: d.data,
	}
	if d.immutable {
		s.Immutable = &d.immutable
	}
	body, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	res := w.core.Post().Namespace(d.namespace).Resource("secrets").
		Param("fieldManager", fieldManager).
		SetHeader("Content-Type", "application/json").
		SetHeader("Accept", metadataOnly).
		Body(body).Do(ctx)
	// Error, unlike DoRaw, decodes the Status of a refusal, so that
	// AlreadyExists and Forbidden are told apart.
	if err := res.Error(); err != nil {
		return nil, err
	}
	raw, err := res.Raw()
	if err != nil {
		return nil, err
	}
	return decodeMetadata(raw)
}

func (w *secretWriter) patch(ctx context.Context, d *desired, ops []patchOp) (*metav1.PartialObjectMetadata, error) {
	body, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	return w.meta.Resource(secretsResource).Namespace(d.namespace).Patch(ctx, d.name, types.JSONPatchType, body,
		metav1.PatchOptions{FieldManager: fieldManager})
}

// decodeMetadata refuses anything but PartialObjectMetadata, so a server
// that ignored the Accept header cannot hand the syncer a full Secret.
func decodeMetadata(raw []byte) (*metav1.PartialObjectMetadata, error) {
	var m metav1.PartialObjectMetadata
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding the response to a Secret write: %w", err)
	}
	if m.Kind != "PartialObjectMetadata" {
		return nil, fmt.Errorf("kube-apiserver answered a Secret write with %q, not PartialObjectMetadata", m.Kind)
	}
	return &m, nil
}

// isPatchRefused: kube-apiserver could not apply a JSON patch (a test
// failed, a path is missing) or refused its result. Both are 422 and change
// nothing.
func isPatchRefused(err error) bool { return apierrors.IsInvalid(err) }

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

func testOp(path string, value any) patchOp { return patchOp{Op: "test", Path: path, Value: value} }
func addOp(path string, value any) patchOp  { return patchOp{Op: "add", Path: path, Value: value} }

// ownedTests pass only on a Secret veil-syncer created for this ExternalSecret.
func ownedTests(d *desired) []patchOp {
	return []patchOp{
		testOp(labelPath(configv1alpha1.ManagedByLabel), configv1alpha1.ManagedBySyncer),
		testOp(annotationPath(configv1alpha1.ExternalSecretAnnotation), d.es.Name),
	}
}

// ownedPatch rewrites a Secret veil-syncer owns: its marks, the template's
// metadata, owner references, type and the whole data (keys no longer
// rendered go away). Labels and annotations are added one by one, so ones
// others added stay.
func ownedPatch(d *desired) []patchOp {
	ops := ownedTests(d)
	for _, k := range sortedKeys(d.labels) {
		ops = append(ops, addOp(labelPath(k), d.labels[k]))
	}
	for _, k := range sortedKeys(d.annotations) {
		ops = append(ops, addOp(annotationPath(k), d.annotations[k]))
	}
	refs := ownerReferences(d)
	if refs == nil {
		refs = []metav1.OwnerReference{}
	}
	ops = append(ops,
		addOp("/metadata/ownerReferences", refs),
		// The type cannot change: kube-apiserver refuses it, and the
		// condition says so, rather than the change being ignored.
		addOp("/type", d.secretType),
		addOp("/data", d.data),
	)
	if d.immutable {
		ops = append(ops, addOp("/immutable", true))
	}
	return ops
}

func ownerReferences(d *desired) []metav1.OwnerReference {
	if d.policy != configv1alpha1.CreatePolicyOwner {
		return nil
	}
	// Not blockOwnerDeletion: that needs update on externalsecrets/finalizers,
	// and nothing needs the ExternalSecret to outlive its Secret.
	return []metav1.OwnerReference{{
		APIVersion: configv1alpha1.SchemeGroupVersion.String(),
		Kind:       "ExternalSecret",
		Name:       d.es.Name,
		UID:        d.es.UID,
		Controller: new(true),
	}}
}

func labelPath(k string) string      { return "/metadata/labels/" + escape(k) }
func annotationPath(k string) string { return "/metadata/annotations/" + escape(k) }

// escape makes a map key a JSON pointer token (RFC 6901).
func escape(k string) string { return strings.NewReplacer("~", "~0", "/", "~1").Replace(k) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// maxFinalizers bounds spec.target.template.metadata.finalizers, as the CRD does.
const maxFinalizers = 10

// reservedFinalizerDomains are domains whose finalizers mean something to
// Kubernetes or Veil: a tenant must not be able to set them through
// veil-syncer (the CRD refuses them too).
var reservedFinalizerDomains = []string{"kubernetes.io", "k8s.io", "veil.dev"}

// checkFinalizers refuses what the CRD refuses, should a stored object
// predate its rules: more than maxFinalizers, a name without a domain
// ("orphan", "foregroundDeletion" and "kubernetes" steer garbage
// collection and namespace deletion), or one in a reserved domain.
func checkFinalizers(fs []string) error {
	if len(fs) > maxFinalizers {
		return fmt.Errorf("template.metadata.finalizers names %d finalizers, more than %d", len(fs), maxFinalizers)
	}
	for _, f := range fs {
		domain, name, ok := strings.Cut(f, "/")
		if !ok || domain == "" || name == "" || len(validation.IsQualifiedName(f)) > 0 {
			return fmt.Errorf("template.metadata.finalizers: %q is not a domain-qualified finalizer (example.com/name)", f)
		}
		for _, r := range reservedFinalizerDomains {
			if domain == r || strings.HasSuffix(domain, "."+r) {
				return fmt.Errorf("template.metadata.finalizers: %q is in domain %s, whose finalizers mean something to Kubernetes or Veil: use a domain of your own", f, r)
			}
		}
	}
	return nil
}
