package push

import (
	"context"
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/apis/externalsecrets"
	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/credentials"
	veilfake "github.com/veil-dev/veil/pkg/generated/clientset/versioned/fake"
	configlisters "github.com/veil-dev/veil/pkg/generated/listers/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
	_ "github.com/veil-dev/veil/pkg/providers/fake"
	"github.com/veil-dev/veil/pkg/stores"
)

const value = "pushed-canary-value"

// memory is a writable provider standing in for Vault (it takes the name
// "vault", so stores with spec.provider.vault use it).
type memory struct {
	providers.Provider
	data map[string][]byte
	// owners holds the owner UID of each key, as providers record it.
	owners map[string]string
	writes int
}

var mem = &memory{data: map[string][]byte{}, owners: map[string]string{}}

func init() { providers.Register(mem) }

func (*memory) Name() string                                   { return "vault" }
func (*memory) Endpoints(*providers.Store) ([]*url.URL, error) { return nil, nil }
func (m *memory) NewClient(context.Context, *providers.Store, providers.Credentials, providers.Env) (providers.Client, error) {
	return &memoryClient{m: m}, nil
}

type memoryClient struct {
	providers.Client
	m *memory
}

func (c *memoryClient) Push(_ context.Context, p providers.Push) (string, error) {
	if strings.HasPrefix(p.Key, "locked/") {
		return "", providers.Errorf(providers.Forbidden, "the store's role may not write %q", p.Key)
	}
	if !p.Owner.Valid() {
		return "", providers.Errorf(providers.Invalid, "no owner")
	}
	if _, ok := c.m.data[p.Key]; ok && p.IfNotExists {
		return esv1alpha1.SecretPushResultSkippedExists, nil
	}
	if o, ok := c.m.owners[p.Key]; ok && o != p.Owner.UID {
		return "", providers.Errorf(providers.NotOwner, "%q is another PushSecret's", p.Key)
	}
	if string(c.m.data[p.Key]) == string(p.Value) {
		return esv1alpha1.SecretPushResultUnchanged, nil
	}
	c.m.writes++
	c.m.data[p.Key] = p.Value
	c.m.owners[p.Key] = p.Owner.UID
	return esv1alpha1.SecretPushResultPushed, nil
}

func (c *memoryClient) Delete(_ context.Context, d providers.Delete) error {
	if _, ok := c.m.data[d.Key]; !ok {
		return providers.Errorf(providers.NotFound, "no %q", d.Key)
	}
	if c.m.owners[d.Key] != d.Owner.UID {
		return providers.Errorf(providers.NotOwner, "%q is not this PushSecret's", d.Key)
	}
	delete(c.m.data, d.Key)
	delete(c.m.owners, d.Key)
	return nil
}

func pusher(t *testing.T, objs ...any) *Pusher {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	cluster := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	namespaces := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, o := range objs {
		into := idx
		switch o.(type) {
		case *configv1alpha1.ClusterSecretStore:
			into = cluster
		case *corev1.Namespace:
			into = namespaces
		}
		if err := into.Add(o); err != nil {
			t.Fatal(err)
		}
	}
	return &Pusher{
		Stores: &stores.Lookup{
			SecretStores:        configlisters.NewSecretStoreLister(idx),
			ClusterSecretStores: configlisters.NewClusterSecretStoreLister(cluster),
			Namespaces:          corelisters.NewNamespaceLister(namespaces),
			Live:                veilfake.NewSimpleClientset().ConfigV1alpha1(),
			LiveCore:            kubefake.NewClientset().CoreV1(),
		},
		Clients: stores.NewClients(credentials.NewReader(kubefake.NewClientset(), 0), providers.Env{}),
	}
}

func store(name string, spec configv1alpha1.SecretStoreSpec) *configv1alpha1.SecretStore {
	return &configv1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: name, UID: types.UID("u-" + name)}, Spec: spec}
}

func vaultStore(name string, readOnly bool) *configv1alpha1.SecretStore {
	return store(name, configv1alpha1.SecretStoreSpec{ReadOnly: readOnly, Provider: configv1alpha1.SecretStoreProvider{Vault: &configv1alpha1.VaultProvider{Server: "https://vault.example"}}})
}

func pushSecret(policy configv1alpha1.PushSecretUpdatePolicy, stores []string, keys ...[2]string) *configv1alpha1.PushSecret {
	ps := &configv1alpha1.PushSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: "deploy-key", UID: "ps-uid"}, Spec: configv1alpha1.PushSecretSpec{UpdatePolicy: policy}}
	for _, s := range stores {
		ps.Spec.SecretStoreRefs = append(ps.Spec.SecretStoreRefs, configv1alpha1.SecretStoreRef{Name: s, Kind: configv1alpha1.SecretStoreKind})
	}
	for _, k := range keys {
		ps.Spec.Data = append(ps.Spec.Data, configv1alpha1.PushSecretData{Match: configv1alpha1.PushSecretMatch{SecretKey: k[0], RemoteRef: configv1alpha1.PushSecretRemoteRef{RemoteKey: k[1]}}})
	}
	return ps
}

func TestPushResults(t *testing.T) {
	ctx := context.Background()
	p := pusher(t, vaultStore("vault", false))
	ps := pushSecret("", []string{"vault"}, [2]string{"key", "ci/deploy"}, [2]string{"other", "locked/x"})
	spec := externalsecrets.SecretPushSpec{Data: map[string][]byte{"key": []byte(value), "other": []byte(value)}}

	results, err := p.Push(ctx, ps, spec, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].Result != esv1alpha1.SecretPushResultPushed || results[1].Result != esv1alpha1.SecretPushResultFailed || results[1].Reason != "Forbidden" {
		t.Fatalf("results %+v", results)
	}
	for _, r := range results {
		if strings.Contains(r.Message, value) {
			t.Errorf("a result carries the value: %+v", r)
		}
	}
	if string(mem.data["ci/deploy"]) != value {
		t.Error("the value was not written")
	}
	writes := mem.writes
	results, _ = p.Push(ctx, ps, spec, false)
	if results[0].Result != esv1alpha1.SecretPushResultUnchanged || mem.writes != writes {
		t.Errorf("an unchanged value: %+v, writes %d -> %d", results[0], writes, mem.writes)
	}

	ifNotExists := pushSecret(configv1alpha1.PushSecretUpdatePolicyIfNotExists, []string{"vault"}, [2]string{"key", "ci/deploy"})
	results, _ = p.Push(ctx, ifNotExists, externalsecrets.SecretPushSpec{Data: map[string][]byte{"key": []byte("new")}}, false)
	if results[0].Result != esv1alpha1.SecretPushResultSkippedExists || string(mem.data["ci/deploy"]) != value {
		t.Errorf("IfNotExists over an existing value: %+v", results[0])
	}

	results, err = p.Push(ctx, ps, externalsecrets.SecretPushSpec{Action: externalsecrets.SecretPushActionDelete}, false)
	if err != nil || results[0].Result != esv1alpha1.SecretPushResultDeleted {
		t.Fatalf("delete: %+v, %v", results, err)
	}
	if _, ok := mem.data["ci/deploy"]; ok {
		t.Error("the remote key was not deleted")
	}
	// Deleting what is already gone is not a failure.
	if results, _ = p.Push(ctx, ps, externalsecrets.SecretPushSpec{Action: externalsecrets.SecretPushActionDelete}, false); results[0].Result != esv1alpha1.SecretPushResultDeleted {
		t.Errorf("delete again: %+v", results[0])
	}

	before := mem.writes
	results, err = p.Push(ctx, ps, spec, true)
	if err != nil || results[0].Result != esv1alpha1.SecretPushResultDryRun || mem.writes != before {
		t.Errorf("dry run: %+v, %v, writes %d -> %d", results, err, before, mem.writes)
	}
}

func TestRefusedBeforeAnyWrite(t *testing.T) {
	ctx := context.Background()
	p := pusher(t, vaultStore("vault", false), vaultStore("frozen", true),
		store("demo", configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Fake: &configv1alpha1.FakeProvider{}}}))
	data := externalsecrets.SecretPushSpec{Data: map[string][]byte{"key": []byte(value)}}
	cases := []struct {
		name   string
		ps     *configv1alpha1.PushSecret
		spec   externalsecrets.SecretPushSpec
		reason providers.Reason
		says   string
	}{
		{"read-only store", pushSecret("", []string{"vault", "frozen"}, [2]string{"key", "a"}), data, providers.Forbidden, "SecretStore ci/frozen is read-only (spec.readOnly)"},
		{"fake provider", pushSecret("", []string{"demo"}, [2]string{"key", "a"}), data, providers.Forbidden, "fake provider, which cannot be written to"},
		{"missing store", pushSecret("", []string{"vault", "nope"}, [2]string{"key", "a"}), data, providers.NotFound, `SecretStore "nope" does not exist`},
		{"missing key", pushSecret("", []string{"vault"}, [2]string{"key", "a"}, [2]string{"second", "b"}), data, providers.Invalid, `spec.data lacks "second"`},
		{"extra key", pushSecret("", []string{"vault"}, [2]string{"key", "a"}), externalsecrets.SecretPushSpec{Data: map[string][]byte{"key": nil, "smuggled": []byte(value)}}, providers.Invalid, `spec.data has "smuggled", which PushSecret ci/deploy-key does not map`},
		{"whole Secret not an object", pushSecret("", []string{"vault"}, [2]string{"", "a"}), externalsecrets.SecretPushSpec{Data: map[string][]byte{"": []byte(`"` + value + `"`)}}, providers.Invalid, `spec.data[""] (the whole Secret, for the entries without secretKey) must be a JSON object of string values`},
		{"whole Secret not strings", pushSecret("", []string{"vault"}, [2]string{"", "a"}), externalsecrets.SecretPushSpec{Data: map[string][]byte{"": []byte(`{"` + value + `":1}`)}}, providers.Invalid, "must be a JSON object of string values"},
		{"whole Secret too large", pushSecret("", []string{"vault"}, [2]string{"", "a"}), externalsecrets.SecretPushSpec{Data: map[string][]byte{"": []byte(`{"k":"` + strings.Repeat("x", 1<<20) + `"}`)}}, providers.Invalid, "more than the 1048576 (1 MiB)"},
		{"whole Secret missing", pushSecret("", []string{"vault"}, [2]string{"", "a"}, [2]string{"key", "b"}), data, providers.Invalid, `spec.data lacks ""`},
		{"delete with data", pushSecret("", []string{"vault"}, [2]string{"key", "a"}), externalsecrets.SecretPushSpec{Action: externalsecrets.SecretPushActionDelete, Data: data.Data}, providers.Invalid, "must not carry data"},
		{"unknown action", pushSecret("", []string{"vault"}, [2]string{"key", "a"}), externalsecrets.SecretPushSpec{Action: "Copy"}, providers.Invalid, `"Copy" is neither Push nor Delete`},
	}
	for _, c := range cases {
		before := len(mem.data)
		writes := mem.writes
		_, err := p.Push(ctx, c.ps, c.spec, false)
		if providers.ReasonOf(err) != c.reason || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %s saying %q", c.name, err, c.reason, c.says)
		}
		if strings.Contains(err.Error(), value) {
			t.Errorf("%s: the error carries the value", c.name)
		}
		if mem.writes != writes || len(mem.data) != before {
			t.Errorf("%s: something was written", c.name)
		}
	}
}

func TestOwnerIsThePushSecret(t *testing.T) {
	ctx := context.Background()
	p := pusher(t, vaultStore("vault", false))
	mine := pushSecret("", []string{"vault"}, [2]string{"key", "owned/one"})
	spec := externalsecrets.SecretPushSpec{Data: map[string][]byte{"key": []byte(value)}}
	if results, err := p.Push(ctx, mine, spec, false); err != nil || results[0].Result != esv1alpha1.SecretPushResultPushed || mem.owners["owned/one"] != "ps-uid" {
		t.Fatalf("first push: %+v, %v, owner %q", results, err, mem.owners["owned/one"])
	}

	// The same name after a delete and create is another PushSecret.
	again := mine.DeepCopy()
	again.UID = "another-uid"
	again.Spec.UpdatePolicy = configv1alpha1.PushSecretUpdatePolicyReplace
	writes := mem.writes
	for _, action := range []externalsecrets.SecretPushAction{externalsecrets.SecretPushActionPush, externalsecrets.SecretPushActionDelete} {
		s := spec
		if action == externalsecrets.SecretPushActionDelete {
			s = externalsecrets.SecretPushSpec{Action: action}
		}
		results, err := p.Push(ctx, again, s, false)
		if err != nil || results[0].Result != esv1alpha1.SecretPushResultNotOwner || results[0].Reason != "NotOwner" {
			t.Errorf("%s by another PushSecret: %+v, %v; want NotOwner", action, results, err)
		}
	}
	if mem.writes != writes || string(mem.data["owned/one"]) != value {
		t.Errorf("another PushSecret changed the key: writes %d -> %d", writes, mem.writes)
	}
	if results, err := p.Push(ctx, mine, externalsecrets.SecretPushSpec{Action: externalsecrets.SecretPushActionDelete}, false); err != nil || results[0].Result != esv1alpha1.SecretPushResultDeleted {
		t.Errorf("delete by the owner: %+v, %v", results, err)
	}
}

func TestKeyScopeRefusedBeforeAnyWrite(t *testing.T) {
	ctx := context.Background()
	css := &configv1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "shared", UID: "u-shared"},
		Spec: configv1alpha1.ClusterSecretStoreSpec{
			SecretStoreSpec: vaultStore("x", false).Spec,
			Conditions:      []configv1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{"ci"}, RemoteKeyPrefix: "teams/{namespace}/"}},
		}}
	p := pusher(t, css, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ci"}})
	ps := pushSecret("", nil, [2]string{"key", "teams/ci/ok"}, [2]string{"other", "teams/ci/../other/x"})
	ps.Spec.SecretStoreRefs = []configv1alpha1.SecretStoreRef{{Kind: configv1alpha1.ClusterSecretStoreKind, Name: "shared"}}
	spec := externalsecrets.SecretPushSpec{Data: map[string][]byte{"key": []byte(value), "other": []byte(value)}}
	for _, s := range []externalsecrets.SecretPushSpec{spec, {Action: externalsecrets.SecretPushActionDelete}} {
		writes, before := mem.writes, len(mem.data)
		for _, dryRun := range []bool{false, true} {
			_, err := p.Push(ctx, ps, s, dryRun)
			if providers.ReasonOf(err) != providers.Forbidden || !strings.Contains(err.Error(), `remote keys under "teams/ci/"`) {
				t.Errorf("%s (dry run %v): %v; want Forbidden naming the prefix", s.Action, dryRun, err)
			}
		}
		if mem.writes != writes || len(mem.data) != before {
			t.Errorf("%s: something was written", s.Action)
		}
	}
	ps.Spec.Data = ps.Spec.Data[:1]
	delete(spec.Data, "other")
	if results, err := p.Push(ctx, ps, spec, false); err != nil || results[0].Result != esv1alpha1.SecretPushResultPushed {
		t.Errorf("a key under the prefix: %+v, %v", results, err)
	}
}

// TestRemoteOnlyRefusesPushes: with --in-process-providers=false, a push
// through a store whose provider runs in process is refused as Invalid,
// saying what to change, and nothing is written.
func TestRemoteOnlyRefusesPushes(t *testing.T) {
	ctx := context.Background()
	p := pusher(t, vaultStore("vault", false))
	p.Stores.RemoteOnly = true
	before, writes := len(mem.data), mem.writes
	ps := pushSecret("", []string{"vault"}, [2]string{"key", "ci/remote-only"})
	for _, action := range []externalsecrets.SecretPushAction{"", externalsecrets.SecretPushActionDelete} {
		spec := externalsecrets.SecretPushSpec{Action: action}
		if action == "" {
			spec.Data = map[string][]byte{"key": []byte(value)}
		}
		results, err := p.Push(ctx, ps, spec, false)
		if providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), stores.RemoteOnlyMessage) {
			t.Errorf("%q through an in-process store: %+v, %v; want Invalid saying %q", action, results, err, stores.RemoteOnlyMessage)
		}
	}
	if mem.writes != writes || len(mem.data) != before {
		t.Error("something was written through an in-process store")
	}
}
