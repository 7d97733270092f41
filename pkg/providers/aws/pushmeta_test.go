package aws

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

func pushMetadata(spec string) []byte {
	return []byte(`{"apiVersion":"kubernetes.external-secrets.io/v1alpha1","kind":"PushSecretMetadata","spec":` + spec + `}`)
}

// TestPushMetadataSecretsManager: ESO's metadata (aws-sm-push-secret-with-
// metadata.yaml) on moto: tags beside Veil's owner tags, description,
// replica regions, and secretPushFormat; tags changed later are set even
// when the value is not.
func TestPushMetadataSecretsManager(t *testing.T) {
	resetMoto(t)
	ctx := ctxFor(t)
	c := newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(setupKeys))
	meta := pushMetadata(`{"secretPushFormat":"string","description":"secret 'managed-by:secret-manager'","tags":{"secret-store":"teamb","refresh-interval":"1h"},"replicationLocations":["eu-north-1"]}`)
	if got, err := c.Push(ctx, providers.Push{Key: "meta/one", Value: []byte("v1"), Owner: owner, Metadata: meta}); err != nil || got != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("push: %v %v", got, err)
	}
	desc, err := secretsManager().DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("meta/one")})
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for _, tg := range desc.Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if tags["secret-store"] != "teamb" || tags["refresh-interval"] != "1h" || tags[OwnerUIDTagKey] != owner.UID || tags[ManagedByTagKey] != ManagedByTagValue {
		t.Errorf("tags %v", tags)
	}
	if aws.ToString(desc.Description) != "secret 'managed-by:secret-manager'" {
		t.Errorf("description %q", aws.ToString(desc.Description))
	}
	if len(desc.ReplicationStatus) != 1 || aws.ToString(desc.ReplicationStatus[0].Region) != "eu-north-1" {
		t.Errorf("replication %+v", desc.ReplicationStatus)
	}
	v, err := secretsManager().GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("meta/one")})
	if err != nil || aws.ToString(v.SecretString) != "v1" || v.SecretBinary != nil {
		t.Errorf("secretPushFormat string: %v", err)
	}

	// The same value with another tag: the tag is set, and that is a push.
	meta2 := pushMetadata(`{"secretPushFormat":"string","tags":{"secret-store":"teamc"}}`)
	if got, err := c.Push(ctx, providers.Push{Key: "meta/one", Value: []byte("v1"), Owner: owner, Metadata: meta2}); err != nil || got != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("retag: %v %v", got, err)
	}
	if got, err := c.Push(ctx, providers.Push{Key: "meta/one", Value: []byte("v1"), Owner: owner, Metadata: meta2}); err != nil || got != esv1alpha1.SecretPushResultUnchanged {
		t.Fatalf("again: %v %v", got, err)
	}
	// binary stores the text as SecretBinary, as ESO's default does.
	bin := pushMetadata(`{"secretPushFormat":"binary"}`)
	if got, err := c.Push(ctx, providers.Push{Key: "meta/one", Value: []byte("v1"), Owner: owner, Metadata: bin}); err != nil || got != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("binary: %v %v", got, err)
	}
	v, err = secretsManager().GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("meta/one")})
	if err != nil || v.SecretString != nil || string(v.SecretBinary) != "v1" {
		t.Errorf("secretPushFormat binary: %v", err)
	}
}

// TestPushMetadataParameterStore: ESO's metadata (aws-pm-push-secret-with-
// metadata.yaml) on moto: type, tier with policies, description, tags.
func TestPushMetadataParameterStore(t *testing.T) {
	resetMoto(t)
	ctx := ctxFor(t)
	c := newClient(t, configv1alpha1.AWSServiceParameterStore, keysFor(setupKeys))
	meta := pushMetadata(`{"description":"API credentials","secretType":"String","tier":{"type":"Advanced","policies":[{"type":"Expiration","version":"1.0","attributes":{"timestamp":"2030-12-02T21:34:33.000Z"}}]},"tags":{"team":"pokedex"}}`)
	if got, err := c.Push(ctx, providers.Push{Key: "/meta/p", Value: []byte("v1"), Owner: owner, Metadata: meta}); err != nil || got != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("push: %v %v", got, err)
	}
	ps := parameterStore()
	got, err := ps.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String("/meta/p")})
	if err != nil || got.Parameter.Type != ssmtypes.ParameterTypeString || aws.ToString(got.Parameter.Value) != "v1" {
		t.Fatalf("parameter: %v", err)
	}
	// moto answers DescribeParameters with policies the SDK cannot decode,
	// so tier and description are read from a parameter without them.
	meta = pushMetadata(`{"description":"API credentials","tier":{"type":"Advanced"}}`)
	if got, err := c.Push(ctx, providers.Push{Key: "/meta/q", Value: []byte("v1"), Owner: owner, Metadata: meta}); err != nil || got != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("push: %v %v", got, err)
	}
	d, err := ps.DescribeParameters(ctx, &ssm.DescribeParametersInput{ParameterFilters: []ssmtypes.ParameterStringFilter{{Key: aws.String("Name"), Values: []string{"/meta/q"}}}})
	if err != nil || len(d.Parameters) != 1 {
		t.Fatalf("describe: %v", err)
	}
	if p := d.Parameters[0]; p.Type != ssmtypes.ParameterTypeSecureString || p.Tier != ssmtypes.ParameterTierAdvanced || aws.ToString(p.Description) != "API credentials" {
		t.Errorf("parameter %s, tier %s, description %q", p.Type, p.Tier, aws.ToString(p.Description))
	}
	tags, err := ps.ListTagsForResource(ctx, &ssm.ListTagsForResourceInput{ResourceType: ssmtypes.ResourceTypeForTaggingParameter, ResourceId: aws.String("/meta/p")})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tg := range tags.TagList {
		found = found || aws.ToString(tg.Key) == "team" && aws.ToString(tg.Value) == "pokedex"
	}
	if !found {
		t.Errorf("tags %+v", tags.TagList)
	}
}

// TestPushMetadataRefused: what neither service nor ESO's metadata has, or
// what would pass as Veil's owner, fails the push naming it, and nothing is
// written.
func TestPushMetadataRefused(t *testing.T) {
	resetMoto(t)
	ctx := ctxFor(t)
	sm := newClient(t, configv1alpha1.AWSServiceSecretsManager, keysFor(setupKeys))
	ps := newClient(t, configv1alpha1.AWSServiceParameterStore, keysFor(setupKeys))
	many := map[string]string{}
	for i := range 47 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	manyJSON, _ := json.Marshal(many)
	for _, c := range []struct {
		name   string
		client providers.Client
		meta   []byte
		says   string
	}{
		{"unknown field", sm, pushMetadata(`{"resourcePolicy":{"blockPublicPolicy":true}}`), `unknown field "resourcePolicy"`},
		{"no wrapper", sm, []byte(`{"kmsKeyID":"k"}`), "must be an object with apiVersion"},
		{"another kind", sm, []byte(`{"apiVersion":"v1","kind":"ConfigMap"}`), `apiVersion "v1" and kind "ConfigMap"`},
		{"owner tag", sm, pushMetadata(`{"tags":{"veil.dev/owner-uid":"someone-else"}}`), "is Veil's own"},
		{"managed-by tag", ps, pushMetadata(`{"tags":{"managed-by":"external-secrets"}}`), "is Veil's own"},
		{"aws tag", sm, pushMetadata(`{"tags":{"aws:x":"y"}}`), "aws: is AWS's own"},
		{"too many tags", ps, pushMetadata(`{"tags":` + string(manyJSON) + `}`), "47 tags, more than the 46"},
		{"bad format", sm, pushMetadata(`{"secretPushFormat":"base64"}`), "neither string nor binary"},
		{"bad region", sm, pushMetadata(`{"replicationLocations":["mars-1"]}`), "not an AWS region"},
		{"bad type", ps, pushMetadata(`{"secretType":"Blob"}`), "not String, StringList or SecureString"},
		{"policies without Advanced", ps, pushMetadata(`{"tier":{"type":"Standard","policies":[]}}`), "need tier.type Advanced"},
		{"encodeAsDecoded", ps, pushMetadata(`{"encodeAsDecoded":true}`), `unknown field "encodeAsDecoded"`},
	} {
		_, err := c.client.Push(ctx, providers.Push{Key: "refused", Value: []byte("v"), Owner: owner, Metadata: c.meta})
		if providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want Invalid saying %q", c.name, err, c.says)
		}
	}
	if _, err := sm.Get(ctx, providers.Ref{Key: "refused"}); providers.ReasonOf(err) != providers.NotFound {
		t.Errorf("something was written: %v", err)
	}
	if _, err := ps.Get(ctx, providers.Ref{Key: "refused"}); providers.ReasonOf(err) != providers.NotFound {
		t.Errorf("something was written: %v", err)
	}
}
