package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

func pushMeta(spec string) *apiextensionsv1.JSON {
	return &apiextensionsv1.JSON{Raw: []byte(`{"apiVersion":"kubernetes.external-secrets.io/v1alpha1","kind":"PushSecretMetadata","spec":` + spec + `}`)}
}

// withMetadata gives data[i] metadata m, and deletes remote keys with the
// PushSecret.
func withMetadata(m ...*apiextensionsv1.JSON) func(*configv1alpha1.PushSecretSpec) {
	return func(s *configv1alpha1.PushSecretSpec) {
		s.DeletionPolicy = configv1alpha1.PushSecretDeletionPolicyDelete
		for i := range m {
			s.Data[i].Metadata = m[i]
		}
	}
}

// TestPushSecretMetadataAWS: ESO's metadata examples through the whole
// path (PushSecret, veil-syncer, SecretPush, veil-apiserver) to moto:
// Secrets Manager tags, description and secretPushFormat; Parameter Store
// type, tier and tags. A field no provider takes fails that key, naming
// it; the values reach neither status nor Events.
func TestPushSecretMetadataAWS(t *testing.T) {
	startSyncer(t)
	ctx := ctxFor(t)
	f := newAWSFixture(t)
	grantPushSource(t, f.ns)
	createAWSStore(t, f.ns, "sm", f.spec(configv1alpha1.AWSServiceSecretsManager, "aws-keys"))
	createAWSStore(t, f.ns, "ps", f.spec(configv1alpha1.AWSServiceParameterStore, "aws-keys"))
	canary := unique("veil-canary-meta-")
	name := unique("meta-")
	src := putSource(t, f.ns, "src", map[string]string{"key1": canary})
	newPushSecret(t, f.ns, "sm", "src", withMetadata(pushMeta(`{"secretPushFormat":"string","description":"secret 'managed-by:secret-manager' from 'secret-store:teamb-secret-store'","tags":{"secret-store":"teamb-secret-store","refresh-interval":"1h"}}`)),
		[]configv1alpha1.SecretStoreRef{storeRef("sm")}, match("key1", name, ""))
	newPushSecret(t, f.ns, "ps", "src", withMetadata(pushMeta(`{"description":"This is a secret for the API credentials","secretType":"SecureString","tier":{"type":"Advanced"},"tags":{"team":"pokedex"}}`)),
		[]configv1alpha1.SecretStoreRef{storeRef("ps")}, match("key1", "/"+name, ""))

	waitPush(t, 30*time.Second, pushReady(f.ns, "sm", configv1alpha1.ReasonSynced, src.ResourceVersion))
	waitPush(t, 30*time.Second, pushReady(f.ns, "ps", configv1alpha1.ReasonSynced, src.ResourceVersion))
	desc, err := f.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for _, tg := range desc.Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if tags["secret-store"] != "teamb-secret-store" || tags["refresh-interval"] != "1h" || tags["managed-by"] != "veil" {
		t.Errorf("Secrets Manager tags %v", tags)
	}
	if !strings.HasPrefix(aws.ToString(desc.Description), "secret 'managed-by:secret-manager'") {
		t.Errorf("description %q", aws.ToString(desc.Description))
	}
	if v, err := f.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)}); err != nil || aws.ToString(v.SecretString) != canary {
		t.Errorf("the value is not the SecretString (%v)", err)
	}
	d, err := f.ps.DescribeParameters(ctx, &ssm.DescribeParametersInput{ParameterFilters: []ssmtypes.ParameterStringFilter{{Key: aws.String("Name"), Values: []string{"/" + name}}}})
	if err != nil || len(d.Parameters) != 1 {
		t.Fatalf("describe: %v", err)
	}
	if p := d.Parameters[0]; p.Type != ssmtypes.ParameterTypeSecureString || p.Tier != ssmtypes.ParameterTierAdvanced || aws.ToString(p.Description) != "This is a secret for the API credentials" {
		t.Errorf("parameter %s, tier %s, description %q", p.Type, p.Tier, aws.ToString(p.Description))
	}
	pt, err := f.ps.ListTagsForResource(ctx, &ssm.ListTagsForResourceInput{ResourceType: ssmtypes.ResourceTypeForTaggingParameter, ResourceId: aws.String("/" + name)})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tg := range pt.TagList {
		found = found || aws.ToString(tg.Key) == "team" && aws.ToString(tg.Value) == "pokedex"
	}
	if !found {
		t.Errorf("Parameter Store tags %+v", pt.TagList)
	}

	// ESO's resourcePolicy, which Veil does not take: refused, named.
	newPushSecret(t, f.ns, "policy", "src", withMetadata(pushMeta(`{"resourcePolicy":{"blockPublicPolicy":true}}`)),
		[]configv1alpha1.SecretStoreRef{storeRef("sm")}, match("key1", name+"-policy", ""))
	ps := waitPush(t, 30*time.Second, pushReady(f.ns, "policy", configv1alpha1.ReasonPushFailed, ""))
	if msg := readyMessage(ps); !strings.Contains(msg, `unknown field "resourcePolicy"`) {
		t.Errorf("Ready says %q", msg)
	}
	if _, err := f.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(name + "-policy")}); err == nil {
		t.Error("a secret was created though its metadata was refused")
	}

	// ESO's replication example writes the fields without the wrapper:
	// admitted as ESO admits it, and the push fails saying how to wrap them.
	newPushSecret(t, f.ns, "bare", "src", withMetadata(&apiextensionsv1.JSON{Raw: []byte(
		`{"kmsKeyID":"bb123123-b2b0-4f60-ac3a-44a13f0e6b6c","replicationLocations":["eu-north-1","eu-west-2"],"secretPushFormat":"string","description":"Cross-account accessible secret","tags":{"team":"platform-engineering"}}`)}),
		[]configv1alpha1.SecretStoreRef{storeRef("sm")}, match("key1", name+"-bare", ""))
	ps = waitPush(t, 30*time.Second, pushReady(f.ns, "bare", configv1alpha1.ReasonPushFailed, ""))
	if msg := readyMessage(ps); !strings.Contains(msg, "kind PushSecretMetadata and the provider's fields under spec") || !strings.Contains(msg, "move the fields under spec") {
		t.Errorf("Ready says %q", msg)
	}
	if _, err := f.sm.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(name + "-bare")}); err == nil {
		t.Error("a secret was created though its metadata was not wrapped")
	}

	out := kubectl(t, "", "get", "pushsecrets,events", "-n", f.ns, "-o", "yaml")
	if strings.Contains(out, canary) || strings.Contains(out, b64(canary)) {
		t.Error("the PushSecrets or the Events carry the value")
	}
	deletePushSecret(t, f.ns, "sm")
	deletePushSecret(t, f.ns, "ps")
	deletePushSecret(t, f.ns, "policy")
	deletePushSecret(t, f.ns, "bare")
}

// TestPushSecretMetadataVault: dataTo metadata, Veil's customMetadata for
// Vault KV v2, reaches each key's custom_metadata beside the owner marks.
func TestPushSecretMetadataVault(t *testing.T) {
	startSyncer(t)
	ctx := ctxFor(t)
	v := startVault(t)
	ns := newNamespace(t, nil)
	grantPushSource(t, ns)
	vaultWriterStore(t, v, ns, "vault", false)
	src := putSource(t, ns, "src", map[string]string{"db-a": `{"x":"1"}`, "db-b": `{"x":"2"}`})
	newPushSecret(t, ns, "app", "src", withDataTo(configv1alpha1.PushSecretDataTo{StoreRef: storeRef("vault"),
		Rewrite:  []configv1alpha1.ExternalSecretRewrite{rewriteRegexp("^db-", "meta/")},
		Metadata: pushMeta(`{"customMetadata":{"team":"payments"}}`)}), []configv1alpha1.SecretStoreRef{storeRef("vault")})
	waitPush(t, 30*time.Second, pushReady(ns, "app", configv1alpha1.ReasonSynced, src.ResourceVersion))
	for _, key := range []string{"meta/a", "meta/b"} {
		m, err := v.Root.KVv2("secret").GetMetadata(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if m.CustomMetadata["team"] != "payments" || m.CustomMetadata["managed-by"] != "veil" {
			t.Errorf("%s: custom_metadata %v", key, m.CustomMetadata)
		}
	}
	deletePushSecret(t, ns, "app")
}
