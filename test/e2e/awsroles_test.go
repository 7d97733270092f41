package e2e

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// TestAWSRoleChain reads through kube-apiserver's aggregation from a store
// that chains two roles on moto with signatures required. Only the last
// role may read the secret (neither the keys' user nor the first role
// may), so the value read proves the final identity is role's.
func TestAWSRoleChain(t *testing.T) {
	f := newAWSFixture(t)
	ctx := ctxFor(t)
	canary := unique("veil-canary-chain-")
	f.createSecret(t, "chain/db", canary, nil)
	const assume = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sts:AssumeRole","sts:TagSession"],"Resource":"*"}]}`
	const read = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["secretsmanager:GetSecretValue"],"Resource":"*"}]}`
	trusting := func(principal string) string {
		return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + principal + `"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`
	}
	user, err := f.moto.CreateUser(ctx, "chainer", assume)
	if err != nil {
		t.Fatal(err)
	}
	first, err := f.moto.CreateRole(ctx, "chain-first", trusting("arn:aws:iam::123456789012:user/chainer"), assume)
	if err != nil {
		t.Fatal(err)
	}
	// moto matches a trust policy's principal literally: the last role
	// trusts the first role's session that Veil opens for this store.
	last, err := f.moto.CreateRole(ctx, "chain-last", trusting("arn:aws:sts::123456789012:assumed-role/chain-first/veil."+f.ns+".chain"), read)
	if err != nil {
		t.Fatal(err)
	}
	// A role nobody may assume: a chain through it must fail, naming it.
	closed, err := f.moto.CreateRole(ctx, "chain-closed", trusting("arn:aws:iam::123456789012:user/nobody"), read)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.moto.RequireSignatures(ctx); err != nil {
		t.Fatal(err)
	}
	f.keysSecret(t, f.ns, "chainer-keys", user)

	t.Run("two hops read as the last role", func(t *testing.T) {
		spec := f.spec(configv1alpha1.AWSServiceSecretsManager, "chainer-keys")
		spec.AdditionalRoles = []string{first}
		spec.Role, spec.ExternalID = last, "team-a"
		spec.SessionTags = []configv1alpha1.AWSTag{{Key: "team", Value: "a"}}
		spec.TransitiveTagKeys = []string{"team"}
		createAWSStore(t, f.ns, "chain", spec)
		got, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(f.ns).Get(ctx, "chain", metav1.GetOptions{})
		if err != nil || len(got.Spec.Provider.AWS.AdditionalRoles) != 1 || len(got.Spec.Provider.AWS.TransitiveTagKeys) != 1 {
			t.Fatalf("kube-apiserver must keep additionalRoles and transitiveTagKeys: %+v, %v", got, err)
		}
		calls := awsCallsSince(t, "AssumeRole")
		createExternalSecret(t, f.ns, "chained", storeRef("chain"), nil, dataRef("value", "chain/db", ""))
		wantAWSData(t, awsRead(t, f.ns, "chained"), map[string][]byte{"value": []byte(canary)})
		if n := calls()["AssumeRole"]; n != 2 {
			t.Errorf("%v AssumeRole calls, want 2: one per hop", n)
		}
	})

	t.Run("the first role alone may not read", func(t *testing.T) {
		spec := f.spec(configv1alpha1.AWSServiceSecretsManager, "chainer-keys")
		spec.Role = first
		createAWSStore(t, f.ns, "first-only", spec)
		createExternalSecret(t, f.ns, "first-only", storeRef("first-only"), nil, dataRef("value", "chain/db", ""))
		awsReadFails(t, f.ns, "first-only", apierrors.IsForbidden)
	})

	t.Run("a refused hop is named", func(t *testing.T) {
		spec := f.spec(configv1alpha1.AWSServiceSecretsManager, "chainer-keys")
		spec.AdditionalRoles = []string{first, closed}
		spec.Role = last
		createAWSStore(t, f.ns, "refused", spec)
		createExternalSecret(t, f.ns, "refused", storeRef("refused"), nil, dataRef("value", "chain/db", ""))
		err := awsReadFails(t, f.ns, "refused", apierrors.IsForbidden)
		if !strings.Contains(err.Error(), "STS refused AssumeRole of role "+closed) {
			t.Errorf("the error does not name the refused hop %s: %v", closed, err)
		}
		if strings.Contains(err.Error(), user.Secret) {
			t.Error("the error carries the secret key")
		}
	})

	t.Run("neither the keys nor the value reach a log", func(t *testing.T) {
		// The secret key is in etcd, in its Secret; it must be in no log
		// after the chain used it and a hop was refused. The value read
		// through the chain is only at the provider.
		seen, err := cluster.FindCanary(ctxFor(t), user.Secret)
		if err != nil {
			t.Fatal(err)
		}
		if seen.InFiles() != 0 {
			t.Errorf("the access key's secret was logged: %s", seen)
		}
		assertOnlyInProvider(t, canary)
	})

	t.Run("admission refuses a transitive key that is no session tag", func(t *testing.T) {
		spec := f.spec(configv1alpha1.AWSServiceSecretsManager, "chainer-keys")
		spec.Role = last
		spec.SessionTags = []configv1alpha1.AWSTag{{Key: "team", Value: "a"}}
		spec.TransitiveTagKeys = []string{"cost-center"}
		s := &configv1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Name: "bad-tag", Namespace: f.ns},
			Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{AWS: &spec}}}
		_, err := cluster.VeilClient.ConfigV1alpha1().SecretStores(f.ns).Create(ctx, s, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "every transitiveTagKeys entry must be the key of a sessionTags entry") {
			t.Errorf("got %v, want Invalid naming the rule", err)
		}
		spec.TransitiveTagKeys = nil
		spec.AdditionalRoles = []string{first, first, first, first, first, first}
		s.Spec.Provider.AWS = &spec
		_, err = cluster.VeilClient.ConfigV1alpha1().SecretStores(f.ns).Create(ctx, s, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "additionalRoles") {
			t.Errorf("six additional roles: got %v, want Invalid", err)
		}
	})
}
