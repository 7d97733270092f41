package syncer

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
)

func dataToPushSecret() *configv1alpha1.PushSecret {
	ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyDelete)
	ps.Spec.Data = ps.Spec.Data[:1] // "password"
	ps.Spec.DataTo = []configv1alpha1.PushSecretDataTo{{
		StoreRef: ps.Spec.SecretStoreRefs[0],
		Match:    &configv1alpha1.PushSecretDataToMatch{Regexp: "^(db-|password)"},
	}}
	return ps
}

// answerDataTo answers as veil-apiserver would for dataTo without rewrite:
// every key sent beyond spec.data goes to the remote key of its name.
func answerDataTo(ps *configv1alpha1.PushSecret, sp *esv1alpha1.SecretPush, result string) *esv1alpha1.SecretPush {
	out := answerAll(ps, sp, result)
	keys := sp.Spec.SecretKeys
	for k := range sp.Spec.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "password" {
			continue
		}
		out.Status.Results = append(out.Status.Results, esv1alpha1.SecretPushResult{
			StoreRef: esv1alpha1.StoreRef{Kind: "SecretStore", Name: "vault"}, SecretKey: k, RemoteKey: k, Result: result})
	}
	return out
}

// TestPushDataTo: the keys dataTo matches are sent besides those data
// names, data's own key once; the Delete names them again from status.
func TestPushDataTo(t *testing.T) {
	ps := dataToPushSecret()
	f := newPushFixture(t, ps, sourceSecret("5", map[string]string{"password": pushCanary, "db-host": pushCanary + "h", "db-port": "5432", "other": pushCanary}))
	f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
		return answerDataTo(ps, sp, "Pushed"), nil
	}
	res, after := f.sync(t)
	if res.result != resultPushed {
		t.Fatalf("push: %+v", res)
	}
	var sent []string
	for k := range f.pushes[0].Spec.Data {
		sent = append(sent, k)
	}
	sort.Strings(sent)
	if fmt.Sprint(sent) != "[db-host db-port password]" {
		t.Errorf("sent %v, want the keys data names and dataTo matches", sent)
	}
	if c := ready(t, after); c.Status != metav1.ConditionTrue {
		t.Errorf("Ready %+v", c)
	}
	if got := after.Status.SyncedPushSecrets["SecretStore/vault"]["db-port"]; got.Match.SecretKey != "db-port" || got.Result != "Pushed" {
		t.Errorf("status does not record the dataTo key: %+v", after.Status.SyncedPushSecrets)
	}

	now := metav1.Now()
	after.DeletionTimestamp = &now
	f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
		return answerDataTo(ps, sp, esv1alpha1.SecretPushResultDeleted), nil
	}
	if res := f.c.sync(t.Context(), f.c.current(after)); res.result != resultDeleted {
		t.Fatalf("delete: %+v", res)
	}
	del := f.pushes[len(f.pushes)-1]
	if del.Spec.Action != esv1alpha1.SecretPushActionDelete || len(del.Spec.Data) != 0 || !slices.Equal(del.Spec.SecretKeys, []string{"db-host", "db-port"}) {
		t.Errorf("delete names %v (data %d), want the dataTo keys from status", del.Spec.SecretKeys, len(del.Spec.Data))
	}
	f.events(t)
}

// TestPushDataToTooManyKeys: more matched keys than MaxDataToKeys push
// nothing, and say so, with the count and never a value.
func TestPushDataToTooManyKeys(t *testing.T) {
	ps := dataToPushSecret()
	ps.Spec.DataTo[0].Match = nil
	src := map[string]string{"password": pushCanary}
	for i := range configv1alpha1.MaxDataToKeys + 1 {
		src[fmt.Sprintf("k%d", i)] = pushCanary
	}
	f := newPushFixture(t, ps, sourceSecret("5", src))
	res, after := f.sync(t)
	if res.result != configv1alpha1.ReasonTooManyKeys || len(f.pushes) != 0 {
		t.Fatalf("%+v, %d SecretPushes", res, len(f.pushes))
	}
	c := ready(t, after)
	if c.Reason != configv1alpha1.ReasonTooManyKeys || !strings.Contains(c.Message, "matches 101 of its keys, more than the 100") {
		t.Errorf("Ready %+v", c)
	}
	f.events(t) // fails on an Event that carries the canary
}

// TestListedIsBounded: messages name at most maxListed items.
func TestListedIsBounded(t *testing.T) {
	items := make([]string, 150)
	for i := range items {
		items[i] = fmt.Sprintf("SecretStore/vault key-%03d: Failed: %s", i, strings.Repeat("x", 200))
	}
	got := listed(items, "; ")
	if !strings.HasSuffix(got, "; and 130 more") || strings.Count(got, "key-") != maxListed || len(got) > 32768 {
		t.Errorf("listed: %d characters, ends %q", len(got), got[len(got)-20:])
	}
	if listed(items[:2], ", ") != items[0]+", "+items[1] {
		t.Error("a short list is not listed whole")
	}
}
