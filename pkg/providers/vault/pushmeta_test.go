package vault

import (
	"fmt"
	"strings"
	"testing"

	esv1alpha1 "github.com/veil-dev/veil/pkg/apis/externalsecrets/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

func pushMetadata(spec string) []byte {
	return []byte(`{"apiVersion":"kubernetes.external-secrets.io/v1alpha1","kind":"PushSecretMetadata","spec":` + spec + `}`)
}

// TestPushCustomMetadata: customMetadata reaches the key's custom_metadata
// on real Vault beside Veil's owner marks, a change of it alone is written,
// and what is not Vault's or would pass as Veil's mark is refused before
// anything is written.
func TestPushCustomMetadata(t *testing.T) {
	ctx := ctxFor(t)
	mount := unique(t)
	if err := server.EnableKV(ctx, mount, 2); err != nil {
		t.Fatal(err)
	}
	_, sec := tokenFor(t, fmt.Sprintf(`path "%s/*" { capabilities = ["create", "read", "update", "delete", "list"] }`, mount))
	spec := httpsSpec(tokenAuth())
	spec.Path = &mount
	c := newFixture(t, sec).mustClient(spec)
	value := []byte(`{"a":"b"}`)

	push := func(meta []byte, want string) {
		t.Helper()
		got, err := c.Push(ctx, providers.Push{Key: "meta", Value: value, Owner: owner, Metadata: meta})
		if err != nil || got != want {
			t.Fatalf("push: %s %v, want %s", got, err, want)
		}
	}
	push(pushMetadata(`{"customMetadata":{"team":"a","env":"prod"}}`), esv1alpha1.SecretPushResultPushed)
	m, err := c.metadata(ctx, "meta")
	if err != nil || m.custom["team"] != "a" || m.custom["env"] != "prod" || !m.ownedBy(owner) {
		t.Fatalf("custom_metadata %v, %v", m, err)
	}
	push(pushMetadata(`{"customMetadata":{"team":"a","env":"prod"}}`), esv1alpha1.SecretPushResultUnchanged)
	push(pushMetadata(`{"customMetadata":{"team":"b"}}`), esv1alpha1.SecretPushResultPushed)
	if m, _ = c.metadata(ctx, "meta"); m.custom["team"] != "b" || !m.ownedBy(owner) {
		t.Errorf("after a change: %v", m.custom)
	}

	for _, tc := range []struct{ meta, says string }{
		{`{"customMetadata":{"veil.dev/owner-uid":"x"}}`, "is Veil's own"},
		{`{"customMetadata":{"managed-by":"external-secrets"}}`, "is Veil's own"},
		{`{"customMetadata":{"k":"` + strings.Repeat("v", 513) + `"}}`, "more than 512"},
		{`{"tags":{"a":"b"}}`, `unknown field "tags"`},
	} {
		_, err := c.Push(ctx, providers.Push{Key: "refused", Value: value, Owner: owner, Metadata: pushMetadata(tc.meta)})
		if providers.ReasonOf(err) != providers.Invalid || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want Invalid saying %q", tc.meta, err, tc.says)
		}
	}
	if m, err := c.metadata(ctx, "refused"); err != nil || m != nil {
		t.Errorf("a refused push wrote metadata: %v %v", m, err)
	}
}
