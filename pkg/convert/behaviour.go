package convert

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

// difference is one behaviour a manifest valid in both shows differently.
type difference struct {
	field, message string
}

// behaviour lists where Veil, on purpose, does something else than ESO
// with an object both accept: its safe defaults. Each says what to change.
func behaviour(o *unstructured.Unstructured) []difference {
	var out []difference
	kind := o.GetKind()
	switch kind {
	case "PushSecret":
		return pushBehaviour(o)
	case "ClusterExternalSecret":
		out := []difference{clusterRights("ExternalSecret", "externalSecretSpec",
			"create externalsecrets, use the store it names, get the externalsecretvalues of its ExternalSecrets' name when it has a target, and get the ConfigMaps of target.template.templateFrom")}
		if spec, ok, _ := unstructured.NestedMap(o.Object, "spec", "externalSecretSpec"); ok {
			out = append(out, templateFunctions(spec, "spec.externalSecretSpec", "target", "template")...)
		}
		return out
	case "ClusterPushSecret":
		out := []difference{clusterRights("PushSecret", "pushSecretSpec", "create pushsecrets and use every store of secretStoreRefs")}
		if spec, ok, _ := unstructured.NestedMap(o.Object, "spec", "pushSecretSpec"); ok {
			for _, d := range pushBehaviour(&unstructured.Unstructured{Object: map[string]any{"spec": spec}}) {
				out = append(out, difference{"spec.pushSecretSpec" + strings.TrimPrefix(d.field, "spec"), d.message})
			}
		}
		return out
	}
	if kind == "ExternalSecret" {
		return externalSecretBehaviour(o)
	}
	if kind != "SecretStore" && kind != "ClusterSecretStore" {
		return nil
	}
	if kind == "ClusterSecretStore" {
		if c, _, _ := unstructured.NestedSlice(o.Object, "spec", "conditions"); len(c) == 0 {
			out = append(out, difference{"spec.conditions",
				"Veil lets no namespace use a ClusterSecretStore without conditions (ESO lets every namespace); add spec.conditions naming the namespaces (or a namespaceSelector) that may use it"})
		}
	}
	if c, _, _ := unstructured.NestedString(o.Object, "spec", "controller"); c != "" {
		out = append(out, difference{"spec.controller",
			"Veil runs one controller and serves every store: the field is kept and changes nothing (ESO leaves a store to the controller instance of that name)"})
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "retrySettings"); ok {
		out = append(out, difference{"spec.retrySettings",
			"kept, and not applied: Veil's provider calls keep their own bounded timeouts and retries, which no store can raise, since a provider is shared by every namespace"})
	}
	if _, ok, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "refreshInterval"); ok {
		out = append(out, difference{"spec.refreshInterval",
			"kept, and not applied: Veil checks a store when it or its credentials change and at every use, where ESO checks it again every refreshInterval"})
	}
	if server, ok, _ := unstructured.NestedString(o.Object, "spec", "provider", "vault", "server"); ok && strings.HasPrefix(strings.ToLower(server), "http://") {
		out = append(out, difference{"spec.provider.vault.server",
			"Veil refuses plaintext http:// provider endpoints unless veil-apiserver runs with --allow-plaintext-providers (for local demos only); use https://"})
	}
	if k, ok, _ := unstructured.NestedMap(o.Object, "spec", "provider", "vault", "auth", "kubernetes"); ok && k["serviceAccountRef"] == nil && k["secretRef"] == nil {
		out = append(out, difference{"spec.provider.vault.auth.kubernetes",
			"with neither serviceAccountRef nor secretRef, ESO logs in to Vault with its own ServiceAccount token; Veil never lends its own identity to a store, so the store stays not Ready: set serviceAccountRef to a ServiceAccount in the store's namespace that the Vault role binds"})
	}
	if iam, ok, _ := unstructured.NestedMap(o.Object, "spec", "provider", "vault", "auth", "iam"); ok {
		role, _ := iam["role"].(string)
		switch {
		case iam["secretRef"] == nil && iam["jwt"] == nil:
			out = append(out, difference{"spec.provider.vault.auth.iam",
				"with neither secretRef nor jwt, ESO signs with its own pod's AWS identity (IRSA or Pod Identity); Veil never lends its own identity to a store, so the store stays not Ready: set secretRef to the Secret keys of an AWS access key in the store's namespace, or jwt.serviceAccountRef with role"})
		case iam["jwt"] != nil && role == "":
			out = append(out, difference{"spec.provider.vault.auth.iam.jwt",
				"ESO exchanges the ServiceAccount's token for the IAM role of its eks.amazonaws.com/role-arn annotation; Veil reads no annotations, so the store stays not Ready until role is set to that role's ARN"})
		case iam["jwt"] != nil:
			out = append(out, difference{"spec.provider.vault.auth.iam.jwt",
				"Veil exchanges the ServiceAccount's token for role directly; ESO exchanges it for the role of the ServiceAccount's eks.amazonaws.com/role-arn annotation, then assumes role with that: bind the Vault role to role, and let role's trust policy accept the cluster's web identities"})
		}
	}
	if _, isAWS, _ := unstructured.NestedMap(o.Object, "spec", "provider", "aws"); isAWS && kind == "SecretStore" {
		if auth, _, _ := unstructured.NestedMap(o.Object, "spec", "provider", "aws", "auth"); len(auth) == 0 {
			out = append(out, difference{"spec.provider.aws.auth",
				"a SecretStore without AWS credentials is refused: ESO would use its own identity, which would let every namespace act as the operator; give the store auth.secretRef or auth.jwt, or use a ClusterSecretStore (the only kind that may use veil-apiserver's own identity)"})
		}
	}
	if roles, _, _ := unstructured.NestedSlice(o.Object, "spec", "provider", "aws", "additionalRoles"); len(roles) > 0 {
		if jwt, _, _ := unstructured.NestedMap(o.Object, "spec", "provider", "aws", "auth", "jwt"); jwt != nil {
			out = append(out, difference{"spec.provider.aws.additionalRoles",
				"with auth.jwt, ESO exchanges the ServiceAccount's token for the role of its eks.amazonaws.com/role-arn annotation and chains additionalRoles from there; Veil exchanges the token for role itself and reads no annotations, so it refuses additionalRoles with auth.jwt and the store stays not Ready: use auth.secretRef, or exchange the token for role directly (its trust policy accepting the cluster's web identities) and drop additionalRoles"})
		}
	}
	if svc, _, _ := unstructured.NestedString(o.Object, "spec", "provider", "aws", "service"); svc == "CertificateManager" {
		out = append(out, difference{"spec.provider.aws.service",
			"Veil finds a certificate a PushSecret imported by its tag veil.dev/remote-key (ESO: external-secrets-remote-key), so a certificate ESO imported is not Veil's: the PushSecret imports a new one and never re-imports or deletes ESO's; delete ESO's once Veil's is in use. Reads export the certificate whenever Veil's cache misses (ESO keeps exports for 24 hours), and ExportCertificate is billed past a monthly quota"})
	}
	if kind == "SecretStore" {
		ns := o.GetNamespace()
		walk(o.Object["spec"], "spec", func(field string, m map[string]any) {
			other, ok := m["namespace"].(string)
			if ok && other != "" && other != ns && strings.Contains(field, "Ref") {
				where := "its own namespace"
				if ns != "" {
					where = fmt.Sprintf("its own namespace (%s)", ns)
				}
				out = append(out, difference{field + ".namespace", fmt.Sprintf(
					"a SecretStore reads credentials only from %s; Veil refuses a reference to namespace %s: move the Secret or ServiceAccount, or use a ClusterSecretStore", where, other)})
			}
		})
	}
	return out
}

// externalSecretBehaviour: finalizers are never put on a Secret merged
// into, as Veil's template labels and annotations are not.
func externalSecretBehaviour(o *unstructured.Unstructured) []difference {
	var out []difference
	policy, _, _ := unstructured.NestedString(o.Object, "spec", "target", "creationPolicy")
	fs, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "target", "template", "metadata", "finalizers")
	if policy == "Merge" && len(fs) > 0 {
		out = append(out, difference{"spec.target.template.metadata.finalizers",
			"with creationPolicy Merge, Veil adds no finalizers (nor template labels or annotations) to the Secret merged into, where ESO adds them: put them on that Secret yourself"})
	}
	spec, _, _ := unstructured.NestedMap(o.Object, "spec")
	return append(out, templateFunctions(spec, "spec", "target", "template")...)
}

// templateFunctions names the functions that the templates under
// spec.<path> (data, templateFrom literals) and, for an ExternalSecret,
// its rewrite transforms call and Veil does not offer: ESO's Sprig has
// more, and such a sync fails with TemplateError.
func templateFunctions(spec map[string]any, field string, path ...string) []difference {
	var out []difference
	check := func(f, tmpl string) {
		if fns := template.Undefined(tmpl); len(fns) > 0 {
			out = append(out, difference{f, fmt.Sprintf(
				"the template calls %s, which Veil's templates do not offer (it leaves out some of ESO's Sprig and own functions; see docs/migrating-from-eso.md): the sync fails with TemplateError until it is rewritten with the functions Veil has",
				strings.Join(fns, ", "))})
		}
	}
	data, _, _ := unstructured.NestedStringMap(spec, append(path, "data")...)
	for _, k := range sortedKeys(data) {
		check(fmt.Sprintf("%s.%s.data.%s", field, strings.Join(path, "."), k), data[k])
	}
	from, _, _ := unstructured.NestedSlice(spec, append(path, "templateFrom")...)
	for i, f := range from {
		m, _ := f.(map[string]any)
		if lit, ok := m["literal"].(string); ok {
			check(fmt.Sprintf("%s.%s.templateFrom[%d].literal", field, strings.Join(path, "."), i), lit)
		}
	}
	dataFrom, _, _ := unstructured.NestedSlice(spec, "dataFrom")
	for i, d := range dataFrom {
		m, _ := d.(map[string]any)
		rw, _ := m["rewrite"].([]any)
		for j, r := range rw {
			rm, _ := r.(map[string]any)
			if tmpl, ok, _ := unstructured.NestedString(rm, "transform", "template"); ok {
				check(fmt.Sprintf("%s.dataFrom[%d].rewrite[%d].transform.template", field, i, j), tmpl)
			}
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// pushBehaviour: a PushSecret entry without match.secretKey pushes the
// whole Secret as ESO does, except values ESO would mangle; and metadata
// outside ESO's PushSecretMetadata wrapper is named with how to fix it.
func pushBehaviour(o *unstructured.Unstructured) []difference {
	spec, _, _ := unstructured.NestedMap(o.Object, "spec")
	out := templateFunctions(spec, "spec", "template")
	if _, ok, _ := unstructured.NestedMap(o.Object, "spec", "selector", "generatorRef"); ok {
		if d, ok, _ := unstructured.NestedString(o.Object, "spec", "refreshInterval"); ok {
			if v, err := time.ParseDuration(d); err == nil && v > 0 && v < configv1alpha1.MinGeneratorRefreshInterval {
				out = append(out, difference{"spec.refreshInterval", fmt.Sprintf(
					"with a generator, each refresh pushes a new value; Veil rotates at most every %s (ESO at every refreshInterval): set refreshInterval to %s or more", configv1alpha1.MinGeneratorRefreshInterval, configv1alpha1.MinGeneratorRefreshInterval)})
			}
		}
	}
	data, _, _ := unstructured.NestedSlice(o.Object, "spec", "data")
	for i, d := range data {
		m, _ := d.(map[string]any)
		match, _ := m["match"].(map[string]any)
		if k, _ := match["secretKey"].(string); k == "" {
			out = append(out, difference{fmt.Sprintf("spec.data[%d].match.secretKey", i),
				"without secretKey the whole Secret is pushed as one JSON object, as ESO does; a Secret with a value that is not UTF-8 text, or whose object is over 1 MiB, is not pushed (Ready=False, SourceInvalid, naming the keys), where ESO pushes it mangled: keep binary values out of the source Secret, or push them one key at a time"})
		}
	}
	for _, list := range []string{"data", "dataTo"} {
		entries, _, _ := unstructured.NestedSlice(o.Object, "spec", list)
		for i, d := range entries {
			m, _ := d.(map[string]any)
			meta, ok := m["metadata"].(map[string]any)
			if !ok {
				continue
			}
			if meta["apiVersion"] != "kubernetes.external-secrets.io/v1alpha1" || meta["kind"] != "PushSecretMetadata" {
				out = append(out, difference{fmt.Sprintf("spec.%s[%d].metadata", list, i),
					"push metadata is read only as an object of apiVersion kubernetes.external-secrets.io/v1alpha1, kind PushSecretMetadata, with the provider's fields under spec, as ESO's providers read it: without that wrapper the PushSecret is admitted and the push of this key fails when it syncs, in Veil as in ESO; move the fields under spec and add apiVersion and kind"})
			}
		}
	}
	return out
}

// clusterRights is the difference every ClusterExternalSecret and
// ClusterPushSecret shows: who may create one.
func clusterRights(child, specField, rights string) difference {
	return difference{"spec." + specField, fmt.Sprintf(
		"ESO creates its %ss for anyone who may create the cluster object; Veil admits it only from someone allowed, in all namespaces (a ClusterRoleBinding), to %s, so it is never a way around the rules for %ss (grant those rights cluster-wide, or create the %ss namespace by namespace); it is provisioned in at most %d namespaces",
		child, rights, child, child, configv1alpha1.MaxClusterNamespaces)}
}

// walk calls f on every object under v, with its field path.
func walk(v any, field string, f func(field string, m map[string]any)) {
	switch t := v.(type) {
	case map[string]any:
		f(field, t)
		for k, c := range t {
			walk(c, field+"."+k, f)
		}
	case []any:
		for i, c := range t {
			walk(c, fmt.Sprintf("%s[%d]", field, i), f)
		}
	}
}
