package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/test/conformance"
	"github.com/veil-dev/veil/test/conformance/remotetest"
)

// TestConformance runs the provider conformance suite against a KV v2 and
// a KV v1 mount of the package's Vault server, each read with a token
// whose policy grants the mount.
func TestConformance(t *testing.T) {
	t.Run("KVv2", func(t *testing.T) { conformance.Run(t, newConformanceFixture(t, 2)) })
	t.Run("KVv1", func(t *testing.T) { conformance.Run(t, newConformanceFixture(t, 1)) })
}

// TestConformanceRemote runs the suite against the same mounts served out
// of process, by veil-provider over gRPC with mutual TLS; the provider
// process holds the Vault token, veil-apiserver's side none.
func TestConformanceRemote(t *testing.T) {
	t.Run("KVv2", func(t *testing.T) { remotetest.Run(t, newConformanceFixture(t, 2)) })
	t.Run("KVv1", func(t *testing.T) { remotetest.Run(t, newConformanceFixture(t, 1)) })
}

type conformanceFixture struct {
	mount   string
	version int
	token   string
}

func newConformanceFixture(t *testing.T, version int) *conformanceFixture {
	ctx := ctxFor(t)
	f := &conformanceFixture{mount: unique(t), version: version}
	if err := server.EnableKV(ctx, f.mount, version); err != nil {
		t.Fatal(err)
	}
	f.token = conformanceToken(t, f.mount+"-rw", fmt.Sprintf(`path "%s/*" { capabilities = ["create", "read", "update", "delete", "list"] }`, f.mount))
	return f
}

// conformanceToken creates a policy granting rules and a token with it.
func conformanceToken(t *testing.T, policy, rules string) string {
	t.Helper()
	ctx := ctxFor(t)
	if err := server.Policy(ctx, policy, rules); err != nil {
		t.Fatal(err)
	}
	tok, err := server.Token(ctx, time.Hour, policy)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *conformanceFixture) Info() conformance.Info {
	info := conformance.Info{
		MissingVersion: "999",
		KeepsData:      true, // raft storage: values and tokens survive a restart
		Unsupported: map[conformance.Capability]string{
			conformance.ChangeStream: "Vault tells no one of writes: its changes are found by Versions (KV v2 metadata, a keyed hash of a KV v1 value)",
			conformance.RawValues:    "Vault KV holds JSON objects of fields, which Get returns encoded again",
			conformance.BatchGet:     "Vault has no call that reads several secrets",
		},
	}
	if f.version == 1 {
		v1 := "a KV v1 mount has no metadata: no versions, no tags, and no custom metadata to record an owner in, so Veil does not push to it"
		info.MissingVersion = ""
		info.Unsupported[conformance.Versions] = "a KV v1 mount keeps one value per key"
		info.Unsupported[conformance.Tags] = v1
		info.Unsupported[conformance.Push] = v1
		info.Unsupported[conformance.PushProperty] = v1
		info.Unsupported[conformance.Delete] = v1
	}
	return info
}

func (f *conformanceFixture) store(secret string) conformance.Store {
	spec := configv1alpha1.VaultProvider{Server: server.HTTPSURL, CABundle: server.CA.CertPEM, Path: &f.mount,
		Version: configv1alpha1.VaultKVv2, Auth: configv1alpha1.VaultAuth{TokenSecretRef: ref("vault-token", "token")}}
	if f.version == 1 {
		spec.Version = configv1alpha1.VaultKVv1
	}
	return conformance.Store{
		Spec: configv1alpha1.SecretStoreSpec{Provider: configv1alpha1.SecretStoreProvider{Vault: &spec}},
		Objects: []runtime.Object{&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: conformance.Namespace, Name: "vault-token"},
			Data:       map[string][]byte{"token": []byte(secret)},
		}},
	}
}

func (f *conformanceFixture) Store(*testing.T) conformance.Store { return f.store(f.token) }

func (f *conformanceFixture) Seed(t *testing.T, key string, value []byte) string {
	t.Helper()
	var fields map[string]any
	if err := json.Unmarshal(value, &fields); err != nil {
		t.Fatalf("seeding %s: Vault KV holds JSON objects", key)
	}
	if f.version == 1 {
		if err := server.PutKVv1(ctxFor(t), f.mount, key, fields); err != nil {
			t.Fatal(err)
		}
		return ""
	}
	v, err := server.PutKV(ctxFor(t), f.mount, key, fields)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(v)
}

func (f *conformanceFixture) Tag(t *testing.T, key string, tags map[string]string) {
	t.Helper()
	if err := server.TagKV(ctxFor(t), f.mount, key, tags); err != nil {
		t.Fatal(err)
	}
}

// Denied is the store with a token whose policy grants another mount only.
func (f *conformanceFixture) Denied(t *testing.T, key string) (conformance.Store, []string) {
	tok := conformanceToken(t, f.mount+"-denied", `path "secret/*" { capabilities = ["read", "list"] }`)
	return f.store(tok), []string{tok}
}

// Outage stops the package's Vault server; restore starts and unseals it
// again on the same ports.
func (f *conformanceFixture) Outage(t *testing.T) func() {
	server.Stop()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := server.Restart(ctx); err != nil {
			t.Fatalf("restarting Vault: %v", err)
		}
	}
}

// Logs is Vault's audit log, which records every request and response
// with their values HMAC'd: a canary seen there left Vault's hashing, in
// a path or a field Vault does not hash.
func (f *conformanceFixture) Logs(t *testing.T) []byte {
	b, err := os.ReadFile(server.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
