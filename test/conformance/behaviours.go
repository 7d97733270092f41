package conformance

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// behaviour is one row of the table.
type behaviour struct {
	name string
	// needs are the capabilities run needs; when one is declared
	// unsupported, refused runs instead (when set): it checks that the
	// provider refuses the behaviour rather than guessing.
	needs   []Capability
	run     func(t *testing.T, s *suite)
	refused func(t *testing.T, s *suite)
}

// behaviours is the table, in order: the outage comes last, because a
// server that keeps no data (moto) loses what was seeded.
var behaviours = []behaviour{
	{name: "get", run: testGet},
	{name: "not found", run: testNotFound},
	{name: "versions", needs: []Capability{Versions}, run: testVersions, refused: refuseVersions},
	{name: "properties and extract through resolve", run: testResolve},
	{name: "find by name", run: testFindByName},
	{name: "find by tags", needs: []Capability{Tags}, run: testFindByTags, refused: refuseTags},
	{name: "find bound", needs: []Capability{FindBound}, run: testFindBound},
	{name: "batch get", needs: []Capability{BatchGet}, run: testBatchGet, refused: refuseBatchGet},
	{name: "change detection", needs: []Capability{ChangeDetection}, run: testChangeDetection, refused: refuseChangeDetection},
	{name: "change stream initial state", needs: []Capability{ChangeStream}, run: testChangeStreamInitialState, refused: refuseChangeStream},
	{name: "push", needs: []Capability{Push}, run: testPush, refused: refusePush},
	{name: "push property", needs: []Capability{Push, PushProperty}, run: testPushProperty, refused: refusePushProperty},
	{name: "delete", needs: []Capability{Push, Delete}, run: testDelete, refused: refuseDelete},
	{name: "forbidden", needs: []Capability{Forbidden}, run: testForbidden},
	{name: "outage and recovery", needs: []Capability{Outage}, run: testOutage},
}

// The owners of pushes: a PushSecret, and another one.
func (s *suite) owner() providers.Owner {
	return providers.Owner{Namespace: "team-a", Name: "push", UID: "uid-a-" + s.run}
}

func (s *suite) otherOwner() providers.Owner {
	return providers.Owner{Namespace: "team-b", Name: "push", UID: "uid-b-" + s.run}
}

// obj is a JSON object of string fields, given as key, value pairs.
func obj(kv ...string) []byte {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// jsonEqual compares two JSON documents by meaning, numbers by their text.
func jsonEqual(a, b []byte) bool {
	decode := func(x []byte) (any, bool) {
		d := json.NewDecoder(bytes.NewReader(x))
		d.UseNumber()
		var v any
		return v, d.Decode(&v) == nil
	}
	va, oka := decode(a)
	vb, okb := decode(b)
	return oka && okb && reflect.DeepEqual(va, vb)
}

func isObject(b []byte) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
}

// same says whether a value read is the value written: byte for byte
// where the provider keeps raw values, by JSON meaning where it keeps
// objects of fields (and may encode them again).
func (s *suite) same(got, want []byte) bool {
	if s.supports(RawValues) {
		return bytes.Equal(got, want)
	}
	return jsonEqual(got, want)
}

// wantValue checks a value read, without printing it.
func (s *suite) wantValue(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !s.same(got, want) {
		t.Errorf("%s: the value read (%d bytes) is not the value written (%d bytes)", what, len(got), len(want))
		return
	}
	if len(s.leaks(got)) > 0 {
		s.mu.Lock()
		s.canaryReads++
		s.mu.Unlock()
	}
}

// read gets key and checks it holds want.
func (s *suite) read(t *testing.T, c providers.Client, key string, want []byte) providers.Value {
	t.Helper()
	v, err := c.Get(s.ctx(t), providers.Ref{Key: key})
	s.must(t, err, "reading "+key)
	s.wantValue(t, "reading "+key, v.Data, want)
	return v
}

func keysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// wantFound checks a find's result: exactly the keys of want, with their values.
func (s *suite) wantFound(t *testing.T, what string, got map[string]providers.Value, want map[string][]byte) {
	t.Helper()
	if g, w := keysOf(got), keysOf(want); strings.Join(g, " ") != strings.Join(w, " ") {
		t.Errorf("%s found %v, want %v", what, g, w)
		return
	}
	for k, v := range got {
		s.wantValue(t, what+": "+k, v.Data, want[k])
	}
}

func testGet(t *testing.T, s *suite) {
	key := s.key("get/db")
	want := obj("user", "app", "password", s.canary("get"))
	version := s.f.Seed(t, key, want)
	c := s.client(t)
	v := s.read(t, c, key, want)
	if !s.supports(RawValues) && !isObject(v.Data) {
		t.Errorf("the value is not a JSON object of fields, which a provider without raw values returns")
	}
	if v.Version != "" && v.Version != version {
		t.Errorf("version %q, want %q, the version the write made", v.Version, version)
	}
	if s.supports(RawValues) {
		text := s.key("get/text")
		want := []byte("  not JSON: " + s.canary("get-text") + "\n")
		s.f.Seed(t, text, want)
		s.read(t, s.client(t), text, want)
	}
}

func testNotFound(t *testing.T, s *suite) {
	c := s.client(t)
	key := s.key("not-found/missing")
	_, err := c.Get(s.ctx(t), providers.Ref{Key: key})
	s.wantReason(t, err, "a missing key", providers.NotFound)
	if err != nil && !strings.Contains(err.Error(), strings.TrimPrefix(key, "/")) {
		t.Errorf("the error does not name the key: %s", s.printable(err))
	}
	found, err := c.Find(s.ctx(t), providers.Find{Path: s.key("not-found")})
	s.must(t, err, "a find under a path with nothing")
	if len(found) != 0 {
		t.Errorf("a find under a path with nothing found %v", keysOf(found))
	}
}

func testVersions(t *testing.T, s *suite) {
	key := s.key("versions/db")
	a, b := obj("password", s.canary("version-a")), obj("password", s.canary("version-b"))
	v1 := s.f.Seed(t, key, a)
	v2 := s.f.Seed(t, key, b)
	if v1 == "" || v2 == "" || v1 == v2 {
		t.Fatalf("the fixture's writes made versions %q and %q: a provider with versions names each write", v1, v2)
	}
	c := s.client(t)
	latest := s.read(t, c, key, b)
	if latest.Version != "" && latest.Version != v2 {
		t.Errorf("latest: version %q, want %q", latest.Version, v2)
	}
	old, err := c.Get(s.ctx(t), providers.Ref{Key: key, Version: v1})
	s.must(t, err, "reading the older version")
	s.wantValue(t, "version "+v1, old.Data, a)
	if old.Version != "" && old.Version != v1 {
		t.Errorf("older version: version %q, want %q", old.Version, v1)
	}
	_, err = c.Get(s.ctx(t), providers.Ref{Key: key, Version: s.info.MissingVersion})
	s.wantReason(t, err, "a missing version", providers.NotFound)
	_, err = c.Get(s.ctx(t), providers.Ref{Key: s.key("versions/missing"), Version: v1})
	s.wantReason(t, err, "a version of a missing key", providers.NotFound)
}

func refuseVersions(t *testing.T, s *suite) {
	key := s.key("versions/db")
	s.f.Seed(t, key, obj("password", s.canary("version")))
	c := s.client(t)
	v, err := c.Get(s.ctx(t), providers.Ref{Key: key, Version: "1"})
	if err == nil {
		t.Fatalf("a version was served (%d bytes) by a provider that declares it has none", len(v.Data))
	}
	s.wantReason(t, err, "a version asked of a provider without versions", providers.Invalid, providers.NotFound)
}

// secretKeyFor is the Secret key pkg/resolve gives a found remote key.
func secretKeyFor(remote string) string {
	return regexp.MustCompile(`[^-._a-zA-Z0-9]`).ReplaceAllString(strings.Trim(remote, "/"), "_")
}

func testResolve(t *testing.T, s *suite) {
	canary := s.canary("resolve")
	encoded := base64.StdEncoding.EncodeToString([]byte("decoded-" + canary))
	db := s.key("resolve/db")
	final, err := json.Marshal(map[string]any{
		"user": "app", "password": canary, "encoded": encoded,
		"nested": map[string]string{"host": "db.internal", "port": "5432"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var v1 string
	if s.supports(Versions) {
		v1 = s.f.Seed(t, db, obj("user", "old-app"))
	}
	s.f.Seed(t, db, final)
	one, two := s.key("resolve/found/one"), s.key("resolve/found/two")
	oneValue, twoValue := obj("n", "1", "c", s.canary("resolve-found")), obj("n", "2")
	s.f.Seed(t, one, oneValue)
	s.f.Seed(t, two, twoValue)

	r := s.resolver(t, s.f.Store(t))
	ref := func(secretKey, key, property string) configv1alpha1.ExternalSecretData {
		return configv1alpha1.ExternalSecretData{SecretKey: secretKey, RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: key, Property: property}}
	}
	decoded := ref("decoded", db, "encoded")
	decoded.RemoteRef.DecodingStrategy = configv1alpha1.DecodeBase64
	data := []configv1alpha1.ExternalSecretData{ref("user", db, "user"), ref("host", db, "nested.host"), decoded, ref("whole", db, "")}
	if v1 != "" {
		old := ref("old-user", db, "user")
		old.RemoteRef.Version = v1
		data = append(data, old)
	}
	path := s.key("resolve/found")
	got, err := s.resolveES(t, r, data,
		configv1alpha1.ExternalSecretDataFromRemoteRef{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: db}},
		configv1alpha1.ExternalSecretDataFromRemoteRef{Find: &configv1alpha1.ExternalSecretFind{Path: &path, Name: &configv1alpha1.FindName{RegExp: "found/"}}})
	s.must(t, err, "resolving the ExternalSecret")

	exact := map[string]string{
		// dataFrom.extract: every field, strings as text, objects as JSON.
		"user": "app", "password": canary, "encoded": encoded, "nested": `{"host":"db.internal","port":"5432"}`,
		// data[]: properties, a nested one, and decoding.
		"host": "db.internal", "decoded": "decoded-" + canary,
	}
	whole := map[string][]byte{"whole": final, secretKeyFor(one): oneValue, secretKeyFor(two): twoValue}
	if v1 != "" {
		exact["old-user"] = "old-app"
	}
	var want []string
	for k := range exact {
		want = append(want, k)
	}
	for k := range whole {
		want = append(want, k)
	}
	sort.Strings(want)
	if g := keysOf(got.Data); strings.Join(g, " ") != strings.Join(want, " ") {
		t.Errorf("resolved keys %v, want %v", g, want)
	}
	for k, w := range exact {
		if string(got.Data[k]) != w {
			t.Errorf("resolved %s: %d bytes, not the %d expected", k, len(got.Data[k]), len(w))
		}
	}
	for k, w := range whole {
		s.wantValue(t, "resolved "+k, got.Data[k], w)
	}
	if bytes.Contains(got.Data["password"], []byte(canary)) {
		s.mu.Lock()
		s.canaryReads++
		s.mu.Unlock()
	}

	_, err = s.resolveES(t, r, []configv1alpha1.ExternalSecretData{ref("x", db, "absent")})
	s.wantReason(t, err, "a missing property", providers.NotFound)
	_, err = s.resolveES(t, r, []configv1alpha1.ExternalSecretData{ref("x", s.key("resolve/missing"), "")})
	s.wantReason(t, err, "a missing key", providers.NotFound)
	_, err = s.resolveES(t, r, nil, configv1alpha1.ExternalSecretDataFromRemoteRef{Extract: &configv1alpha1.ExternalSecretDataRemoteRef{Key: s.key("resolve/missing")}})
	s.wantReason(t, err, "extracting a missing key", providers.NotFound)
	bad := ref("x", db, "password")
	bad.RemoteRef.DecodingStrategy = configv1alpha1.DecodeBase64
	_, err = s.resolveES(t, r, []configv1alpha1.ExternalSecretData{bad})
	s.wantReason(t, err, "decoding a value that is not base64", providers.Invalid)
}

func testFindByName(t *testing.T, s *suite) {
	values := map[string][]byte{}
	for _, name := range []string{"find/alpha-db", "find/beta-db", "find/gamma-cache", "other/delta-db"} {
		values[s.key(name)] = obj("name", name, "c", s.canary("find"))
		s.f.Seed(t, s.key(name), values[s.key(name)])
	}
	pick := func(names ...string) map[string][]byte {
		m := map[string][]byte{}
		for _, n := range names {
			m[s.key(n)] = values[s.key(n)]
		}
		return m
	}
	c := s.client(t)
	for _, tc := range []struct {
		what string
		find providers.Find
		want map[string][]byte
	}{
		{"a regexp under a path", providers.Find{Path: s.key("find"), NameRegexp: "-db$"}, pick("find/alpha-db", "find/beta-db")},
		{"everything under a path", providers.Find{Path: s.key("find")}, pick("find/alpha-db", "find/beta-db", "find/gamma-cache")},
		{"a regexp on whole keys", providers.Find{NameRegexp: "^" + regexp.QuoteMeta(s.key("")) + ".*-db$"}, pick("find/alpha-db", "find/beta-db", "other/delta-db")},
	} {
		found, err := c.Find(s.ctx(t), tc.find)
		s.must(t, err, tc.what)
		s.wantFound(t, tc.what, found, tc.want)
	}
	_, err := c.Find(s.ctx(t), providers.Find{NameRegexp: "("})
	s.wantReason(t, err, "an invalid regexp", providers.Invalid)
}

func testFindByTags(t *testing.T, s *suite) {
	tagger := s.f.(Tagger)
	team := "conformance-" + s.run
	values := map[string][]byte{}
	for name, tags := range map[string]map[string]string{
		"tags/a": {"team": team, "env": "prod"},
		"tags/b": {"team": team, "env": "production"},
		"tags/c": nil,
	} {
		values[name] = obj("name", name, "c", s.canary("tags"))
		s.f.Seed(t, s.key(name), values[name])
		if tags != nil {
			tagger.Tag(t, s.key(name), tags)
		}
	}
	pick := func(names ...string) map[string][]byte {
		m := map[string][]byte{}
		for _, n := range names {
			m[s.key(n)] = values[n]
		}
		return m
	}
	c := s.client(t)
	for _, tc := range []struct {
		what string
		find providers.Find
		want map[string][]byte
	}{
		{"a tag under a path, matched exactly", providers.Find{Path: s.key("tags"), Tags: map[string]string{"env": "prod"}}, pick("tags/a")},
		{"a tag anywhere", providers.Find{Tags: map[string]string{"team": team}}, pick("tags/a", "tags/b")},
		{"every tag must match", providers.Find{Tags: map[string]string{"team": team, "env": "prod"}}, pick("tags/a")},
		{"tags and a regexp", providers.Find{Tags: map[string]string{"team": team}, NameRegexp: "b$"}, pick("tags/b")},
	} {
		found, err := c.Find(s.ctx(t), tc.find)
		s.must(t, err, tc.what)
		s.wantFound(t, tc.what, found, tc.want)
	}
}

func refuseTags(t *testing.T, s *suite) {
	s.f.Seed(t, s.key("tags/a"), obj("c", s.canary("tags")))
	c := s.client(t)
	found, err := c.Find(s.ctx(t), providers.Find{Path: s.key("tags"), Tags: map[string]string{"team": "a"}})
	if err == nil {
		t.Fatalf("a find by tags found %v in a provider that declares it has no tags: it must refuse, not ignore the tags", keysOf(found))
	}
	s.wantReason(t, err, "a find by tags", providers.Invalid)
}

func testFindBound(t *testing.T, s *suite) {
	for i := range providers.MaxFindResults + 1 {
		s.f.Seed(t, s.key(fmt.Sprintf("bound/k%03d", i)), obj("i", fmt.Sprint(i)))
	}
	c := s.client(t)
	_, err := c.Find(s.ctx(t), providers.Find{Path: s.key("bound")})
	s.wantReason(t, err, fmt.Sprintf("a find of %d keys", providers.MaxFindResults+1), providers.Invalid)
	found, err := c.Find(s.ctx(t), providers.Find{Path: s.key("bound"), NameRegexp: "k00[0-9]$"})
	s.must(t, err, "a narrower find")
	if len(found) != 10 {
		t.Errorf("a narrower find found %d keys, want 10", len(found))
	}
}

func testBatchGet(t *testing.T, s *suite) {
	a, b, missing := s.key("batch/a"), s.key("batch/b"), s.key("batch/missing")
	va, vb := obj("c", s.canary("batch-a")), obj("c", s.canary("batch-b"))
	s.f.Seed(t, a, va)
	s.f.Seed(t, b, vb)
	bg, ok := s.client(t).(providers.BatchGetter)
	if !ok {
		t.Fatal("the fixture declares batch get, but the client is no providers.BatchGetter")
	}
	got, err := bg.GetBatch(s.ctx(t), []providers.Ref{{Key: a}, {Key: b}, {Key: missing}})
	s.must(t, err, "a batch get")
	if len(got) != 2 {
		t.Errorf("a batch of 2 present keys and 1 missing returned %d values", len(got))
	}
	if _, ok := got[providers.Ref{Key: missing}]; ok {
		t.Error("a missing key has a value in the batch")
	}
	s.wantValue(t, "batch "+a, got[providers.Ref{Key: a}].Data, va)
	s.wantValue(t, "batch "+b, got[providers.Ref{Key: b}].Data, vb)
}

func refuseBatchGet(t *testing.T, s *suite) {
	if _, ok := s.client(t).(providers.BatchGetter); ok {
		t.Error("the client is a providers.BatchGetter, but the fixture declares batch get unsupported: declare what the provider does")
	}
}

// testChangeDetection: Versions names the version of each present key,
// leaves missing keys out, moves when the value is written again and not
// when it is read, answers a full chunk in one call, and carries no value.
func testChangeDetection(t *testing.T, s *suite) {
	vl, ok := s.client(t).(providers.VersionLister)
	if !ok {
		t.Fatal("the fixture declares change detection, but the client is no providers.VersionLister")
	}
	per := vl.VersionsPerCall()
	if per < 1 {
		t.Fatalf("VersionsPerCall is %d", per)
	}
	var keys []string
	for i := range per {
		keys = append(keys, s.key(fmt.Sprintf("detect/k%d", i)))
	}
	first := obj("v", s.canary("detect-first"))
	for _, k := range keys {
		s.f.Seed(t, k, first)
	}
	missing := s.key("detect/missing")
	asked := append(append([]string(nil), keys...), missing)
	before, err := vl.Versions(s.ctx(t), asked)
	s.must(t, err, "reading versions")
	if len(before) != len(keys) {
		t.Fatalf("%d present keys and one missing gave %d versions", len(keys), len(before))
	}
	if _, ok := before[missing]; ok {
		t.Error("a missing key has a version")
	}
	for k, v := range before {
		if v.ID == "" || strings.Contains(v.ID, string(first)) || strings.Contains(v.ID, s.canary("detect-first")) {
			t.Errorf("key %s: version %q is empty or carries the value", k, v.ID)
		}
	}
	s.read(t, s.client(t), keys[0], first)
	again, err := vl.Versions(s.ctx(t), keys)
	s.must(t, err, "reading versions again")
	for _, k := range keys {
		if again[k].ID != before[k].ID || again[k].Scope != before[k].Scope {
			t.Errorf("key %s: reading it moved its version from %+v to %+v", k, before[k], again[k])
		}
	}
	s.f.Seed(t, keys[0], obj("v", s.canary("detect-second")))
	after, err := vl.Versions(s.ctx(t), keys)
	s.must(t, err, "reading versions after a write")
	if after[keys[0]].ID == before[keys[0]].ID {
		t.Errorf("key %s: a new value left its version at %q", keys[0], after[keys[0]].ID)
	}
	if c := after[keys[0]].Changed; !c.IsZero() && c.Before(before[keys[0]].Changed) {
		t.Errorf("key %s: changed at %s after a write, before the %s it had", keys[0], c, before[keys[0]].Changed)
	}
	for _, k := range keys[1:] {
		if after[k].ID != before[k].ID {
			t.Errorf("key %s was not written, and its version moved", k)
		}
	}
}

// testChangeStreamInitialState: a client that is a
// providers.ChangeWatcher starts each watch with exactly one change a key,
// in the order asked, present keys with a version that carries no value
// (the versions Versions gives, when it lists them) and missing keys
// absent; it refuses a key named twice; and it returns nil once its
// context ends. Providers that do not detect changes themselves declare
// ChangeStream unsupported; refuseChangeStream then checks they do not
// claim to.
func testChangeStreamInitialState(t *testing.T, s *suite) {
	c := s.client(t)
	cw, ok := c.(providers.ChangeWatcher)
	if !ok {
		t.Fatalf("the client (%T) is no providers.ChangeWatcher; declare %q unsupported if the provider does not detect changes itself", c, ChangeStream)
	}
	canary := s.canary("stream")
	value := obj("v", canary)
	a, b, missing := s.key("stream/a"), s.key("stream/b"), s.key("stream/missing")
	s.f.Seed(t, a, value)
	s.f.Seed(t, b, value)
	// The store as seeded (the fake provider's values are its spec).
	c = s.client(t)
	cw = c.(providers.ChangeWatcher)
	keys := []string{b, missing, a}
	ctx, cancel := context.WithCancel(s.ctx(t))
	defer cancel()
	var got []providers.KeyChange
	done := make(chan error, 1)
	go func() {
		done <- cw.WatchChanges(ctx, keys, func(kc providers.KeyChange) error {
			got = append(got, kc)
			if len(got) == len(keys) {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		s.must(t, err, "watching changes")
	case <-time.After(time.Minute):
		t.Fatal("no initial state within a minute, or the watch did not end with its context")
	}
	if len(got) != len(keys) {
		t.Fatalf("the initial state has %d changes for %d keys", len(got), len(keys))
	}
	for i, kc := range got {
		if kc.Key != keys[i] {
			t.Fatalf("change %d of the initial state is of key %q, want %q: one change a key, in the order asked", i, kc.Key, keys[i])
		}
		if kc.Exists != (kc.Key != missing) {
			t.Errorf("key %s: exists %v", kc.Key, kc.Exists)
		}
		if kc.Exists && (kc.Version.ID == "" || strings.Contains(kc.Version.ID, canary)) {
			t.Errorf("key %s: version %q is empty or carries the value", kc.Key, kc.Version.ID)
		}
	}
	if vl, ok := c.(providers.VersionLister); ok {
		vs, err := vl.Versions(s.ctx(t), keys)
		s.must(t, err, "reading versions")
		for _, kc := range got {
			if kc.Exists && vs[kc.Key].ID != kc.Version.ID {
				t.Errorf("key %s: the stream says version %q, Versions %q", kc.Key, kc.Version.ID, vs[kc.Key].ID)
			}
		}
	}
	err := cw.WatchChanges(s.ctx(t), []string{a, a}, func(providers.KeyChange) error { return nil })
	if providers.ReasonOf(err) != providers.Invalid {
		t.Errorf("a watch naming a key twice: %v, want Invalid", err)
	}
}

func refuseChangeDetection(t *testing.T, s *suite) {
	vl, ok := s.client(t).(providers.VersionLister)
	if !ok {
		return
	}
	// A client that lists versions but cannot for this store must say so.
	_, err := vl.Versions(s.ctx(t), []string{s.key("detect/refused")})
	if providers.ReasonOf(err) != providers.Invalid {
		t.Errorf("the fixture declares change detection unsupported, but Versions answered %v, not an Invalid error saying why", err)
	}
}

func refuseChangeStream(t *testing.T, s *suite) {
	if c, ok := s.client(t).(providers.ChangeWatcher); ok {
		t.Errorf("the fixture declares change streams unsupported, but its client (%T) is a providers.ChangeWatcher", c)
	}
}

// pusher pushes through c and checks what the push reports.
func (s *suite) pusher(t *testing.T, c providers.Client) func(p providers.Push, want string) {
	return func(p providers.Push, want string) {
		t.Helper()
		got, err := c.Push(s.ctx(t), p)
		s.must(t, err, fmt.Sprintf("push to %s (property %q)", p.Key, p.Property))
		if got != want {
			t.Errorf("push to %s (property %q, IfNotExists %v, Replace %v): %s, want %s", p.Key, p.Property, p.IfNotExists, p.Replace, got, want)
		}
	}
}

func testPush(t *testing.T, s *suite) {
	c := s.client(t)
	push := s.pusher(t, c)
	owner, other := s.owner(), s.otherOwner()
	k := s.key("push/owned")
	v1, v2 := obj("token", s.canary("push-1")), obj("token", s.canary("push-2"))

	push(providers.Push{Key: k, Value: v1, Owner: owner}, esv1alpha1.SecretPushResultPushed)
	s.read(t, c, k, v1)
	push(providers.Push{Key: k, Value: v1, Owner: owner}, esv1alpha1.SecretPushResultUnchanged)
	push(providers.Push{Key: k, Value: v2, Owner: owner}, esv1alpha1.SecretPushResultPushed)
	s.read(t, c, k, v2)
	push(providers.Push{Key: k, Value: v1, Owner: owner, IfNotExists: true}, esv1alpha1.SecretPushResultSkippedExists)
	s.read(t, c, k, v2)
	fresh := s.key("push/if-not-exists")
	push(providers.Push{Key: fresh, Value: v1, Owner: owner, IfNotExists: true}, esv1alpha1.SecretPushResultPushed)
	s.read(t, c, fresh, v1)
	_, err := c.Push(s.ctx(t), providers.Push{Key: k, Value: v1})
	s.wantReason(t, err, "a push without an owner", providers.Invalid)

	// Another PushSecret's key: refused before any value is compared, so
	// a right guess and a wrong one get the same answer.
	var msgs []string
	for _, p := range []providers.Push{
		{Key: k, Value: v2},
		{Key: k, Value: obj("token", "wrong-guess")},
		{Key: k, Value: v2, Replace: true},
	} {
		p.Owner = other
		_, err := c.Push(s.ctx(t), p)
		s.wantReason(t, err, "a push to another owner's key", providers.NotOwner)
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 3 && msgs[0] != msgs[1] {
		t.Error("the answer to a push to another owner's key depends on the value guessed")
	}
	push(providers.Push{Key: k, Value: obj("x", "y"), Owner: other, IfNotExists: true}, esv1alpha1.SecretPushResultSkippedExists)
	s.read(t, c, k, v2)

	// A key an operator wrote: Conflict unless Replace, whatever the guess;
	// Replace takes it over, and then it is its new owner's.
	theirs := s.key("push/theirs")
	theirValue := obj("token", s.canary("push-theirs"))
	s.f.Seed(t, theirs, theirValue)
	msgs = nil
	for _, guess := range [][]byte{theirValue, obj("token", "wrong-guess")} {
		_, err := c.Push(s.ctx(t), providers.Push{Key: theirs, Value: guess, Owner: owner})
		s.wantReason(t, err, "a push over a key Veil did not write", providers.Conflict)
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 2 && msgs[0] != msgs[1] {
		t.Error("the answer to a push over a key Veil did not write depends on the value guessed")
	}
	s.read(t, c, theirs, theirValue)
	push(providers.Push{Key: theirs, Value: v1, Owner: owner, Replace: true}, esv1alpha1.SecretPushResultPushed)
	s.read(t, c, theirs, v1)
	_, err = c.Push(s.ctx(t), providers.Push{Key: theirs, Value: v2, Owner: other, Replace: true})
	s.wantReason(t, err, "Replace of a key another owner took over", providers.NotOwner)
	s.read(t, c, theirs, v1)
}

// refusedWrite checks that a write the provider cannot make is refused, as
// Invalid (the store cannot do it) or Forbidden (it never writes), and
// changed nothing.
func (s *suite) refusedWrite(t *testing.T, what string, write func(c providers.Client) error) {
	key := s.key("refused/db")
	want := obj("token", s.canary("refused"))
	s.f.Seed(t, key, want)
	c := s.client(t)
	s.wantReason(t, write(c), what, providers.Invalid, providers.Forbidden)
	s.read(t, c, key, want)
}

func refusePush(t *testing.T, s *suite) {
	s.refusedWrite(t, "a push", func(c providers.Client) error {
		_, err := c.Push(s.ctx(t), providers.Push{Key: s.key("refused/db"), Value: obj("token", "pushed"), Owner: s.owner(), Replace: true})
		return err
	})
}

func testPushProperty(t *testing.T, s *suite) {
	c := s.client(t)
	push := s.pusher(t, c)
	owner := s.owner()
	k := s.key("push/properties")
	canary := s.canary("push-property")
	push(providers.Push{Key: k, Property: "user", Value: []byte("app"), Owner: owner}, esv1alpha1.SecretPushResultPushed)
	push(providers.Push{Key: k, Property: "password", Value: []byte(canary), Owner: owner}, esv1alpha1.SecretPushResultPushed)
	push(providers.Push{Key: k, Property: "user", Value: []byte("app"), Owner: owner}, esv1alpha1.SecretPushResultUnchanged)
	push(providers.Push{Key: k, Property: "user", Value: []byte("other"), Owner: owner, IfNotExists: true}, esv1alpha1.SecretPushResultSkippedExists)
	push(providers.Push{Key: k, Property: "added", Value: []byte("x"), Owner: owner, IfNotExists: true}, esv1alpha1.SecretPushResultPushed)
	v, err := c.Get(s.ctx(t), providers.Ref{Key: k})
	s.must(t, err, "reading the pushed properties")
	if want := obj("user", "app", "password", canary, "added", "x"); !jsonEqual(v.Data, want) {
		t.Errorf("after property pushes the value (%d bytes) is not the JSON object of the properties pushed", len(v.Data))
	} else {
		s.mu.Lock()
		s.canaryReads++
		s.mu.Unlock()
	}
}

func refusePushProperty(t *testing.T, s *suite) {
	s.refusedWrite(t, "a property push", func(c providers.Client) error {
		_, err := c.Push(s.ctx(t), providers.Push{Key: s.key("refused/db"), Property: "token", Value: []byte("pushed"), Owner: s.owner(), Replace: true})
		return err
	})
}

func testDelete(t *testing.T, s *suite) {
	c := s.client(t)
	push := s.pusher(t, c)
	owner, other := s.owner(), s.otherOwner()
	k := s.key("delete/owned")
	v := obj("token", s.canary("delete"))
	push(providers.Push{Key: k, Value: v, Owner: owner}, esv1alpha1.SecretPushResultPushed)

	s.wantReason(t, c.Delete(s.ctx(t), providers.Delete{Key: k, Owner: other}), "a delete of another owner's key", providers.NotOwner)
	s.read(t, c, k, v)
	s.wantReason(t, c.Delete(s.ctx(t), providers.Delete{Key: k}), "a delete without an owner", providers.Invalid)
	theirs := s.key("delete/theirs")
	theirValue := obj("token", s.canary("delete-theirs"))
	s.f.Seed(t, theirs, theirValue)
	s.wantReason(t, c.Delete(s.ctx(t), providers.Delete{Key: theirs, Owner: owner}), "a delete of a key Veil did not write", providers.NotOwner)
	s.read(t, c, theirs, theirValue)

	s.must(t, c.Delete(s.ctx(t), providers.Delete{Key: k, Owner: owner}), "the owner's delete")
	_, err := c.Get(s.ctx(t), providers.Ref{Key: k})
	s.wantReason(t, err, "reading a deleted key", providers.NotFound)
	s.must(t, c.Delete(s.ctx(t), providers.Delete{Key: k, Owner: owner}), "deleting a key that is gone")

	if s.supports(PushProperty) {
		p := s.key("delete/properties")
		push(providers.Push{Key: p, Property: "a", Value: []byte("1"), Owner: owner}, esv1alpha1.SecretPushResultPushed)
		push(providers.Push{Key: p, Property: "b", Value: []byte("2"), Owner: owner}, esv1alpha1.SecretPushResultPushed)
		s.must(t, c.Delete(s.ctx(t), providers.Delete{Key: p, Property: "a", Owner: owner}), "deleting a property")
		got, err := c.Get(s.ctx(t), providers.Ref{Key: p})
		s.must(t, err, "reading what is left")
		if !jsonEqual(got.Data, obj("b", "2")) {
			t.Errorf("after deleting property a, the value is not the other property alone")
		}
		s.must(t, c.Delete(s.ctx(t), providers.Delete{Key: p, Property: "b", Owner: owner}), "deleting the last property")
		_, err = c.Get(s.ctx(t), providers.Ref{Key: p})
		s.wantReason(t, err, "reading a key whose last property was deleted", providers.NotFound)
	}
}

func refuseDelete(t *testing.T, s *suite) {
	s.refusedWrite(t, "a delete", func(c providers.Client) error {
		return c.Delete(s.ctx(t), providers.Delete{Key: s.key("refused/db"), Owner: s.owner()})
	})
}

func testForbidden(t *testing.T, s *suite) {
	key := s.key("forbidden/db")
	s.f.Seed(t, key, obj("password", s.canary("forbidden")))
	st, creds := s.f.(Denier).Denied(t, key)
	s.secret(creds...)

	store := st.providerStore()
	p, err := providers.For(store.Spec)
	s.must(t, err, "the store's provider")
	c, err := p.NewClient(s.ctx(t), store, credentialsOf(st, store), env())
	if err != nil {
		// A provider that logs in may be refused at once.
		s.wantReason(t, err, "building a client whose credentials may not read", providers.Forbidden)
	} else {
		t.Cleanup(func() { _ = c.Close(context.Background()) })
		_, err = c.Get(s.ctx(t), providers.Ref{Key: key})
		s.wantReason(t, err, "a read with credentials that may not read", providers.Forbidden)
	}
	_, err = s.resolveES(t, s.resolver(t, st), []configv1alpha1.ExternalSecretData{{SecretKey: "x", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: key}}})
	s.wantReason(t, err, "resolving with credentials that may not read", providers.Forbidden)
}

func testOutage(t *testing.T, s *suite) {
	key := s.key("outage/db")
	want := obj("password", s.canary("outage"))
	s.f.Seed(t, key, want)
	c := s.client(t)
	s.read(t, c, key, want)
	r := s.resolver(t, s.f.Store(t))
	es := func(key string) []configv1alpha1.ExternalSecretData {
		return []configv1alpha1.ExternalSecretData{{SecretKey: "x", RemoteRef: configv1alpha1.ExternalSecretDataRemoteRef{Key: key}}}
	}
	_, err := s.resolveES(t, r, es(key))
	s.must(t, err, "resolving before the outage")

	restore := s.f.(Outager).Outage(t)
	restored := false
	defer func() {
		if !restored {
			restore()
		}
	}()
	_, err = c.Get(s.ctx(t), providers.Ref{Key: key})
	s.wantReason(t, err, "a read during the outage", providers.Unavailable)
	_, err = c.Find(s.ctx(t), providers.Find{Path: s.key("outage")})
	s.wantReason(t, err, "a find during the outage", providers.Unavailable)
	if s.supports(Push) {
		_, err = c.Push(s.ctx(t), providers.Push{Key: s.key("outage/pushed"), Value: want, Owner: s.owner()})
		s.wantReason(t, err, "a push during the outage", providers.Unavailable)
	}
	_, err = s.resolveES(t, r, es(key))
	s.wantReason(t, err, "resolving during the outage", providers.Unavailable)

	restore()
	restored = true
	// The same client, and the same resolver, work again.
	after := s.key("outage/after")
	afterValue := obj("password", s.canary("after-outage"))
	s.f.Seed(t, after, afterValue)
	s.read(t, c, after, afterValue)
	if s.info.KeepsData {
		s.read(t, c, key, want)
	} else {
		s.note("outage and recovery: values written before the outage not read after it (the fixture's server keeps no data across a restart)")
	}
	_, err = s.resolveES(t, r, es(after))
	s.must(t, err, "resolving after the outage")
	if s.supports(Push) {
		push := s.pusher(t, c)
		push(providers.Push{Key: s.key("outage/pushed"), Value: want, Owner: s.owner()}, esv1alpha1.SecretPushResultPushed)
	}
}

func (s *suite) canaryAbsent(t *testing.T, logs *klogCapture) {
	s.mu.Lock()
	errs, reads, canaries := s.errors, s.canaryReads, len(s.canaries)
	s.mu.Unlock()
	if errs == 0 || reads == 0 {
		t.Errorf("the suite checked %d errors and read %d canaries back: nothing was checked", errs, reads)
	}
	klogged := logs.bytes()
	if leaked := s.leaks(klogged); len(leaked) > 0 {
		t.Errorf("Veil's log (klog) carries %d canary or credential strings", len(leaked))
	}
	var server []byte
	if ls, ok := s.f.(LogSource); ok {
		server = ls.Logs(t)
		if leaked := s.leaks(server); len(leaked) > 0 {
			t.Errorf("the server's log carries %d canary or credential strings", len(leaked))
		}
	} else {
		s.note("canary absent: the fixture exposes no server log; Veil's own log (klog) was searched")
	}
	t.Logf("%d canaries written, %d read back, %d errors checked; searched %d bytes of klog and %d of server log", canaries, reads, errs, len(klogged), len(server))
}
