package push

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

func dataTo(store, regexp string, rewrites ...configv1alpha1.ExternalSecretRewrite) configv1alpha1.PushSecretDataTo {
	d := configv1alpha1.PushSecretDataTo{StoreRef: configv1alpha1.SecretStoreRef{Name: store, Kind: configv1alpha1.SecretStoreKind}, Rewrite: rewrites}
	if regexp != "" {
		d.Match = &configv1alpha1.PushSecretDataToMatch{Regexp: regexp}
	}
	return d
}

func re(source, target string) configv1alpha1.ExternalSecretRewrite {
	return configv1alpha1.ExternalSecretRewrite{Regexp: &configv1alpha1.RewriteRegexp{Source: source, Target: target}}
}

func results(rs []externalsecrets.SecretPushResult) map[string]string {
	out := map[string]string{}
	for _, r := range rs {
		out[r.StoreRef.Name+" "+r.SecretKey+" -> "+remoteKeyOf(entry{remoteKey: r.RemoteKey, property: r.Property})] = r.Result
	}
	return out
}

// TestDataTo: ESO's examples (pushsecret-datato-*.yaml) as ESO means them:
// match, chained rewrites, data overriding dataTo, each entry to its own
// store, and delete naming the keys again.
func TestDataTo(t *testing.T) {
	ctx := context.Background()
	p := pusher(t, vaultStore("vault", false), vaultStore("other", false))
	ps := pushSecret("", []string{"vault", "other"}, [2]string{"db-host", "dt/custom/hostname"})
	ps.UID = "dt-uid"
	ps.Spec.DataTo = []configv1alpha1.PushSecretDataTo{
		dataTo("vault", "^db-", re("^db-", ""), re("^", "dt/prod/")),
		dataTo("other", "^api-"),
	}
	spec := externalsecrets.SecretPushSpec{Data: map[string][]byte{
		"db-host": []byte(value + "-host"), "db-port": []byte(value + "-port"), "api-key": []byte(value + "-api"),
	}}
	rs, err := p.Push(ctx, ps, spec, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		// data names db-host for every store; dataTo leaves it out.
		"vault db-host -> dt/custom/hostname": esv1alpha1.SecretPushResultPushed,
		"other db-host -> dt/custom/hostname": esv1alpha1.SecretPushResultUnchanged,
		"vault db-port -> dt/prod/port":       esv1alpha1.SecretPushResultPushed,
		"other api-key -> api-key":            esv1alpha1.SecretPushResultPushed,
	}
	if got := results(rs); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results\n got %v\nwant %v", got, want)
	}
	if string(mem.data["dt/prod/port"]) != value+"-port" || string(mem.data["api-key"]) != value+"-api" {
		t.Errorf("values not written where dataTo says")
	}
	if _, ok := mem.data["dt/prod/host"]; ok {
		t.Error("dataTo pushed a key that data names")
	}

	// A key that matches no dataTo entry and is not in data is refused.
	smuggled := externalsecrets.SecretPushSpec{Data: map[string][]byte{"db-host": nil, "other-key": []byte(value)}}
	if _, err := p.Push(ctx, ps, smuggled, false); providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), `"other-key", which PushSecret ci/deploy-key does not map`) {
		t.Errorf("a key no entry maps: %v", err)
	}

	// Delete names the dataTo keys again (from status); keys no dataTo
	// entry matches are ignored, explicit ones are deleted anyway.
	rs, err = p.Push(ctx, ps, externalsecrets.SecretPushSpec{Action: externalsecrets.SecretPushActionDelete, SecretKeys: []string{"db-port", "api-key", "unrelated"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Errorf("delete: %v", results(rs))
	}
	for _, k := range []string{"dt/custom/hostname", "dt/prod/port", "api-key"} {
		if _, ok := mem.data[k]; ok {
			t.Errorf("%s was not deleted", k)
		}
	}
}

// TestDataToBundle: with remoteKey, the matched keys are pushed as one
// JSON object of strings.
func TestDataToBundle(t *testing.T) {
	ctx := context.Background()
	p := pusher(t, vaultStore("vault", false))
	ps := pushSecret("", []string{"vault"})
	ps.UID = "bundle-uid"
	d := dataTo("vault", "^DB_")
	d.RemoteKey = "bundle/db"
	ps.Spec.DataTo = []configv1alpha1.PushSecretDataTo{d}
	spec := externalsecrets.SecretPushSpec{Data: map[string][]byte{"DB_USER": []byte("u<&>"), "DB_HOST": []byte("h")}}
	rs, err := p.Push(ctx, ps, spec, false)
	if err != nil || len(rs) != 1 || rs[0].Result != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("%+v %v", rs, err)
	}
	if got := string(mem.data["bundle/db"]); got != `{"DB_HOST":"h","DB_USER":"u<&>"}` {
		t.Errorf("bundle %s", got)
	}
	// A Delete names the bundle's remote key whatever keys it is sent.
	other := ps.DeepCopy()
	other.UID = "someone-else"
	if rs, err := p.Push(ctx, other, externalsecrets.SecretPushSpec{Action: externalsecrets.SecretPushActionDelete}, false); err != nil || len(rs) != 1 || rs[0].RemoteKey != "bundle/db" || rs[0].Result != esv1alpha1.SecretPushResultNotOwner {
		t.Errorf("delete of a bundle by another PushSecret: %+v %v", rs, err)
	}
	spec.Data["DB_BIN"] = []byte{0xff, 0xfe}
	if _, err := p.Push(ctx, ps, spec, false); providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), `"DB_BIN"`) {
		t.Errorf("a binary value in a bundle: %v", err)
	}
	if rs, err := p.Push(ctx, ps, externalsecrets.SecretPushSpec{Action: externalsecrets.SecretPushActionDelete}, false); err != nil || len(rs) != 1 || rs[0].Result != esv1alpha1.SecretPushResultDeleted {
		t.Errorf("delete of a bundle: %+v %v", rs, err)
	}
	if _, ok := mem.data["bundle/db"]; ok {
		t.Error("the bundle was not deleted")
	}
}

// TestDataToRefusedBeforeAnyWrite: remote keys made of source key names are
// checked as strictly as written ones, and collisions, bounds and bad
// rewrites refuse the whole push, naming what to fix.
func TestDataToRefusedBeforeAnyWrite(t *testing.T) {
	ctx := context.Background()
	css := &configv1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "shared", UID: "u-shared"},
		Spec: configv1alpha1.ClusterSecretStoreSpec{
			SecretStoreSpec: vaultStore("x", false).Spec,
			Conditions:      []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{"ci"}, RemoteKeyPrefix: "teams/{namespace}/"}},
		}}
	p := pusher(t, vaultStore("vault", false), css, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ci"}})
	base := func(d ...configv1alpha1.PushSecretDataTo) *configv1alpha1.PushSecret {
		ps := pushSecret("", []string{"vault"})
		ps.Spec.DataTo = d
		return ps
	}
	scoped := base()
	scoped.Spec.SecretStoreRefs = []configv1alpha1.SecretStoreRef{{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "shared"}}
	scoped.Spec.DataTo = []configv1alpha1.PushSecretDataTo{{StoreRef: scoped.Spec.SecretStoreRefs[0], Rewrite: []configv1alpha1.ExternalSecretRewrite{re("^", "teams/ci/")}}}
	unscoped := scoped.DeepCopy()
	unscoped.Spec.DataTo[0].Rewrite = nil

	many := map[string][]byte{}
	for i := range configv1alpha1.MaxDataToKeys + 1 {
		many[fmt.Sprintf("k%03d", i)] = []byte(value)
	}
	withData := base(dataTo("vault", "", re("^.*$", "fixed")))
	withData.Spec.Data = []configv1alpha1.PushSecretData{{Match: configv1alpha1.PushSecretMatch{SecretKey: "x", RemoteRef: configv1alpha1.PushSecretRemoteRef{RemoteKey: "fixed"}}}}
	transform := configv1alpha1.ExternalSecretRewrite{Transform: &configv1alpha1.RewriteTransform{Template: "{{ .value | upper }}\n"}}
	bothModes := dataTo("vault", "")
	bothModes.RemoteKey, bothModes.Rewrite = "one", []configv1alpha1.ExternalSecretRewrite{re("a", "b")}
	cases := []struct {
		name   string
		ps     *configv1alpha1.PushSecret
		data   map[string][]byte
		reason providers.Reason
		says   string
	}{
		{"outside the ClusterSecretStore's prefix", unscoped, map[string][]byte{"a": []byte(value)}, providers.Forbidden, `dataTo[0] (source key "a"): remote key "a" is outside the prefix`},
		{"traversal out of the prefix", scoped, map[string][]byte{"..": []byte(value)}, providers.Forbidden, `dataTo[0] (source key ".."): remote key "teams/ci/.."`},
		{"collision within dataTo", base(dataTo("vault", "", re("-.*$", ""))), map[string][]byte{"a-1": []byte(value), "a-2": []byte(value)}, providers.Invalid,
			`dataTo[0] (source key "a-1") and dataTo[0] (source key "a-2") both push to remote key "a"`},
		{"collision with data", withData, map[string][]byte{"x": []byte(value), "y": []byte(value)}, providers.Invalid, `data[0] (source key "x") and dataTo[0] (source key "y") both push to remote key "fixed"`},
		{"too many keys", base(dataTo("vault", "")), many, providers.Invalid, "would push 101 keys of the source Secret, more than the 100"},
		{"empty remote key", base(dataTo("vault", "", re(".*", ""))), map[string][]byte{"a": []byte(value)}, providers.Invalid, `turns source key "a" into remote key "", which is empty`},
		{"unprintable remote key", base(dataTo("vault", "", transform)), map[string][]byte{"a": []byte(value)}, providers.Invalid, "not printable"},
		{"remote key too long", base(dataTo("vault", "", re("^", strings.Repeat("x", 600)))), map[string][]byte{"a": []byte(value)}, providers.Invalid, "more than 512"},
		{"bad match regexp", base(dataTo("vault", "(")), map[string][]byte{"a": []byte(value)}, providers.Invalid, "dataTo[0].match.regexp is not a valid RE2"},
		{"bad rewrite regexp", base(dataTo("vault", "", re("(", ""))), map[string][]byte{"a": []byte(value)}, providers.Invalid, "dataTo[0].rewrite[0].regexp.source is not a valid RE2"},
		{"remoteKey and rewrite", base(bothModes), map[string][]byte{"a": []byte(value)}, providers.Invalid, "sets both remoteKey and rewrite"},
		{"a key no Secret holds", base(dataTo("vault", "")), map[string][]byte{"a/b": []byte(value)}, providers.Invalid, `keys that no Secret can hold: "a/b"`},
	}
	for _, c := range cases {
		before, writes := len(mem.data), mem.writes
		_, err := p.Push(ctx, c.ps, externalsecrets.SecretPushSpec{Data: c.data}, false)
		if providers.ReasonOf(err) != c.reason || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %s saying %q", c.name, err, c.reason, c.says)
			continue
		}
		if strings.Contains(err.Error(), value) {
			t.Errorf("%s: the error carries the value", c.name)
		}
		if mem.writes != writes || len(mem.data) != before {
			t.Errorf("%s: something was written", c.name)
		}
	}
	// The collision message is the same whatever order the keys come in.
	for range 20 {
		_, err := p.Push(ctx, base(dataTo("vault", "", re("-.*$", ""))), externalsecrets.SecretPushSpec{Data: map[string][]byte{"b-2": nil, "b-1": nil, "b-3": nil}}, false)
		if err == nil || !strings.Contains(err.Error(), `"b-1") and dataTo[0] (source key "b-2")`) {
			t.Fatalf("collision not named deterministically: %v", err)
		}
	}
	// A Delete may name at most as many keys as a push could have pushed.
	tooMany := make([]string, configv1alpha1.MaxDataToKeys+1)
	if _, err := p.Push(ctx, base(dataTo("vault", "")), externalsecrets.SecretPushSpec{Action: externalsecrets.SecretPushActionDelete, SecretKeys: tooMany}, false); providers.ReasonOf(err) != providers.Invalid {
		t.Errorf("delete naming too many keys: %v", err)
	}
	if _, err := p.Push(ctx, base(dataTo("vault", "")), externalsecrets.SecretPushSpec{SecretKeys: []string{"a"}, Data: map[string][]byte{"a": nil}}, false); providers.ReasonOf(err) != providers.Invalid {
		t.Errorf("secretKeys on a push: %v", err)
	}
}
