package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// The ExternalSecret fields of External Secrets Operator that Veil accepts
// with ESO's meaning (docs/migrating-from-eso.md), on the real servers.

// TestESORewriteAndMetadataVault: dataFrom rewrites and conversion rename
// what find and extract return; metadataPolicy Fetch reads KV v2 metadata,
// which, like a value, reaches no log, status or etcd.
func TestESORewriteAndMetadataVault(t *testing.T) {
	ctx := ctxFor(t)
	v := startVault(t)
	canary := unique("veil-canary-meta-")
	for key, data := range map[string]map[string]any{
		"eso/dev/db":   {"password": "dev-pw", "conn/url": "dev-url"},
		"eso/prod/db":  {"password": "prod-pw"},
		"eso/dev/api":  {"token": "dev-token"},
		"eso/tagged/x": {"value": "tagged-value"},
	} {
		if _, err := v.PutKV(ctx, "secret", key, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.TagKV(ctx, "secret", "eso/tagged/x", map[string]string{"owner": "team-a", "rotation": canary}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	vaultTokenStore(t, v, ns, "vault", nil)
	createFakeStore(t, ns, "fake", configv1alpha1.FakeProviderData{Key: "k", Value: "v"})

	t.Run("find with a regexp rewrite then a transform", func(t *testing.T) {
		vaultExternalSecret(t, ns, "found", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{
			Find: &configv1alpha1.ExternalSecretFind{Name: &configv1alpha1.FindName{RegExp: "^eso/(dev|prod)/"}},
			Rewrite: []configv1alpha1.ExternalSecretRewrite{
				{Regexp: &configv1alpha1.RewriteRegexp{Source: `^eso/(dev|prod)/(.*)$`, Target: "${1}_$2"}},
				{Transform: &configv1alpha1.RewriteTransform{Template: `{{ .value | upper }}`}},
			},
		}}})
		// Each found value is the JSON of the key's fields.
		got := mustValue(t, ns, "found")
		if len(got.Data) != 3 || got.Data["DEV_DB"] == nil || got.Data["PROD_DB"] == nil || got.Data["DEV_API"] == nil {
			t.Fatalf("keys = %v, want DEV_DB, PROD_DB, DEV_API", keysOf(got.Data))
		}
	})

	t.Run("find with only a path reads everything under it", func(t *testing.T) {
		vaultExternalSecret(t, ns, "path-only", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{
			Find: &configv1alpha1.ExternalSecretFind{Path: ptrTo("eso/dev")},
		}}})
		got := mustValue(t, ns, "path-only")
		if len(got.Data) != 2 || got.Data["eso_dev_db"] == nil || got.Data["eso_dev_api"] == nil {
			t.Fatalf("keys = %v, want eso_dev_db, eso_dev_api", keysOf(got.Data))
		}
	})

	t.Run("collisions after a rewrite keep the first in byte order", func(t *testing.T) {
		vaultExternalSecret(t, ns, "collide", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{
			Find:    &configv1alpha1.ExternalSecretFind{Name: &configv1alpha1.FindName{RegExp: "^eso/(dev|prod)/db$"}},
			Rewrite: []configv1alpha1.ExternalSecretRewrite{{Regexp: &configv1alpha1.RewriteRegexp{Source: `^.*/`, Target: ""}}},
		}}})
		got := mustValue(t, ns, "collide")
		var fields map[string]string
		if err := json.Unmarshal(got.Data["db"], &fields); err != nil || len(got.Data) != 1 || fields["password"] != "dev-pw" {
			t.Fatalf("keys %v, db holds %v: want only db, from eso/dev/db", keysOf(got.Data), fields)
		}
	})

	t.Run("extract with Unicode conversion, and with a rewrite", func(t *testing.T) {
		vaultExternalSecret(t, ns, "extracted", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
			{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: "eso/dev/db", ConversionStrategy: configv1alpha1.ConvertUnicode}},
			{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: "eso/prod/db"},
				Rewrite: []configv1alpha1.ExternalSecretRewrite{{Regexp: &configv1alpha1.RewriteRegexp{Source: `^`, Target: "prod-"}}}},
		}})
		wantData(t, mustValue(t, ns, "extracted"), map[string]string{"password": "dev-pw", "conn_U002f_url": "dev-url", "prod-password": "prod-pw"})
	})

	t.Run("a rewrite that leaves an invalid key is refused, naming it", func(t *testing.T) {
		vaultExternalSecret(t, ns, "invalid", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{
			Find:    &configv1alpha1.ExternalSecretFind{Name: &configv1alpha1.FindName{RegExp: "^eso/dev/api$"}},
			Rewrite: []configv1alpha1.ExternalSecretRewrite{{Regexp: &configv1alpha1.RewriteRegexp{Source: `api`, Target: "api key"}}},
		}}})
		valueError(t, ns, "invalid", apierrors.IsInvalid, `dataFrom[0].rewrite turns "eso/dev/api" into "eso/dev/api key", which is not a valid Secret key`)
	})

	t.Run("metadataPolicy Fetch reads custom_metadata", func(t *testing.T) {
		vaultData(t, ns, "meta", "vault",
			configv1alpha1.ExternalSecretData{SecretKey: "rotation", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "eso/tagged/x", Property: "rotation", MetadataPolicy: configv1alpha1.MetadataFetch}},
			configv1alpha1.ExternalSecretData{SecretKey: "value", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "eso/tagged/x", Property: "value"}},
		)
		readCanary(t, ns, "meta", "rotation", canary)
		got := mustValue(t, ns, "meta")
		if string(got.Data["value"]) != "tagged-value" {
			t.Errorf("value = %q: the value and the metadata of one key must not share a cache entry", got.Data["value"])
		}
		vaultExternalSecret(t, ns, "meta-all", "vault", configv1alpha1.ExternalSecretSpec{DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{{
			Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: "eso/tagged/x", MetadataPolicy: configv1alpha1.MetadataFetch},
		}}})
		all := mustValue(t, ns, "meta-all")
		if string(all.Data["owner"]) != "team-a" || string(all.Data["current_version"]) != "1" || all.Data["created_time"] == nil {
			t.Errorf("keys %v: want custom_metadata and the version metadata", keysOf(all.Data))
		}
	})

	t.Run("a store that cannot read metadata says so", func(t *testing.T) {
		createExternalSecret(t, ns, "fake-meta", storeRef("fake"), nil, configv1alpha1.ExternalSecretData{SecretKey: "k",
			RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: "k", MetadataPolicy: configv1alpha1.MetadataFetch}})
		valueError(t, ns, "fake-meta", apierrors.IsInvalid, "SecretStore "+ns+"/fake (provider fake) cannot read metadata")
	})

	assertOnlyInProvider(t, canary)
}

// TestESOMetadataAWS: metadataPolicy Fetch reads Secrets Manager and
// Parameter Store tags.
func TestESOMetadataAWS(t *testing.T) {
	f := newAWSFixture(t)
	canary := unique("veil-canary-tag-")
	f.createSecret(t, "eso/db", `{"password":"pw"}`, map[string]string{"team": "a", "rotation": canary})
	f.putParameter(t, "/eso/token", "tok", ssmtypes.ParameterTypeSecureString)
	if _, err := f.ps.AddTagsToResource(ctxFor(t), addTags("/eso/token", map[string]string{"team": "b"})); err != nil {
		t.Fatal(err)
	}
	createAWSStore(t, f.ns, "sm", f.spec(configv1alpha1.AWSServiceSecretsManager, "aws-keys"))
	createAWSStore(t, f.ns, "ps", f.spec(configv1alpha1.AWSServiceParameterStore, "aws-keys"))
	fetch := func(key, property string) configv1alpha1.ExternalSecretDataRemoteRef {
		return configv1alpha1.ExternalSecretDataRemoteRef{Key: key, Property: property, MetadataPolicy: configv1alpha1.MetadataFetch}
	}
	createAWSExternalSecret(t, f.ns, "sm-tags", configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("sm")), Data: []configv1alpha1.ExternalSecretData{
		awsEntry("rotation", fetch("eso/db", "rotation")), awsEntry("password", awsRef("eso/db", "password", "")),
	}})
	createAWSExternalSecret(t, f.ns, "ps-tags", configv1alpha1.ExternalSecretSpec{SecretStoreRef: new(storeRef("ps")), DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
		{Extract: ptrTo(fetch("/eso/token", ""))},
	}})
	readCanary(t, f.ns, "sm-tags", "rotation", canary)
	wantAWSData(t, awsRead(t, f.ns, "sm-tags"), map[string][]byte{"rotation": []byte(canary), "password": []byte("pw")})
	wantAWSData(t, awsRead(t, f.ns, "ps-tags"), map[string][]byte{"team": []byte("b")})
	assertOnlyInProvider(t, canary)
}

func keysOf(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func addTags(parameter string, tags map[string]string) *ssm.AddTagsToResourceInput {
	in := &ssm.AddTagsToResourceInput{ResourceType: ssmtypes.ResourceTypeForTaggingParameter, ResourceId: aws.String(parameter)}
	for k, v := range tags {
		in.Tags = append(in.Tags, ssmtypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	return in
}

// TestESOSyncerTemplates: veil-syncer honours ESO's template fields
// (mergePolicy, engineVersion, templateFrom ConfigMaps of the
// ExternalSecret's namespace) and refreshPolicy, refuses templateFrom
// Secrets saying why, and nobody reads a ConfigMap through a template that
// they could not get themselves. (Its values are materialised, so they are
// in etcd: canaries are in the other tests.)
func TestESOSyncerTemplates(t *testing.T) {
	startSyncer(t)
	ctx := ctxFor(t)
	ns := newNamespace(t, nil)
	canary := unique("pass-")
	createFakeStore(t, ns, "store", configv1alpha1.FakeProviderData{Key: "user", Value: "app"}, configv1alpha1.FakeProviderData{Key: "pass", Value: canary})
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "tpl", Namespace: ns}, Data: map[string]string{
		"dsn":    "postgres://{{ .user }}:{{ .pass }}@db/app",
		"config": "host: db\nport: '5432'",
	}}
	if _, err := cluster.KubeClient.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	data := []configv1alpha1.ExternalSecretData{dataRef("user", "user", ""), dataRef("pass", "pass", "")}

	t.Run("mergePolicy Merge with templateFrom a ConfigMap", func(t *testing.T) {
		newTargetES(t, ns, "merged", configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
			EngineVersion: "v2",
			MergePolicy:   configv1alpha1.MergePolicyMerge,
			TemplateFrom: []configv1alpha1.TemplateFrom{{ConfigMap: &configv1alpha1.TemplateRef{Name: "tpl", Items: []configv1alpha1.TemplateRefItem{
				{Key: "dsn"}, {Key: "config", TemplateAs: configv1alpha1.TemplateScopeKeysAndValues},
			}}}},
			Data: map[string]string{"user": "{{ .user | upper }}"},
		}}, data...)
		waitSecret(t, ns, "merged", hasData(map[string]string{
			"user": "APP", "pass": canary, "dsn": "postgres://app:" + canary + "@db/app", "host": "db", "port": "5432",
		}))
		waitReady(t, ns, "merged", configv1alpha1.ReasonSynced)
	})

	t.Run("templateFrom a Secret is refused, saying why", func(t *testing.T) {
		newTargetES(t, ns, "from-secret", configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
			TemplateFrom: []configv1alpha1.TemplateFrom{{Secret: &configv1alpha1.TemplateRef{Name: "s", Items: []configv1alpha1.TemplateRefItem{{Key: "k"}}}}},
		}}, data...)
		es := waitReady(t, ns, "from-secret", configv1alpha1.ReasonTargetInvalid)
		if msg := apimeta.FindStatusCondition(es.Status.Conditions, "Ready").Message; !strings.Contains(msg, "veil-syncer may not read Secrets") || strings.Contains(msg, canary) {
			t.Errorf("message: %s", msg)
		}
	})

	t.Run("engineVersion v1 is refused by the CRD with what to do", func(t *testing.T) {
		es := externalSecret(ns, "v1", storeRef("store"), &configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{EngineVersion: "v1"}}, data...)
		_, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctx, es, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "set engineVersion: v2") {
			t.Errorf("engineVersion v1: %v", err)
		}
	})

	t.Run("refreshPolicy CreatedOnce writes once", func(t *testing.T) {
		es := externalSecret(ns, "once", storeRef("store"), &configv1alpha1.ExternalSecretTarget{}, dataRef("user", "user", ""))
		es.Spec.RefreshPolicy = configv1alpha1.RefreshCreatedOnce
		es.Spec.RefreshInterval = &metav1.Duration{Duration: time.Second}
		if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSecret(t, ns, "once", hasData(map[string]string{"user": "app"}))
		setStoreData(t, ns, configv1alpha1.FakeProviderData{Key: "user", Value: "changed"}, configv1alpha1.FakeProviderData{Key: "pass", Value: canary})
		// The Periodic ExternalSecret above follows the change; this one does not.
		waitSecret(t, ns, "merged", func(s *corev1.Secret) error {
			if string(s.Data["user"]) != "CHANGED" {
				return fmt.Errorf("merged not refreshed yet")
			}
			return nil
		})
		time.Sleep(3 * time.Second)
		if got := string(getSecret(t, ns, "once").Data["user"]); got != "app" {
			t.Errorf("refreshPolicy CreatedOnce: the Secret was updated to %q", got)
		}
	})

	t.Run("refreshPolicy OnChange syncs on a change of the ExternalSecret only", func(t *testing.T) {
		es := externalSecret(ns, "on-change", storeRef("store"), &configv1alpha1.ExternalSecretTarget{}, dataRef("user", "user", ""))
		es.Spec.RefreshPolicy = configv1alpha1.RefreshOnChange
		es.Spec.RefreshInterval = &metav1.Duration{Duration: time.Second}
		if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSecret(t, ns, "on-change", hasData(map[string]string{"user": "changed"}))
		setStoreData(t, ns, configv1alpha1.FakeProviderData{Key: "user", Value: "again"}, configv1alpha1.FakeProviderData{Key: "pass", Value: canary})
		waitSecret(t, ns, "merged", func(s *corev1.Secret) error {
			if string(s.Data["user"]) != "AGAIN" {
				return fmt.Errorf("merged not refreshed yet")
			}
			return nil
		})
		time.Sleep(3 * time.Second)
		if got := string(getSecret(t, ns, "on-change").Data["user"]); got != "changed" {
			t.Fatalf("refreshPolicy OnChange: the Secret was refreshed to %q without a change of the ExternalSecret", got)
		}
		// Annotating forces a sync, as in ESO.
		cur, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Get(ctx, "on-change", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Annotations = map[string]string{"force-sync": "1"}
		if _, err := cluster.VeilClient.ConfigV1alpha1().ExternalSecrets(ns).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitSecret(t, ns, "on-change", hasData(map[string]string{"user": "again"}))
	})

	t.Run("naming a ConfigMap needs get on it", func(t *testing.T) {
		mallory := impersonate(t, unique("mallory-"))
		bind(t, ns, mallory.name, "veil:definitions-editor")
		bind(t, ns, mallory.name, "veil:values-reader")
		bind(t, ns, mallory.name, "veil:store-user")
		waitAllowed(t, mallory.name, useAttrs(ns, "secretstores", "store"), true)
		waitAllowed(t, mallory.name, esAttrs(ns, "create"), true)
		es := externalSecret(ns, "peek", storeRef("store"), &configv1alpha1.ExternalSecretTarget{Template: &configv1alpha1.ExternalSecretTemplate{
			TemplateFrom: []configv1alpha1.TemplateFrom{{ConfigMap: &configv1alpha1.TemplateRef{Name: "tpl", Items: []configv1alpha1.TemplateRefItem{{Key: "config"}}}}},
		}}, data...)
		_, err := mallory.veil.ConfigV1alpha1().ExternalSecrets(ns).Create(ctx, es, metav1.CreateOptions{})
		refused(t, "templateFrom a ConfigMap the user may not get", err, "veil-externalsecrets", "configmaps/tpl", "may not get them")
	})
}
