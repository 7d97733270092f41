package syncer

import (
	"context"
	"fmt"
	"maps"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/syncer/template"
)

// templateSources collects the templates of es's target in External
// Secrets Operator's order: templateFrom entries in order, then
// template.data, which wins. ConfigMaps are read only in es's own
// namespace, by name, when the sync needs them: veil-syncer has get on
// ConfigMaps and neither list nor watch, and the admission policy
// veil-externalsecrets makes whoever names a ConfigMap prove they may get
// it, so an ExternalSecret is no way to read one.
func (c *Controller) templateSources(ctx context.Context, es *configv1alpha1.ExternalSecret) ([]template.Source, error) {
	return templateSourcesOf(ctx, c.configMaps, es.Namespace, es.Spec.Target.Template)
}

// templateSourcesOf collects the templates of tmpl, reading ConfigMaps of
// namespace ns through configMaps; a PushSecret's template shares it.
func templateSourcesOf(ctx context.Context, configMaps corev1client.ConfigMapsGetter, ns string, tmpl *configv1alpha1.ExternalSecretTemplate) ([]template.Source, error) {
	var out []template.Source
	for i, from := range tmpl.TemplateFrom {
		where := fmt.Sprintf("template.templateFrom[%d]", i)
		if from.Target != "" && from.Target != configv1alpha1.TemplateTargetData {
			// Labels and annotations are readable by anyone who may list
			// Secrets' names: Veil never renders values into them.
			return nil, fmt.Errorf("%s: target %s is not supported: veil-syncer renders templates only into data, since labels and annotations can be read by anyone who may list Secrets; use target Data", where, from.Target)
		}
		switch {
		case from.Secret != nil:
			return nil, fmt.Errorf("%s: Secret %s as a template source is refused: veil-syncer may not read Secrets (it has no get, list or watch on them, so a stolen token reveals none); put the templates in a ConfigMap of namespace %s, or in template.data", where, from.Secret.Name, ns)
		case from.Literal != nil:
			out = append(out, template.Source{Key: where + ".literal", Text: *from.Literal, KeysAndValues: true})
		case from.ConfigMap != nil:
			if configMaps == nil {
				return nil, fmt.Errorf("%s: this veil-syncer cannot read ConfigMaps", where)
			}
			cm, err := configMaps.ConfigMaps(ns).Get(ctx, from.ConfigMap.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("%s: ConfigMap %s does not exist in namespace %s", where, from.ConfigMap.Name, ns)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: reading ConfigMap %s: %w", where, from.ConfigMap.Name, err)
			}
			for _, item := range from.ConfigMap.Items {
				text, ok := cm.Data[item.Key]
				if !ok {
					return nil, fmt.Errorf("%s: ConfigMap %s has no key %q", where, from.ConfigMap.Name, item.Key)
				}
				out = append(out, template.Source{Key: item.Key, Text: text, KeysAndValues: item.TemplateAs == configv1alpha1.TemplateScopeKeysAndValues})
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(tmpl.Data)) {
		out = append(out, template.Source{Key: k, Text: tmpl.Data[k]})
	}
	return out, nil
}
