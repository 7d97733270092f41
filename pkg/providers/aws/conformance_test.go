package aws

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/conformance"
	"github.com/veil-dev/veil/test/conformance/remotetest"
	"github.com/veil-dev/veil/test/harness"
)

// TestConformance runs the provider conformance suite against Secrets
// Manager and Parameter Store, served by the package's moto.
func TestConformance(t *testing.T) {
	for _, service := range []configv1alpha1.AWSService{configv1alpha1.AWSServiceSecretsManager, configv1alpha1.AWSServiceParameterStore} {
		t.Run(string(service), func(t *testing.T) {
			resetMoto(t)
			conformance.Run(t, &conformanceFixture{service: service})
		})
	}
}

// TestConformanceRemote runs the suite against the same stores served out
// of process, by veil-provider over gRPC with mutual TLS; the provider
// process holds the access keys, veil-apiserver's side none.
func TestConformanceRemote(t *testing.T) {
	for _, service := range []configv1alpha1.AWSService{configv1alpha1.AWSServiceSecretsManager, configv1alpha1.AWSServiceParameterStore} {
		t.Run(string(service), func(t *testing.T) {
			resetMoto(t)
			remotetest.Run(t, &conformanceFixture{service: service})
		})
	}
}

type conformanceFixture struct{ service configv1alpha1.AWSService }

func (f *conformanceFixture) sm() bool { return f.service == configv1alpha1.AWSServiceSecretsManager }

func (f *conformanceFixture) Info() conformance.Info {
	info := conformance.Info{
		Unsupported: map[conformance.Capability]string{
			conformance.ChangeStream: "AWS tells no one of writes: its changes are found by Versions (ListSecrets, DescribeParameters)",
			conformance.FindBound:    "seeding 501 keys in moto costs more than the suite's budget; TestSecretsManagerFind and TestParameterStore check the bound, lowered",
		},
	}
	if f.sm() {
		info.MissingVersion = "11111111-2222-3333-4444-555555555555"
		info.Unsupported[conformance.BatchGet] = "Secrets Manager's BatchGetSecretValue serves dataFrom.find only; Get reads one secret a call"
	} else {
		// Hierarchical parameter names start with a slash.
		info.KeyPrefix = "/"
		info.MissingVersion = "999"
	}
	return info
}

// store reads moto with the access key k, from the Secret "aws" the
// package's stores name.
func (f *conformanceFixture) store(k harness.AccessKey) conformance.Store {
	spec := configv1alpha1.AWSProvider{Service: f.service, Region: moto.Region, Endpoint: moto.URL, Auth: keys,
		SecretsManager: &configv1alpha1.AWSSecretsManager{ForceDeleteWithoutRecovery: true}}
	return conformance.Store{
		Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{AWS: &spec}},
		Objects: []runtime.Object{&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: conformance.Namespace, Name: "aws"},
			Data:       map[string][]byte{"id": []byte(k.ID), "secret": []byte(k.Secret)},
		}},
	}
}

func (f *conformanceFixture) Store(*testing.T) conformance.Store { return f.store(setupKeys) }

func (f *conformanceFixture) Seed(t *testing.T, key string, value []byte) string {
	t.Helper()
	ctx := ctxFor(t)
	if !f.sm() {
		out, err := parameterStore().PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(key), Value: aws.String(string(value)),
			Type: ssmtypes.ParameterTypeSecureString, Overwrite: aws.Bool(true)})
		if err != nil {
			t.Fatalf("seeding parameter %s: %v", key, err)
		}
		return strconv.FormatInt(out.Version, 10)
	}
	in := &secretsmanager.CreateSecretInput{Name: aws.String(key)}
	in.SecretString, in.SecretBinary = secretPayload(value)
	created, err := secretsManager().CreateSecret(ctx, in)
	var exists *smtypes.ResourceExistsException
	switch {
	case err == nil:
		return aws.ToString(created.VersionId)
	case !errors.As(err, &exists):
		t.Fatalf("seeding secret %s: %v", key, err)
	}
	put := &secretsmanager.PutSecretValueInput{SecretId: aws.String(key)}
	put.SecretString, put.SecretBinary = secretPayload(value)
	out, err := secretsManager().PutSecretValue(ctx, put)
	if err != nil {
		t.Fatalf("seeding a version of secret %s: %v", key, err)
	}
	return aws.ToString(out.VersionId)
}

func (f *conformanceFixture) Tag(t *testing.T, key string, tags map[string]string) {
	t.Helper()
	var err error
	if f.sm() {
		in := &secretsmanager.TagResourceInput{SecretId: aws.String(key)}
		for _, k := range sortedKeys(tags) {
			in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
		}
		_, err = secretsManager().TagResource(ctxFor(t), in)
	} else {
		in := &ssm.AddTagsToResourceInput{ResourceType: ssmtypes.ResourceTypeForTaggingParameter, ResourceId: aws.String(key)}
		for _, k := range sortedKeys(tags) {
			in.Tags = append(in.Tags, ssmtypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
		}
		_, err = parameterStore().AddTagsToResource(ctxFor(t), in)
	}
	if err != nil {
		t.Fatalf("tagging %s: %v", key, err)
	}
}

// Denied is the store with the keys of an IAM user whose policy denies
// everything, with moto checking signatures and policies until the test
// ends.
func (f *conformanceFixture) Denied(t *testing.T, key string) (conformance.Store, []string) {
	ctx := ctxFor(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	user, err := moto.CreateUser(ctx, "conformance-denied-"+hex.EncodeToString(b), `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := moto.RequireSignatures(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = moto.AcceptAnyCredentials(context.Background()) })
	return f.store(user), []string{user.Secret}
}

// Outage stops moto; restore starts it again on the same port, empty.
func (f *conformanceFixture) Outage(t *testing.T) func() {
	moto.Stop()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := moto.Restart(ctx); err != nil {
			t.Fatalf("restarting moto: %v", err)
		}
	}
}
