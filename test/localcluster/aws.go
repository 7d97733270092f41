package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/veil-dev/veil/test/harness"
)

// startAWSDemo starts moto (an AWS emulator) with demo data and applies
// artifacts/examples/aws pointed at it. moto serves plain HTTP, which is
// why make run starts veil-apiserver with --allow-plaintext-providers. The
// returned function stops moto.
func startAWSDemo(ctx context.Context, c *harness.Cluster) (stop func(), err error) {
	// Not under logs/: moto's log records what it serves.
	m, err := harness.StartMoto(ctx, filepath.Join(c.Dir, "moto"))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.Stop()
		}
	}()
	if err := seedAWSDemo(ctx, m); err != nil {
		return nil, err
	}

	// The example names AWS's regional endpoints; here they are moto's.
	err = c.ApplyKustomization(ctx, filepath.Join(c.Root, "artifacts", "examples", "aws"), func(u *unstructured.Unstructured) (bool, error) {
		if u.GetKind() != "SecretStore" {
			return true, nil
		}
		if err := unstructured.SetNestedField(u.Object, m.URL, "spec", "provider", "aws", "endpoint"); err != nil {
			return false, err
		}
		return true, unstructured.SetNestedField(u.Object, m.Region, "spec", "provider", "aws", "region")
	})
	if err != nil {
		return nil, err
	}
	// moto accepts any keys; these are its documented test ones.
	keys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "aws-keys", Namespace: "demo-aws"},
		StringData: map[string]string{"access-key-id": harness.MotoAccessKeyID, "secret-access-key": harness.MotoSecretAccessKey}}
	if _, err := c.KubeClient.CoreV1().Secrets("demo-aws").Create(ctx, keys, metav1.CreateOptions{}); err != nil {
		return nil, err
	}

	fmt.Printf(`
AWS demo (namespace demo-aws, moto at %s, Secrets Manager and Parameter Store):

  kubectl get externalsecretvalues -n demo-aws
  kubectl get externalsecretvalue -n demo-aws db -o yaml         # properties, and AWSPREVIOUS
  kubectl get externalsecretvalue -n demo-aws payments -o yaml   # find by tag
  kubectl get externalsecretvalue -n demo-aws app -o yaml        # parameters, find by path

  AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_ENDPOINT_URL=%s AWS_REGION=%s \
    aws secretsmanager put-secret-value --secret-id demo/db \
    --secret-string '{"username":"app","password":"changed"}'   # then read db again

moto's log: %s
`, m.URL, harness.MotoAccessKeyID, harness.MotoSecretAccessKey, m.URL, m.Region, m.LogFile())
	return m.Stop, nil
}

// seedAWSDemo puts the values artifacts/examples/aws reads.
func seedAWSDemo(ctx context.Context, m *harness.Moto) error {
	cfg := m.Config(harness.MotoAccessKeyID, harness.MotoSecretAccessKey)
	sm, ps := secretsmanager.NewFromConfig(cfg), ssm.NewFromConfig(cfg)
	payments := []smtypes.Tag{{Key: aws.String("team"), Value: aws.String("payments")}}
	for _, s := range []struct {
		name, value string
		tags        []smtypes.Tag
	}{
		{"demo/db", `{"username":"app","password":"demo-password-v1-not-secret"}`, nil},
		{"demo/api/stripe", "demo-stripe-key-not-secret", payments},
		{"demo/api/adyen", "demo-adyen-key-not-secret", payments},
	} {
		if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(s.name), SecretString: aws.String(s.value), Tags: s.tags}); err != nil {
			return fmt.Errorf("seeding moto: %w", err)
		}
	}
	// A second version, so AWSPREVIOUS has something to show.
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("demo/db"), SecretString: aws.String(`{"username":"app","password":"demo-password-v2-not-secret"}`)}); err != nil {
		return fmt.Errorf("seeding moto: %w", err)
	}
	for _, p := range []struct {
		name, value string
		typ         ssmtypes.ParameterType
	}{
		{"/demo/app/log-level", "info", ssmtypes.ParameterTypeString},
		{"/demo/app/session-key", "demo-session-key-not-secret", ssmtypes.ParameterTypeSecureString},
		{"/demo/features/new-checkout", "true", ssmtypes.ParameterTypeString},
		{"/demo/features/dark-mode", "false", ssmtypes.ParameterTypeString},
	} {
		if _, err := ps.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(p.name), Value: aws.String(p.value), Type: p.typ}); err != nil {
			return fmt.Errorf("seeding moto: %w", err)
		}
	}
	return nil
}
