package syncer

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
)

func generatorPushSecret() *configv1alpha1.PushSecret {
	ps := testPushSecret(configv1alpha1.PushSecretDeletionPolicyNone)
	ps.Spec.RefreshInterval = &metav1.Duration{Duration: time.Hour}
	ps.Spec.Selector = configv1alpha1.PushSecretSelector{GeneratorRef: &configv1alpha1.PushSecretGeneratorRef{
		APIVersion: "config.veil.dev/v1alpha1", Kind: "Password", Name: "strong",
	}}
	ps.Spec.Data = []configv1alpha1.PushSecretData{
		{Match: configv1alpha1.PushSecretMatch{SecretKey: "password", RemoteRef: configv1alpha1.PushSecretRemoteRef{RemoteKey: "prod/db"}}},
	}
	return ps
}

func testPassword() *configv1alpha1.Password {
	five := int32(5)
	syms := "-_$@"
	return &configv1alpha1.Password{
		ObjectMeta: metav1.ObjectMeta{Name: "strong", Namespace: "team"},
		Spec:       configv1alpha1.PasswordSpec{Length: 40, Digits: &five, Symbols: &five, SymbolCharacters: &syms, AllowRepeat: true},
	}
}

// pushedPassword returns the value of the n-th SecretPush, checking it
// matches testPassword's spec.
func (f *pushFixture) pushedPassword(t *testing.T, n int) string {
	t.Helper()
	if len(f.pushes) <= n {
		t.Fatalf("%d SecretPushes, want more than %d", len(f.pushes), n)
	}
	sp := f.pushes[n]
	v := string(sp.Spec.Data["password"])
	if sp.Spec.Action != esv1alpha1.SecretPushActionPush || len(sp.Spec.Data) != 1 || len(v) != 40 ||
		strings.Count(v, "-")+strings.Count(v, "_")+strings.Count(v, "$")+strings.Count(v, "@") != 5 {
		t.Fatalf("SecretPush %d: action %s, %d keys, value of %d characters: want one 40-character password with 5 symbols of -_$@", n, sp.Spec.Action, len(sp.Spec.Data), len(v))
	}
	return v
}

// noLeak fails if the PushSecret's status or any Event holds a value.
func (f *pushFixture) noLeak(t *testing.T, ps *configv1alpha1.PushSecret, values ...string) {
	t.Helper()
	st, _ := json.Marshal(ps.Status)
	evs := f.events(t)
	for _, v := range values {
		if strings.Contains(string(st), v) {
			t.Errorf("the status holds a generated value")
		}
		for _, e := range evs {
			if strings.Contains(e, v) {
				t.Errorf("an Event holds a generated value: %s", strings.ReplaceAll(e, v, "<value>"))
			}
		}
	}
}

func TestPushGeneratorRotatesOnRefreshOnly(t *testing.T) {
	ps := generatorPushSecret()
	f := newPushFixture(t, ps)
	if err := f.veil.Tracker().Add(testPassword()); err != nil {
		t.Fatal(err)
	}

	res, got := f.sync(t)
	if res.result != resultPushed || res.retry {
		t.Fatalf("first sync: %+v", res)
	}
	first := f.pushedPassword(t, 0)
	if c := ready(t, got); c.Status != metav1.ConditionTrue || c.Reason != configv1alpha1.ReasonSynced || !strings.Contains(c.Message, "Password strong") {
		t.Errorf("Ready = %s %s: %s", c.Status, c.Reason, c.Message)
	}
	if got.Status.DataHMAC != "" || got.Status.RefreshTime == nil || got.Status.SyncedPushSecrets["SecretStore/vault"]["prod/db"].Result != "Pushed" {
		t.Errorf("status: %+v", got.Status)
	}
	f.noLeak(t, got, first)

	// Nothing due: nothing generated, nothing pushed.
	f.clock.SetTime(f.clock.Now().Add(30 * time.Minute))
	if res, _ := f.sync(t); res.result != resultUnchanged || len(f.pushes) != 1 {
		t.Fatalf("sync before the refresh: %+v, %d SecretPushes", res, len(f.pushes))
	}

	// The refresh rotates it.
	f.clock.SetTime(f.clock.Now().Add(31 * time.Minute))
	res, got = f.sync(t)
	if res.result != resultPushed || len(f.pushes) != 2 {
		t.Fatalf("refresh: %+v, %d SecretPushes", res, len(f.pushes))
	}
	second := f.pushedPassword(t, 1)
	if second == first {
		t.Errorf("the refresh pushed the same password again")
	}
	f.noLeak(t, got, first, second)
	// A change of the spec regenerates, as in ESO.
	got.Generation++
	got.Spec.Data[0].Match.RemoteRef.RemoteKey = "prod/db2"
	if _, err := f.veil.ConfigV1alpha1().PushSecrets("team").Update(context.Background(), got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.sync(t); res.result != resultPushed || len(f.pushes) != 3 {
		t.Fatalf("after a spec change: %+v, %d SecretPushes", res, len(f.pushes))
	}
}

func TestPushGeneratorRefreshFloor(t *testing.T) {
	ps := generatorPushSecret()
	ps.Spec.RefreshInterval = &metav1.Duration{Duration: time.Second}
	f := newPushFixture(t, ps)
	if err := f.veil.Tracker().Add(testPassword()); err != nil {
		t.Fatal(err)
	}
	if got := f.c.refreshInterval(ps); got != MinGeneratorRefresh {
		t.Errorf("refreshInterval of 1s with a generator is %s, want %s", got, MinGeneratorRefresh)
	}
	if res, _ := f.sync(t); res.result != resultPushed {
		t.Fatalf("first sync: %+v", res)
	}
	f.clock.SetTime(f.clock.Now().Add(10 * time.Second))
	if res, _ := f.sync(t); res.result != resultUnchanged || len(f.pushes) != 1 {
		t.Fatalf("10s later: %+v, %d SecretPushes: the floor did not hold", res, len(f.pushes))
	}
	f.clock.SetTime(f.clock.Now().Add(MinGeneratorRefresh))
	if res, _ := f.sync(t); res.result != resultPushed || len(f.pushes) != 2 {
		t.Fatalf("after the floor: %+v, %d SecretPushes", res, len(f.pushes))
	}
	// A Secret's PushSecret keeps its interval.
	plain := testPushSecret(configv1alpha1.PushSecretDeletionPolicyNone)
	plain.Spec.RefreshInterval = &metav1.Duration{Duration: time.Second}
	if got := f.c.refreshInterval(plain); got != time.Second {
		t.Errorf("a Secret's PushSecret got refreshInterval %s", got)
	}
}

func TestPushGeneratorFailures(t *testing.T) {
	t.Run("no Password", func(t *testing.T) {
		f := newPushFixture(t, generatorPushSecret())
		res, got := f.sync(t)
		if c := ready(t, got); !res.retry || c.Reason != configv1alpha1.ReasonSourceNotFound || !strings.Contains(c.Message, "Password strong does not exist") {
			t.Errorf("%+v; Ready %s: %s", res, c.Reason, c.Message)
		}
		if len(f.pushes) != 0 {
			t.Errorf("pushed without a Password")
		}
	})
	t.Run("key not generated", func(t *testing.T) {
		ps := generatorPushSecret()
		ps.Spec.Data[0].Match.SecretKey = "token"
		f := newPushFixture(t, ps)
		if err := f.veil.Tracker().Add(testPassword()); err != nil {
			t.Fatal(err)
		}
		res, got := f.sync(t)
		if c := ready(t, got); c.Reason != configv1alpha1.ReasonKeyNotFound || !strings.Contains(c.Message, `generates the keys "password", not "token"`) {
			t.Errorf("%+v; Ready %s: %s", res, c.Reason, c.Message)
		}
		if len(f.pushes) != 0 {
			t.Errorf("pushed a key the Password does not generate")
		}
	})
	t.Run("whole output and several keys", func(t *testing.T) {
		ps := generatorPushSecret()
		ps.Spec.Data[0].Match.SecretKey = ""
		f := newPushFixture(t, ps)
		pw := testPassword()
		pw.Spec.SecretKeys = []string{"a", "b"}
		if err := f.veil.Tracker().Add(pw); err != nil {
			t.Fatal(err)
		}
		if res, _ := f.sync(t); res.result != resultPushed {
			t.Fatalf("%+v", res)
		}
		var obj map[string]string
		if err := json.Unmarshal(f.pushes[0].Spec.Data[""], &obj); err != nil || len(obj) != 2 || len(obj["a"]) != 40 || len(obj["b"]) != 40 || obj["a"] == obj["b"] {
			t.Errorf("whole push: %v, %d keys", err, len(obj))
		}
	})
	t.Run("a failed push is retried with new values", func(t *testing.T) {
		ps := generatorPushSecret()
		f := newPushFixture(t, ps)
		if err := f.veil.Tracker().Add(testPassword()); err != nil {
			t.Fatal(err)
		}
		f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
			out := answerAll(ps, sp, esv1alpha1.SecretPushResultFailed)
			out.Status.Results[0].Message = "vault down"
			return out, nil
		}
		res, got := f.sync(t)
		if c := ready(t, got); !res.retry || c.Reason != configv1alpha1.ReasonPushFailed || !strings.Contains(c.Message, "vault down") {
			t.Errorf("%+v; Ready %s: %s", res, c.Reason, c.Message)
		}
		f.answer = func(sp *esv1alpha1.SecretPush) (*esv1alpha1.SecretPush, error) {
			return answerAll(ps, sp, "Pushed"), nil
		}
		if res, _ := f.sync(t); res.result != resultPushed || f.pushedPassword(t, 0) == f.pushedPassword(t, 1) {
			t.Errorf("retry: %+v", res)
		}
	})
}
