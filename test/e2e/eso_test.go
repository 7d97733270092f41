package e2e

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

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
	createAWSExternalSecret(t, f.ns, "sm-tags", configv1alpha1.ExternalSecretSpec{SecretStoreRef: storeRef("sm"), Data: []configv1alpha1.ExternalSecretData{
		awsEntry("rotation", fetch("eso/db", "rotation")), awsEntry("password", awsRef("eso/db", "password", "")),
	}})
	createAWSExternalSecret(t, f.ns, "ps-tags", configv1alpha1.ExternalSecretSpec{SecretStoreRef: storeRef("ps"), DataFrom: []configv1alpha1.ExternalSecretDataFromRemoteRef{
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
