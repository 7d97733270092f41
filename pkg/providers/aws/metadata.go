package aws

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/veil-dev/veil/pkg/providers"
)

// remoteRef.metadataPolicy Fetch reads a secret's or parameter's tags, as
// External Secrets Operator does: a JSON object of tag keys to values.

var (
	_ providers.MetadataGetter = &secretsManagerClient{}
	_ providers.MetadataGetter = &parameterStoreClient{}
)

// GetMetadata returns the tags of a secret (secretsmanager:DescribeSecret).
func (c *secretsManagerClient) GetMetadata(ctx context.Context, key string) (providers.Value, error) {
	out, err := c.api.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String(c.key(key))})
	if err != nil {
		return providers.Value{}, c.callError(err, fmt.Sprintf("reading the tags of secret %q", key))
	}
	if out.DeletedDate != nil {
		return providers.Value{}, providers.Errorf(providers.NotFound, "%s: secret %q is scheduled for deletion (restore it with RestoreSecret to read it again)", c.store, key)
	}
	tags := map[string]string{}
	for _, t := range out.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return tagsValue(tags)
}

// GetMetadata returns the tags of a parameter (ssm:ListTagsForResource).
func (c *parameterStoreClient) GetMetadata(ctx context.Context, key string) (providers.Value, error) {
	out, err := c.api.ListTagsForResource(ctx, &ssm.ListTagsForResourceInput{ResourceType: ssmtypes.ResourceTypeForTaggingParameter, ResourceId: aws.String(c.key(key))})
	if err != nil {
		return providers.Value{}, c.callError(err, fmt.Sprintf("reading the tags of parameter %q", key))
	}
	tags := map[string]string{}
	for _, t := range out.TagList {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return tagsValue(tags)
}

func tagsValue(tags map[string]string) (providers.Value, error) {
	b, err := json.Marshal(tags)
	if err != nil {
		return providers.Value{}, providers.Errorf(providers.Unavailable, "tags could not be encoded")
	}
	return providers.Value{Data: b}, nil
}
