package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/syncer"
)

// TestOwnershipVault: tenant A's pushed key is A's PushSecret's. Tenant B,
// pushing through the same ClusterSecretStore, can neither overwrite it
// (Replace included) nor delete it; Vault sees no write, and the value and
// its owner stay. B's PushSecret with deletionPolicy Delete, deleted,
// deletes its own key, reports A's as not its own, and is released.
func TestOwnershipVault(t *testing.T) {
	ctx := ctxFor(t)
	startSyncer(t)
	v := startVault(t)
	teamA, teamB := newNamespace(t, nil), newNamespace(t, nil)
	ref := sharedVaultStore(t, v, configv1alpha1.ClusterSecretStoreCondition{Namespaces: []string{teamA, teamB}})
	stores := []configv1alpha1.SecretStoreRef{ref}
	canary := unique("owned-")

	createPushSecret(t, teamA, "app", "unused", "", stores, match("k", "shared/db", "password"))
	if sp, err := secretPush(t, cluster.VeilClient, teamA, "app", "", map[string]string{"k": canary}); err != nil || results(sp) != "shared/db/password=Pushed" {
		t.Fatalf("A's push: %s, %v", results(sp), err)
	}
	psA, err := cluster.VeilClient.ConfigV1alpha1().PushSecrets(teamA).Get(ctx, "app", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := v.Root.KVv2("secret").GetMetadata(ctx, "shared/db")
	if err != nil {
		t.Fatal(err)
	}
	wantOwner := map[string]any{"managed-by": "veil", "veil.dev/owner-namespace": teamA, "veil.dev/owner-name": "app", "veil.dev/owner-uid": string(psA.UID)}
	for k, want := range wantOwner {
		if meta.CustomMetadata[k] != want {
			t.Errorf("custom_metadata %v, want %s=%v", meta.CustomMetadata, k, want)
		}
	}

	writes := veilMetricsSince(t)
	createPushSecret(t, teamB, "overwrite", "unused", "", stores, match("k", "shared/db", "password"))
	createPushSecret(t, teamB, "replace", "unused", configv1alpha1.PushSecretUpdatePolicyReplace, stores, match("k", "shared/db", "password"))
	for _, c := range []struct {
		ps     string
		action esv1alpha1.SecretPushAction
		data   map[string]string
	}{
		{"overwrite", "", map[string]string{"k": canary}}, // a right guess
		{"overwrite", "", map[string]string{"k": "b-was-here"}},
		{"replace", "", map[string]string{"k": "b-was-here"}},
		{"replace", esv1alpha1.SecretPushActionDelete, nil},
	} {
		sp, err := secretPush(t, cluster.VeilClient, teamB, c.ps, c.action, c.data)
		if err != nil || results(sp) != "shared/db/password=NotOwner" || !strings.Contains(sp.Status.Results[0].Message, "belongs to another PushSecret") {
			t.Errorf("B's %s %s: %+v, %v; want NotOwner", c.ps, c.action, sp, err)
		}
		if sp != nil && strings.Contains(fmt.Sprint(sp.Status), canary) {
			t.Errorf("B's %s %s: the answer carries A's value", c.ps, c.action)
		}
	}
	if d := vaultTraffic(writes, "kv-put", "kv-metadata-put", "kv-delete"); d != 0 {
		t.Errorf("B's pushes made %v writes to Vault", d)
	}

	// Through veil-syncer: B's PushSecret pushes its own key and is refused
	// A's (and retries, so its own key may already read Unchanged); deleted,
	// it deletes its own and leaves A's, and is not stuck.
	grantPushSource(t, teamB)
	src := putSource(t, teamB, "src", map[string]string{"k": "b-value"})
	newPushSecret(t, teamB, "synced", "src", deleteRemote, stores, match("k", "shared/b", "value"), match("k", "shared/db", "password"))
	failed := waitPush(t, 30*time.Second, pushReady(teamB, "synced", configv1alpha1.ReasonPushFailed, ""))
	if r := failed.Status.SyncedPushSecrets[string(ref.Kind)+"/"+ref.Name]; r["shared/b#value"].PushTime == nil || r["shared/db#password"].Result != "NotOwner" || r["shared/db#password"].PushTime != nil {
		t.Errorf("B's synced results: %+v (source %s)", r, src.ResourceVersion)
	}
	waitVault(t, v, "shared/b", "value", "b-value")
	deletePushSecret(t, teamB, "synced")
	waitPushEvent(t, teamB, "synced", syncer.EventDeleteRefused, "1 of 2 remote keys are not this PushSecret's")
	if _, err := vaultKV(t, v, "shared/b"); err == nil {
		t.Error("B's own key is still in Vault after its PushSecret was deleted")
	}
	waitVault(t, v, "shared/db", "password", canary)
	if meta, err := v.Root.KVv2("secret").GetMetadata(ctx, "shared/db"); err != nil || meta.CustomMetadata["veil.dev/owner-uid"] != string(psA.UID) {
		t.Errorf("A's key's owner after B's attempts: %v, %v", meta, err)
	}
}

// TestOwnershipGuessesLookAlike: pushing to a key Veil does not own gives
// the same answer whether or not the pushed value equals the one there,
// on every provider, so a pusher learns nothing about a value it may not
// write; and nothing is written.
func TestOwnershipGuessesLookAlike(t *testing.T) {
	ctx := ctxFor(t)
	const theirs = "unmanaged-guess-canary"
	answers := func(t *testing.T, ns string, stores []configv1alpha1.SecretStoreRef, key, property string) {
		t.Helper()
		createPushSecret(t, ns, "guess", "unused", "", stores, match("k", key, property))
		var got []string
		for _, guess := range []string{theirs, "a-wrong-guess"} {
			sp, err := secretPush(t, cluster.VeilClient, ns, "guess", "", map[string]string{"k": guess})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range sp.Status.Results {
				if r.Result != "Failed" || r.Reason != "Conflict" {
					t.Errorf("guess %q: %+v, want Failed Conflict", guess, r)
				}
				got = append(got, r.Result+" "+r.Reason+" "+r.Message)
			}
		}
		if half := len(got) / 2; strings.Join(got[:half], "\n") != strings.Join(got[half:], "\n") {
			t.Errorf("the answers differ with the guess:\n%s", strings.Join(got, "\n"))
		}
		if strings.Contains(strings.Join(got, ""), theirs) {
			t.Errorf("an answer carries the value")
		}
	}

	t.Run("Vault", func(t *testing.T) {
		v := startVault(t)
		ns := newNamespace(t, nil)
		vaultWriterStore(t, v, ns, "vault", false)
		if _, err := v.PutKV(ctx, "secret", "theirs", map[string]any{"v": theirs}); err != nil {
			t.Fatal(err)
		}
		writes := veilMetricsSince(t)
		answers(t, ns, []configv1alpha1.SecretStoreRef{storeRef("vault")}, "theirs", "v")
		if d := vaultTraffic(writes, "kv-put", "kv-metadata-put", "kv-delete"); d != 0 {
			t.Errorf("%v writes reached Vault", d)
		}
		waitVault(t, v, "theirs", "v", theirs)
	})

	t.Run("AWS", func(t *testing.T) {
		f := newAWSFixture(t)
		createAWSStore(t, f.ns, "sm", f.spec(configv1alpha1.AWSServiceSecretsManager, "aws-keys"))
		createAWSStore(t, f.ns, "ps", f.spec(configv1alpha1.AWSServiceParameterStore, "aws-keys"))
		if _, err := f.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("theirs"), SecretString: aws.String(theirs)}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.ps.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String("theirs"), Value: aws.String(theirs), Type: ssmtypes.ParameterTypeSecureString}); err != nil {
			t.Fatal(err)
		}
		since := awsCallsSince(t, "PutSecretValue", "CreateSecret", "TagResource", "PutParameter", "AddTagsToResource")
		answers(t, f.ns, []configv1alpha1.SecretStoreRef{storeRef("sm"), storeRef("ps")}, "theirs", "")
		for op, n := range since() {
			if n != 0 {
				t.Errorf("%s called %v times", op, n)
			}
		}
	})
}

// TestOwnershipSkippedKeysAreNotDeleted: a PushSecret with deletionPolicy
// Delete that only skipped keys (IfNotExists) pushed nothing, so deleting
// it deletes nothing, and its namespace goes away rather than hanging in
// Terminating.
func TestOwnershipSkippedKeysAreNotDeleted(t *testing.T) {
	ctx := ctxFor(t)
	startSyncer(t)
	v := startVault(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unique("e2e-skipped-")}}
	if _, err := cluster.KubeClient.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cluster.KubeClient.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	grantPushSource(t, ns.Name)
	vaultWriterStore(t, v, ns.Name, "vault", false)
	if _, err := v.PutKV(ctx, "secret", "ci/existing", map[string]any{"value": "someone else's"}); err != nil {
		t.Fatal(err)
	}
	src := putSource(t, ns.Name, "src", map[string]string{"k": "mine"})
	newPushSecret(t, ns.Name, "once", "src", func(s *configv1alpha1.PushSecretSpec) {
		s.UpdatePolicy = configv1alpha1.PushSecretUpdatePolicyIfNotExists
		s.DeletionPolicy = configv1alpha1.PushSecretDeletionPolicyDelete
	}, []configv1alpha1.SecretStoreRef{storeRef("vault")}, match("k", "ci/existing", "value"))
	ps := waitPush(t, 30*time.Second, pushReady(ns.Name, "once", configv1alpha1.ReasonSynced, src.ResourceVersion))
	if r := ps.Status.SyncedPushSecrets["SecretStore/vault"]["ci/existing#value"]; r.Result != "SkippedExists" || r.PushTime != nil {
		t.Errorf("the skipped key's record: %+v", r)
	}
	if !hasPushFinalizer(ps) {
		t.Fatalf("finalizers %v", ps.Finalizers)
	}

	deletes := veilMetricsSince(t)
	deleteNamespaceAndWait(t, ns.Name)
	if d := vaultTraffic(deletes, "kv-delete", "kv-put", "kv-metadata-put"); d != 0 {
		t.Errorf("deleting a PushSecret that only skipped made %v writes to Vault", d)
	}
	waitVault(t, v, "ci/existing", "value", "someone else's")
}
