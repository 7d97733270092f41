// Package convert turns External Secrets Operator manifests into Veil's,
// and says, for each object, what Veil will do differently with it.
//
// The conversion itself is a change of apiVersion: Veil's kinds take ESO's
// fields with ESO's meaning where Veil has them. What the converter adds is
// the report. Each converted object is checked against the
// CustomResourceDefinitions Veil installs (embedded from artifacts/, so the
// check is the one kube-apiserver makes): fields Veil does not have are
// dropped, as kube-apiserver would drop them, and named; schema and CEL
// rules that would refuse the object are named; and the differences of
// behaviour that a manifest valid in both shows (Veil's safe defaults) are
// named with what to change.
package convert

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	apiextensionsinternal "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/veil-dev/veil/artifacts"
	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// ESOGroup is External Secrets Operator's API group.
const ESOGroup = "external-secrets.io"

// Severity says how much a difference matters.
type Severity string

const (
	// Dropped: a field Veil does not have; kube-apiserver drops it.
	Dropped Severity = "dropped"
	// Refused: kube-apiserver would refuse the converted object.
	Refused Severity = "refused"
	// Behaviour: accepted, but Veil does something else than ESO.
	Behaviour Severity = "behaviour"
	// NotConverted: a kind Veil has no equivalent of; left out.
	NotConverted Severity = "not converted"
)

// Difference is one thing a user migrating must know about one object.
type Difference struct {
	Object   string // "ExternalSecret app/db"
	Severity Severity
	Field    string // the field concerned, when there is one
	Message  string
}

func (d Difference) String() string {
	where := d.Object
	if d.Field != "" {
		where += " " + d.Field
	}
	return fmt.Sprintf("%s: %s: %s", where, d.Severity, d.Message)
}

// kindSchema is what checking one of Veil's kinds needs.
type kindSchema struct {
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *cel.Validator
	namespaced bool
}

// Converter converts against Veil's CustomResourceDefinitions.
type Converter struct {
	kinds map[string]*kindSchema // by kind
}

// New reads the CustomResourceDefinitions embedded from artifacts/.
func New() (*Converter, error) {
	c := &Converter{kinds: map[string]*kindSchema{}}
	files, err := fs.Glob(artifacts.CRDs, "base/crds/*.yaml")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := fs.ReadFile(artifacts.CRDs, f)
		if err != nil {
			return nil, err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(b, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", path.Base(f), err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Name != configv1alpha1.SchemeGroupVersion.Version || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensionsinternal.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return nil, fmt.Errorf("%s: %w", crd.Name, err)
			}
			s, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", crd.Name, err)
			}
			validator, _, err := apiservervalidation.NewSchemaValidator(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", crd.Name, err)
			}
			c.kinds[crd.Spec.Names.Kind] = &kindSchema{
				structural: s, validator: validator,
				cel:        cel.NewValidator(s, true, celconfig.PerCallLimit),
				namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
			}
		}
	}
	if len(c.kinds) == 0 {
		return nil, fmt.Errorf("no CustomResourceDefinition of %s embedded", configv1alpha1.SchemeGroupVersion)
	}
	return c, nil
}

// Kinds are the kinds Veil converts to, sorted.
func (c *Converter) Kinds() []string {
	out := make([]string, 0, len(c.kinds))
	for k := range c.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Convert converts one object. An object of another group is returned as
// it is (a Secret in the same file, say); an ESO kind Veil has none of is
// not returned, and reported.
func (c *Converter) Convert(ctx context.Context, in *unstructured.Unstructured) (*unstructured.Unstructured, []Difference) {
	gv, err := schema.ParseGroupVersion(in.GetAPIVersion())
	name := describe(in)
	if err != nil {
		return nil, []Difference{{Object: name, Severity: NotConverted, Field: "apiVersion", Message: err.Error()}}
	}
	if gv.Group != ESOGroup && !strings.HasSuffix(gv.Group, "."+ESOGroup) {
		return in, nil
	}
	k, ok := c.kinds[in.GetKind()]
	if !ok || (gv.Group != ESOGroup && !isPasswordGenerator(gv.Group, in.GetKind())) || (gv.Group == ESOGroup && in.GetKind() == "Password") {
		return nil, []Difference{{Object: name, Severity: NotConverted, Message: notConverted(in.GetKind(), gv.Group)}}
	}
	out := in.DeepCopy()
	out.SetAPIVersion(configv1alpha1.SchemeGroupVersion.String())
	convertGeneratorRefs(out)
	delete(out.Object, "status")
	// What a live object carries that a manifest must not.
	for _, f := range []string{"resourceVersion", "uid", "generation", "creationTimestamp", "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers"} {
		unstructured.RemoveNestedField(out.Object, "metadata", f)
	}
	if a := out.GetAnnotations(); a != nil {
		delete(a, "kubectl.kubernetes.io/last-applied-configuration")
		if len(a) == 0 {
			a = nil
		}
		out.SetAnnotations(a)
	}
	if !k.namespaced {
		out.SetNamespace("")
	}

	var diffs []Difference
	add := func(sev Severity, field, msg string) {
		diffs = append(diffs, Difference{Object: name, Severity: sev, Field: field, Message: msg})
	}
	for _, p := range pruning.PruneWithOptions(out.Object, k.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		add(Dropped, p, droppedMessage)
	}
	structuraldefaulting.Default(out.Object, k.structural)
	for _, e := range apiservervalidation.ValidateCustomResource(nil, out.Object, k.validator) {
		add(Refused, e.Field, e.ErrorBody())
	}
	if errs, _ := k.cel.Validate(ctx, nil, k.structural, out.Object, nil, celconfig.RuntimeCELCostBudget); len(errs) > 0 {
		for _, e := range errs {
			add(Refused, e.Field, e.ErrorBody())
		}
	}
	for _, d := range behaviour(out) {
		add(Behaviour, d.field, d.message)
	}
	sort.SliceStable(diffs, func(i, j int) bool {
		if diffs[i].Severity != diffs[j].Severity {
			return severityOrder[diffs[i].Severity] < severityOrder[diffs[j].Severity]
		}
		return diffs[i].Field < diffs[j].Field
	})
	return out, diffs
}

// severityOrder: what stops an object first.
var severityOrder = map[Severity]int{NotConverted: 0, Refused: 1, Dropped: 2, Behaviour: 3}

// describe names an object for the report: "ExternalSecret app/db".
func describe(o *unstructured.Unstructured) string {
	n := o.GetName()
	if n == "" {
		n = "(no name)"
	}
	if ns := o.GetNamespace(); ns != "" {
		n = ns + "/" + n
	}
	return o.GetKind() + " " + n
}

func notConverted(kind, group string) string {
	switch {
	case group != ESOGroup:
		return fmt.Sprintf("Veil has no equivalent of %s (%s): its only generator is Password (%s), for PushSecrets; read the value from a store instead, or create it outside Veil", kind, group, GeneratorsGroup)
	default:
		return fmt.Sprintf("Veil has no %s", kind)
	}
}

// droppedMessage explains a field Veil does not have.
const droppedMessage = "Veil has no such field: kube-apiserver would drop it, so what it asks for does not happen"
