package syncer

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
)

// ESO's template fields: mergePolicy, engineVersion and templateFrom.
func TestDesiredESOTemplates(t *testing.T) {
	kube := fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "tpl"}, Data: map[string]string{
			"url":  "postgres://{{ .user }}@db",
			"more": "a: '{{ .user }}-a'\nb: fixed",
			"bad":  "{{ .user }}: [",
			"leak": "{{ .password }} x: y",
		}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "theirs"}, Data: map[string]string{"url": "x"}},
	)
	c := &Controller{key: []byte(strings.Repeat("k", 32)), configMaps: kube.CoreV1()}
	v := &esv1alpha1.ExternalSecretValue{Type: "Opaque", Data: map[string][]byte{"user": []byte("app"), "password": []byte("pw")}}
	cm := func(name string, items ...configv1alpha1.TemplateRefItem) configv1alpha1.TemplateFrom {
		return configv1alpha1.TemplateFrom{ConfigMap: &configv1alpha1.TemplateRef{Name: name, Items: items}}
	}
	item := func(key string, scope configv1alpha1.TemplateScope) configv1alpha1.TemplateRefItem {
		return configv1alpha1.TemplateRefItem{Key: key, TemplateAs: scope}
	}
	literal := "c: '{{ .password }}'"

	for _, c2 := range []struct {
		name     string
		tmpl     configv1alpha1.ExternalSecretTemplate
		want     map[string]string
		errorHas string
	}{{
		name: "Replace keeps only the rendered keys",
		tmpl: configv1alpha1.ExternalSecretTemplate{Data: map[string]string{"u": "{{ .user }}"}},
		want: map[string]string{"u": "app"},
	}, {
		name: "Merge lays them over the values",
		tmpl: configv1alpha1.ExternalSecretTemplate{MergePolicy: configv1alpha1.MergePolicyMerge, Data: map[string]string{"user": "{{ .user | upper }}"}},
		want: map[string]string{"user": "APP", "password": "pw"},
	}, {
		name: "templateFrom ConfigMap, Values and KeysAndValues, literal; template.data wins",
		tmpl: configv1alpha1.ExternalSecretTemplate{
			TemplateFrom: []configv1alpha1.TemplateFrom{
				cm("tpl", item("url", configv1alpha1.TemplateScopeValues), item("more", configv1alpha1.TemplateScopeKeysAndValues)),
				{Literal: &literal},
			},
			Data: map[string]string{"b": "from data"},
		},
		want: map[string]string{"url": "postgres://app@db", "a": "app-a", "b": "from data", "c": "pw"},
	}, {
		name: "engineVersion v2 is what Veil does",
		tmpl: configv1alpha1.ExternalSecretTemplate{EngineVersion: "v2", Data: map[string]string{"u": "{{ .user }}"}},
		want: map[string]string{"u": "app"},
	}, {
		name:     "engineVersion v1 is refused",
		tmpl:     configv1alpha1.ExternalSecretTemplate{EngineVersion: "v1", Data: map[string]string{"u": "{{ .user }}"}},
		errorHas: "engineVersion v1 is not supported",
	}, {
		name:     "Secret sources are refused, saying why",
		tmpl:     configv1alpha1.ExternalSecretTemplate{TemplateFrom: []configv1alpha1.TemplateFrom{{Secret: &configv1alpha1.TemplateRef{Name: "s"}}}},
		errorHas: "veil-syncer may not read Secrets",
	}, {
		name:     "a ConfigMap of another namespace cannot be named: it is looked up in the ExternalSecret's",
		tmpl:     configv1alpha1.ExternalSecretTemplate{TemplateFrom: []configv1alpha1.TemplateFrom{cm("theirs", item("url", ""))}},
		errorHas: "ConfigMap theirs does not exist in namespace app",
	}, {
		name:     "labels and annotations are not rendered into",
		tmpl:     configv1alpha1.ExternalSecretTemplate{TemplateFrom: []configv1alpha1.TemplateFrom{{Target: configv1alpha1.TemplateTargetLabels, Literal: &literal}}},
		errorHas: "target Labels is not supported",
	}, {
		name:     "KeysAndValues output that is not YAML says so without quoting it",
		tmpl:     configv1alpha1.ExternalSecretTemplate{TemplateFrom: []configv1alpha1.TemplateFrom{cm("tpl", item("bad", configv1alpha1.TemplateScopeKeysAndValues))}},
		errorHas: `template for key "bad": templateAs KeysAndValues: the output is not YAML`,
	}, {
		name:     "KeysAndValues keys that a Secret cannot hold are refused unquoted: they may hold values",
		tmpl:     configv1alpha1.ExternalSecretTemplate{TemplateFrom: []configv1alpha1.TemplateFrom{cm("tpl", item("leak", configv1alpha1.TemplateScopeKeysAndValues))}},
		errorHas: "the output has a key a Secret cannot hold",
	}} {
		t.Run(c2.name, func(t *testing.T) {
			tmpl := c2.tmpl
			d, err := c.desired(context.Background(), testES(configv1alpha1.ExternalSecretTarget{Template: &tmpl}), v, "db")
			if c2.errorHas != "" {
				if err == nil || !strings.Contains(err.Error(), c2.errorHas) {
					t.Fatalf("err = %v, want %q", err, c2.errorHas)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Fatalf("the error quotes values: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for k, b := range d.data {
				got[k] = string(b)
			}
			if len(got) != len(c2.want) {
				t.Fatalf("data = %v, want %v", got, c2.want)
			}
			for k, w := range c2.want {
				if got[k] != w {
					t.Errorf("data[%s] = %q, want %q", k, got[k], w)
				}
			}
		})
	}
}

func TestRefreshPolicyRequeue(t *testing.T) {
	c := &Controller{skeleton: newExternalSecretSkeleton(nil, nil, time.Hour)}
	for policy, want := range map[configv1alpha1.RefreshPolicy]bool{
		"": true, configv1alpha1.RefreshPeriodic: true, configv1alpha1.RefreshCreatedOnce: false, configv1alpha1.RefreshOnChange: false,
	} {
		es := testES(configv1alpha1.ExternalSecretTarget{})
		es.Spec.RefreshPolicy = policy
		if _, ok := c.requeueAfter(es); ok != want {
			t.Errorf("refreshPolicy %q: requeued %v, want %v", policy, ok, want)
		}
	}
}
