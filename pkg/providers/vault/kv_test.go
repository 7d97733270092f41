package vault

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

func fieldsOf(t *testing.T, v providers.Value) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(v.Data, &m); err != nil {
		t.Fatalf("the value is not a JSON object: %v", err)
	}
	return m
}

// wantError checks an error's reason, that its message says what it
// should, and that it carries none of the secrets.
func wantError(t *testing.T, err error, reason providers.Reason, says string, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s saying %q", reason, says)
	}
	if got := providers.ReasonOf(err); got != reason {
		t.Errorf("reason %s, want %s: %v", got, reason, err)
	}
	if !strings.Contains(err.Error(), says) {
		t.Errorf("error %q does not say %q", err, says)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q carries a secret", err)
		}
	}
}

func TestKVv2Get(t *testing.T) {
	ctx := ctxFor(t)
	mount := unique(t)
	if err := server.EnableKV(ctx, mount, 2); err != nil {
		t.Fatal(err)
	}
	canary := "s3cr3t-" + mount
	v1, err := server.PutKV(ctx, mount, "app/db", map[string]any{"password": "old-" + canary})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := server.PutKV(ctx, mount, "app/db", map[string]any{"password": canary, "port": 5432, "nested": map[string]any{"host": "db"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.PutKV(ctx, mount, "gone", map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Root.Logical().DeleteWithContext(ctx, mount+"/data/gone"); err != nil {
		t.Fatal(err)
	}
	tok, sec := tokenFor(t, fmt.Sprintf(`path "%s/*" { capabilities = ["read", "list"] }`, mount))
	c := newFixture(t, sec).mustClient(configv1alpha1.VaultProvider{Server: server.HTTPSURL, CABundle: server.CA.CertPEM, Path: &mount, Auth: tokenAuth()})

	latest, err := c.Get(ctx, providers.Ref{Key: "app/db"})
	if err != nil {
		t.Fatal(err)
	}
	// Numbers keep their JSON form; nested objects stay objects.
	if got := string(latest.Data); !strings.Contains(got, `"port":5432`) || !strings.Contains(got, `"nested":{"host":"db"}`) {
		t.Errorf("latest = %s", got)
	}
	if f := fieldsOf(t, latest); f["password"] != canary || latest.Version != fmt.Sprint(v2) {
		t.Errorf("latest: password %v version %q, want the canary and version %d", f["password"], latest.Version, v2)
	}
	old, err := c.Get(ctx, providers.Ref{Key: "/app/db/", Version: fmt.Sprint(v1)})
	if err != nil {
		t.Fatal(err)
	}
	if f := fieldsOf(t, old); f["password"] != "old-"+canary || old.Version != fmt.Sprint(v1) {
		t.Errorf("version %d: %v, version %q", v1, f, old.Version)
	}

	_, err = c.Get(ctx, providers.Ref{Key: "app/nope"})
	wantError(t, err, providers.NotFound, `key "app/nope" does not exist in SecretStore team/vault`)
	_, err = c.Get(ctx, providers.Ref{Key: "app/db", Version: "9"})
	wantError(t, err, providers.NotFound, `version 9 of key "app/db" does not exist`)
	_, err = c.Get(ctx, providers.Ref{Key: "gone"})
	wantError(t, err, providers.NotFound, `key "gone"`)
	_, err = c.Get(ctx, providers.Ref{Key: "app/db", Version: "latest"})
	wantError(t, err, providers.Invalid, `is not a Vault KV v2 version`)
	// A key may not climb out of the mount: the Vault library would clean
	// the path into sys/ otherwise.
	_, err = c.Get(ctx, providers.Ref{Key: "../../sys/policy/root"})
	wantError(t, err, providers.Invalid, `".." segment`)

	// The token may not read other mounts.
	other := newFixture(t, sec).mustClient(httpsSpec(tokenAuth()))
	_, err = other.Get(ctx, providers.Ref{Key: "app/db"})
	wantError(t, err, providers.Forbidden, `lacks access; its policies must grant "read" on "secret/data/app/db"`, tok, canary)
	if !strings.Contains(err.Error(), `the token in Secret vault-token key "token"`) {
		t.Errorf("the error does not say which identity lacks access: %v", err)
	}
}

func TestKVv1Get(t *testing.T) {
	ctx := ctxFor(t)
	mount := unique(t)
	if err := server.EnableKV(ctx, mount, 1); err != nil {
		t.Fatal(err)
	}
	if err := server.PutKVv1(ctx, mount, "app/api", map[string]any{"token": "t0k", "n": 1}); err != nil {
		t.Fatal(err)
	}
	_, sec := tokenFor(t, fmt.Sprintf(`path "%s/*" { capabilities = ["read", "list"] }`, mount))
	spec := httpsSpec(tokenAuth())
	spec.Path, spec.Version = &mount, configv1alpha1.VaultKVv1
	c := newFixture(t, sec).mustClient(spec)

	v, err := c.Get(ctx, providers.Ref{Key: "app/api"})
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Data) != `{"n":1,"token":"t0k"}` || v.Version != "" {
		t.Errorf("got %s version %q", v.Data, v.Version)
	}
	_, err = c.Get(ctx, providers.Ref{Key: "app/api", Version: "1"})
	wantError(t, err, providers.Invalid, "KV v1 mount, which has no versions")
	_, err = c.Get(ctx, providers.Ref{Key: "app/none"})
	wantError(t, err, providers.NotFound, `key "app/none" does not exist in SecretStore team/vault (Vault KV v1 mount "`+mount+`")`)
	_, err = c.Find(ctx, providers.Find{Tags: map[string]string{"a": "b"}})
	wantError(t, err, providers.Invalid, "find by name instead")
	found, err := c.Find(ctx, providers.Find{NameRegexp: "api$"})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || string(found["app/api"].Data) != `{"n":1,"token":"t0k"}` {
		t.Errorf("find = %v", found)
	}
	_, err = c.Push(ctx, providers.Push{Key: "app/api", Property: "x", Value: []byte("y")})
	wantError(t, err, providers.Invalid, "only KV v2 mounts")
}

// kv1Key mounts KV v1 for t, writes app/db with a canary, and returns
// the canary, a function that writes app/db's password again, the
// store's spec and a fixture with a token that may read the mount.
func kv1Key(t *testing.T) (canary string, put func(string), spec configv1alpha1.VaultProvider, fx *fixture) {
	ctx := ctxFor(t)
	mount := unique(t)
	if err := server.EnableKV(ctx, mount, 1); err != nil {
		t.Fatal(err)
	}
	canary = "kv1-canary-" + unique(t)
	put = func(v string) {
		t.Helper()
		if err := server.PutKVv1(ctx, mount, "app/db", map[string]any{"password": v, "n": 1}); err != nil {
			t.Fatal(err)
		}
	}
	put(canary)
	_, sec := tokenFor(t, fmt.Sprintf(`path "%s/*" { capabilities = ["read", "list"] }`, mount))
	spec = httpsSpec(tokenAuth())
	spec.Path, spec.Version = &mount, configv1alpha1.VaultKVv1
	return canary, put, spec, newFixture(t, sec)
}

// TestKVv1Versions: a KV v1 mount keeps no versions, so change detection
// hashes each value. The same value written again is no change, as it is
// none for readers; another value is; a key deleted has no version; and
// two clients of the store (one rebuilt after a reload) agree.
func TestKVv1Versions(t *testing.T) {
	ctx := ctxFor(t)
	canary, put, spec, fx := kv1Key(t)
	var c, other providers.VersionLister = fx.mustClient(spec), fx.mustClient(spec)
	version := func(c providers.VersionLister) string {
		t.Helper()
		v, err := c.Versions(ctx, []string{"app/db", "app/none"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := v["app/none"]; ok || len(v) != 1 {
			t.Fatalf("versions %v: want app/db alone", v)
		}
		if id := v["app/db"].ID; id == "" || strings.Contains(id, canary) || !v["app/db"].Changed.IsZero() || v["app/db"].Scope != v1VersionScope {
			t.Fatalf("version %+v: want an ID that carries no value, no time (KV v1 tells none) and the scope %q of this process's hashes", v["app/db"], v1VersionScope)
		}
		return v["app/db"].ID
	}
	first := version(c)
	if got := version(other); got != first {
		t.Errorf("two clients of one store disagree on a version: %q and %q", first, got)
	}
	put(canary)
	if got := version(c); got != first {
		t.Errorf("the same value written again moved the version from %q to %q", first, got)
	}
	put(canary + "-rotated")
	if got := version(c); got == first {
		t.Errorf("a new value left the version at %q", got)
	}
	if _, err := server.Root.Logical().DeleteWithContext(ctx, *spec.Path+"/app/db"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Versions(ctx, []string{"app/db"}); err != nil || len(v) != 0 {
		t.Errorf("a deleted key: versions %v, %v; want none", v, err)
	}
}

// TestKVv1VersionsAfterReads: KV v1 tells no time of change, but a
// client knows what its reads returned, so a version that differs from
// the last value read carries a time of change (which a first look of
// changes.Detector takes for news), and one that does not, none. A
// client that never read the key gives no time.
func TestKVv1VersionsAfterReads(t *testing.T) {
	ctx := ctxFor(t)
	canary, put, spec, fx := kv1Key(t)
	reader, other := fx.mustClient(spec), fx.mustClient(spec)
	changed := func(c providers.VersionLister) bool {
		t.Helper()
		v, err := c.Versions(ctx, []string{"app/db"})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := v["app/db"]; !ok {
			t.Fatalf("versions %v: want app/db", v)
		}
		return !v["app/db"].Changed.IsZero()
	}
	read := func() {
		t.Helper()
		if _, err := reader.Get(ctx, providers.Ref{Key: "app/db"}); err != nil {
			t.Fatal(err)
		}
	}

	read()
	if changed(reader) {
		t.Error("the value read is the current one, yet its version carries a time of change")
	}
	put(canary + "-rotated")
	if !changed(reader) {
		t.Error("the value changed after it was read, and its version carries no time of change")
	}
	if changed(other) {
		t.Error("a client that read nothing gave a time of change")
	}
	read()
	if changed(reader) {
		t.Error("the rotated value was read, yet its version still carries a time of change")
	}
	put(canary + "-rotated")
	if changed(reader) {
		t.Error("the same value written again gave a time of change")
	}
}

func TestFind(t *testing.T) {
	ctx := ctxFor(t)
	mount := unique(t)
	if err := server.EnableKV(ctx, mount, 2); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"app/db", "app/cache", "app/deep/er/db-replica", "other/db", "app/removed"} {
		if _, err := server.PutKV(ctx, mount, k, map[string]any{"key": k}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := server.Root.Logical().DeleteWithContext(ctx, mount+"/data/app/removed"); err != nil {
		t.Fatal(err)
	}
	for k, tags := range map[string]map[string]string{
		"app/db":                 {"team": "a", "env": "prod"},
		"app/deep/er/db-replica": {"team": "a", "env": "dev"},
		"other/db":               {"team": "a", "env": "prod"},
	} {
		if err := server.TagKV(ctx, mount, k, tags); err != nil {
			t.Fatal(err)
		}
	}
	_, sec := tokenFor(t, fmt.Sprintf(`path "%s/*" { capabilities = ["read", "list"] }`, mount))
	spec := httpsSpec(tokenAuth())
	spec.Path = &mount
	c := newFixture(t, sec).mustClient(spec)

	for _, tc := range []struct {
		name string
		find providers.Find
		want []string
	}{
		{"all", providers.Find{}, []string{"app/cache", "app/db", "app/deep/er/db-replica", "other/db"}},
		{"regexp at any depth", providers.Find{NameRegexp: "db"}, []string{"app/db", "app/deep/er/db-replica", "other/db"}},
		{"under a path", providers.Find{Path: "app", NameRegexp: "db"}, []string{"app/db", "app/deep/er/db-replica"}},
		{"under a deeper path", providers.Find{Path: "/app/deep/"}, []string{"app/deep/er/db-replica"}},
		{"anchored", providers.Find{NameRegexp: "^app/[a-z]+$"}, []string{"app/cache", "app/db"}},
		{"tags", providers.Find{Tags: map[string]string{"team": "a", "env": "prod"}}, []string{"app/db", "other/db"}},
		{"tags under a path", providers.Find{Path: "app", Tags: map[string]string{"team": "a"}}, []string{"app/db", "app/deep/er/db-replica"}},
		{"tags and regexp", providers.Find{NameRegexp: "replica", Tags: map[string]string{"team": "a"}}, []string{"app/deep/er/db-replica"}},
		{"nothing under a path", providers.Find{Path: "none"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			found, err := c.Find(ctx, tc.find)
			if err != nil {
				t.Fatal(err)
			}
			got := slices.Sorted(maps.Keys(found))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("found %v, want %v", got, tc.want)
			}
			for k, v := range found {
				if f := fieldsOf(t, v); f["key"] != k || v.Version != "1" {
					t.Errorf("%s: %s version %q", k, v.Data, v.Version)
				}
			}
		})
	}
	_, err := c.Find(ctx, providers.Find{NameRegexp: "("})
	wantError(t, err, providers.Invalid, "not a valid regular expression")

	// Listing needs the list capability on metadata/.
	_, readOnly := tokenFor(t, fmt.Sprintf(`path "%s/data/*" { capabilities = ["read"] }`, mount))
	c = newFixture(t, readOnly).mustClient(spec)
	_, err = c.Find(ctx, providers.Find{Path: "app"})
	wantError(t, err, providers.Forbidden, fmt.Sprintf(`must grant "list" on "%s/metadata/app"`, mount))
}

func TestPushAndDelete(t *testing.T) {
	ctx := ctxFor(t)
	mount := unique(t)
	if err := server.EnableKV(ctx, mount, 2); err != nil {
		t.Fatal(err)
	}
	_, sec := tokenFor(t, fmt.Sprintf(`path "%s/*" { capabilities = ["create", "read", "update", "delete", "list"] }`, mount))
	spec := httpsSpec(tokenAuth())
	spec.Path = &mount
	c := newFixture(t, sec).mustClient(spec)
	read := func(key string) (map[string]any, string) {
		t.Helper()
		v, err := c.Get(ctx, providers.Ref{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return fieldsOf(t, v), v.Version
	}
	push := func(p providers.Push, want string) {
		t.Helper()
		p.Owner = owner
		got, err := c.Push(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("push %s/%s: %s, want %s", p.Key, p.Property, got, want)
		}
	}

	// A whole object, then the same again: one version.
	push(providers.Push{Key: "app/db", Value: []byte(`{"user":"app","port":5432}`)}, esv1alpha1.SecretPushResultPushed)
	push(providers.Push{Key: "app/db", Value: []byte(`{"port":5432,"user":"app"}`)}, esv1alpha1.SecretPushResultUnchanged)
	if f, v := read("app/db"); f["user"] != "app" || v != "1" {
		t.Fatalf("after push: %v version %s", f, v)
	}
	// One property is merged into the object.
	push(providers.Push{Key: "app/db", Property: "password", Value: []byte("pw1")}, esv1alpha1.SecretPushResultPushed)
	if f, v := read("app/db"); f["user"] != "app" || f["password"] != "pw1" || v != "2" {
		t.Fatalf("after property push: %v version %s", f, v)
	}
	push(providers.Push{Key: "app/db", Property: "password", Value: []byte("pw2"), IfNotExists: true}, esv1alpha1.SecretPushResultSkippedExists)
	push(providers.Push{Key: "app/new", Property: "a", Value: []byte("1"), IfNotExists: true}, esv1alpha1.SecretPushResultPushed)
	push(providers.Push{Key: "app/new", Value: []byte(`{}`), IfNotExists: true}, esv1alpha1.SecretPushResultSkippedExists)
	_, err := c.Push(ctx, providers.Push{Key: "app/db", Value: []byte(`"not an object"`), Owner: owner})
	wantError(t, err, providers.Invalid, "is not a JSON object")
	_, err = c.Push(ctx, providers.Push{Key: "app/db", Value: []byte(`{}`)})
	wantError(t, err, providers.Invalid, "names no owner")

	// Keys Veil did not write are neither overwritten nor deleted unless asked.
	if _, err := server.PutKV(ctx, mount, "foreign", map[string]any{"owner": "someone"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.Push(ctx, providers.Push{Key: "foreign", Property: "x", Value: []byte("y"), Owner: owner})
	wantError(t, err, providers.Conflict, `remote key "foreign"`)
	wantError(t, c.Delete(ctx, providers.Delete{Key: "foreign", Owner: owner}), providers.NotOwner, "not written by Veil")
	if err := server.TagKV(ctx, mount, "foreign", map[string]string{"team": "a"}); err != nil {
		t.Fatal(err)
	}
	push(providers.Push{Key: "foreign", Property: "x", Value: []byte("y"), Replace: true}, esv1alpha1.SecretPushResultPushed)
	if f, _ := read("foreign"); f["owner"] != "someone" || f["x"] != "y" {
		t.Fatalf("after replace: %v", f)
	}
	meta, err := c.metadata(ctx, "foreign")
	if err != nil {
		t.Fatal(err)
	}
	if meta.custom["team"] != "a" || !meta.ownedBy(owner) || meta.custom[ownerNameKey] != owner.Name {
		t.Errorf("custom_metadata after replace = %v, want the team tag kept and Veil's mark and owner added", meta.custom)
	}

	// Deleting a property keeps the others; deleting the last removes the key.
	if err := c.Delete(ctx, providers.Delete{Key: "app/db", Property: "password", Owner: owner}); err != nil {
		t.Fatal(err)
	}
	if f, _ := read("app/db"); f["password"] != nil || f["user"] != "app" {
		t.Fatalf("after property delete: %v", f)
	}
	if err := c.Delete(ctx, providers.Delete{Key: "app/db", Property: "absent", Owner: owner}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, providers.Delete{Key: "app/new", Property: "a", Owner: owner}); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, providers.Delete{Key: "app/db", Owner: owner}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"app/db", "app/new"} {
		if m, err := c.metadata(ctx, k); err != nil || m != nil {
			t.Errorf("%s after delete: metadata %v, %v; want it gone with every version", k, m, err)
		}
	}
	if err := c.Delete(ctx, providers.Delete{Key: "app/db", Owner: owner}); err != nil {
		t.Errorf("deleting a key that does not exist: %v", err)
	}
}

func TestCheckAndSet(t *testing.T) {
	ctx := ctxFor(t)
	mount := unique(t)
	if err := server.EnableKV(ctx, mount, 2); err != nil {
		t.Fatal(err)
	}
	// The mount refuses writes without cas.
	if _, err := server.Write(ctx, mount+"/config", map[string]any{"cas_required": true}); err != nil {
		t.Fatal(err)
	}
	_, sec := tokenFor(t, fmt.Sprintf(`path "%s/*" { capabilities = ["create", "read", "update", "delete", "list"] }`, mount))
	spec := httpsSpec(tokenAuth())
	spec.Path = &mount
	plain := newFixture(t, sec).mustClient(spec)
	// Veil creates a key with check-and-set whatever the store says, so
	// that of two pushes creating it only one does; an update is refused.
	if _, err := plain.Push(ctx, providers.Push{Key: "k", Value: []byte(`{"a":"0"}`), Owner: owner}); err != nil {
		t.Fatalf("create: %v", err)
	}
	_, err := plain.Push(ctx, providers.Push{Key: "k", Value: []byte(`{"a":"1"}`), Owner: owner})
	wantError(t, err, providers.Invalid, `requires check-and-set; set spec.provider.vault.checkAndSet.required to true`)

	spec.CheckAndSet = &configv1alpha1.VaultCheckAndSet{Required: true}
	c := newFixture(t, sec).mustClient(spec)
	for i, v := range []string{`{"a":"1"}`, `{"a":"2"}`} {
		if _, err := c.Push(ctx, providers.Push{Key: "k", Value: []byte(v), Owner: owner}); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	// A write racing Veil's is detected, not overwritten: Veil read version
	// 3, someone wrote 4, Veil's write names 3.
	if _, err := server.Write(ctx, mount+"/data/k", map[string]any{"data": map[string]any{"a": "3"}, "options": map[string]any{"cas": 3}}); err != nil {
		t.Fatal(err)
	}
	err = c.writeData(ctx, "k", map[string]any{"a": "lost"}, 3)
	wantError(t, err, providers.Conflict, `key "k" changed in Vault while Veil wrote it`)
}

var owner = providers.Owner{Namespace: "team-a", Name: "push", UID: "uid-a"}

// TestOwnership: a key is its PushSecret's. Another PushSecret neither
// overwrites nor deletes it, whatever its policy, and learns nothing of its
// value: a right and a wrong guess get the same answer, and no write.
func TestOwnership(t *testing.T) {
	ctx := ctxFor(t)
	mount := unique(t)
	if err := server.EnableKV(ctx, mount, 2); err != nil {
		t.Fatal(err)
	}
	_, sec := tokenFor(t, fmt.Sprintf(`path "%s/*" { capabilities = ["create", "read", "update", "delete", "list"] }`, mount))
	spec := httpsSpec(tokenAuth())
	spec.Path = &mount
	c := newFixture(t, sec).mustClient(spec)
	other := providers.Owner{Namespace: "team-b", Name: "push", UID: "uid-b"}
	sameName := providers.Owner{Namespace: "team-a", Name: "push", UID: "uid-a2"} // deleted and created again
	versionOf := func(key string) int {
		t.Helper()
		m, err := c.metadata(ctx, key)
		if err != nil || m == nil {
			t.Fatalf("metadata of %s: %v, %v", key, m, err)
		}
		return m.version
	}

	const canary = `{"token":"owned-canary"}`
	if got, err := c.Push(ctx, providers.Push{Key: "owned", Value: []byte(canary), Owner: owner}); err != nil || got != esv1alpha1.SecretPushResultPushed {
		t.Fatalf("owner's push: %s, %v", got, err)
	}
	for _, o := range []providers.Owner{other, sameName} {
		for _, p := range []providers.Push{
			{Key: "owned", Value: []byte(canary)},              // a right guess
			{Key: "owned", Value: []byte(`{"token":"guess"}`)}, // a wrong one
			{Key: "owned", Value: []byte(canary), Replace: true},
			{Key: "owned", Property: "token", Value: []byte("owned-canary"), Replace: true},
		} {
			p.Owner = o
			_, err := c.Push(ctx, p)
			wantError(t, err, providers.NotOwner, `remote key "owned" in SecretStore`, "owned-canary")
			if err != nil && strings.Contains(err.Error(), "guess") {
				t.Errorf("the error depends on the guess: %v", err)
			}
		}
		wantError(t, c.Delete(ctx, providers.Delete{Key: "owned", Owner: o}), providers.NotOwner, "belongs to another PushSecret")
		wantError(t, c.Delete(ctx, providers.Delete{Key: "owned", Property: "token", Owner: o}), providers.NotOwner, "belongs to another PushSecret")
		// IfNotExists skips an existing key without looking inside it.
		if got, err := c.Push(ctx, providers.Push{Key: "owned", Property: "new", Value: []byte("x"), IfNotExists: true, Owner: o}); err != nil || got != esv1alpha1.SecretPushResultSkippedExists {
			t.Errorf("IfNotExists over another's key: %s, %v", got, err)
		}
	}
	if v := versionOf("owned"); v != 1 {
		t.Errorf("version %d after others' pushes, want 1: something was written", v)
	}
	meta, _ := c.metadata(ctx, "owned")
	if !meta.ownedBy(owner) {
		t.Errorf("owner after others' pushes: %v", meta.custom)
	}

	// A key Veil marked before it recorded owners, and one it never wrote:
	// right and wrong guesses get the same Conflict; Replace takes them
	// over and records the owner.
	for _, key := range []string{"legacy", "unmanaged"} {
		if _, err := server.PutKV(ctx, mount, key, map[string]any{"token": "theirs-canary"}); err != nil {
			t.Fatal(err)
		}
		if key == "legacy" {
			if err := server.TagKV(ctx, mount, key, map[string]string{managedByKey: managedByValue}); err != nil {
				t.Fatal(err)
			}
		}
		var msgs []string
		for _, guess := range []string{`{"token":"theirs-canary"}`, `{"token":"wrong"}`} {
			_, err := c.Push(ctx, providers.Push{Key: key, Value: []byte(guess), Owner: other})
			wantError(t, err, providers.Conflict, "updatePolicy", "theirs-canary")
			if err != nil {
				msgs = append(msgs, err.Error())
			}
		}
		if len(msgs) != 2 || msgs[0] != msgs[1] {
			t.Errorf("%s: answers differ with the guess: %q", key, msgs)
		}
		wantError(t, c.Delete(ctx, providers.Delete{Key: key, Owner: other}), providers.NotOwner, "not written by Veil for a PushSecret")
		if v := versionOf(key); v != 1 {
			t.Errorf("%s: version %d, want 1", key, v)
		}
		if got, err := c.Push(ctx, providers.Push{Key: key, Value: []byte(`{"token":"theirs-canary"}`), Replace: true, Owner: other}); err != nil || got != esv1alpha1.SecretPushResultUnchanged {
			t.Errorf("%s: Replace with the same value: %s, %v", key, got, err)
		}
		if m, _ := c.metadata(ctx, key); !m.ownedBy(other) {
			t.Errorf("%s: after Replace, custom_metadata %v; want the owner recorded", key, m.custom)
		}
		// Now it is other's: the first owner's Replace does not take it back.
		_, err := c.Push(ctx, providers.Push{Key: key, Value: []byte(`{"token":"x"}`), Replace: true, Owner: owner})
		wantError(t, err, providers.NotOwner, "belongs to another PushSecret")
	}

	// A key another push created first stays its creator's.
	if err := c.markOwner(ctx, "raced", nil, other, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.writeData(ctx, "raced", map[string]any{"a": "first"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.markOwner(ctx, "raced", nil, owner, nil); err != nil { // a loser's late mark
		t.Fatal(err)
	}
	if err := c.writeData(ctx, "raced", map[string]any{"a": "second"}, 0); providers.ReasonOf(err) != providers.Conflict {
		t.Fatalf("a second create: %v", err)
	}
	c.unmark(ctx, "raced", owner)
	if m, _ := c.metadata(ctx, "raced"); m.owned() {
		t.Errorf("the loser's mark stayed: %v", m.custom)
	}
}
