package credentials

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
	"sync"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// Recorder is the Credentials of one store. It records every credential a
// provider reads, so the credential can be fingerprinted again later: a
// rotated Secret gives a new fingerprint, hence a new store identity, a new
// client and new cache keys.
type Recorder struct {
	reader *Reader
	store  *providers.Store

	mu   sync.Mutex
	used map[use]bool
}

// use is one credential read: a key of a Secret or ConfigMap, or the
// identity (never the token) of a ServiceAccount.
type use struct {
	kind, namespace, name, key string
}

var _ providers.Credentials = &Recorder{}

func (r *Recorder) record(u use) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.used == nil {
		r.used = map[use]bool{}
	}
	r.used[u] = true
}

func (r *Recorder) SecretKey(ctx context.Context, sel configv1alpha1.SecretKeySelector) ([]byte, error) {
	ns, err := namespaceFor(r.store, "Secret "+sel.Name, sel.Namespace)
	if err != nil {
		return nil, err
	}
	return r.read(ctx, use{"Secret", ns, sel.Name, sel.Key})
}

func (r *Recorder) ConfigMapKey(ctx context.Context, name, key string, namespace *string) ([]byte, error) {
	ns, err := namespaceFor(r.store, "ConfigMap "+name, namespace)
	if err != nil {
		return nil, err
	}
	return r.read(ctx, use{"ConfigMap", ns, name, key})
}

func (r *Recorder) read(ctx context.Context, u use) ([]byte, error) {
	data, err := r.reader.get(ctx, objectKey{u.kind, u.namespace, u.name})
	if err != nil {
		return nil, err
	}
	v, err := keyOf(data, u.kind, u.namespace, u.name, u.key)
	if err != nil {
		return nil, err
	}
	r.record(u)
	return v, nil
}

func (r *Recorder) ServiceAccountToken(ctx context.Context, sel configv1alpha1.ServiceAccountSelector, expirationSeconds int64) (string, error) {
	ns, err := namespaceFor(r.store, "ServiceAccount "+sel.Name, sel.Namespace)
	if err != nil {
		return "", err
	}
	if r.reader.refuse != "" {
		return "", providers.Errorf(providers.Forbidden, "requesting a token for ServiceAccount %s/%s: %s", ns, sel.Name, r.reader.refuse)
	}
	token, err := tokenRequest(ctx, r.reader.client, ns, sel.Name, sel.Audiences, expirationSeconds)
	if err != nil {
		return "", err
	}
	r.record(use{"ServiceAccount", ns, sel.Name, strings.Join(sel.Audiences, ",")})
	return token, nil
}

// Fingerprint is an HMAC of every credential recorded so far, re-read
// through the reader's cache. It is empty for a store that uses none.
func (r *Recorder) Fingerprint(ctx context.Context) (string, error) {
	r.mu.Lock()
	uses := make([]use, 0, len(r.used))
	for u := range r.used {
		uses = append(uses, u)
	}
	r.mu.Unlock()
	if len(uses) == 0 {
		return "", nil
	}
	slices.SortFunc(uses, func(a, b use) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.namespace, b.namespace),
			cmp.Compare(a.name, b.name), cmp.Compare(a.key, b.key))
	})
	mac := hmac.New(sha256.New, r.reader.fingerprintKey)
	field := func(b []byte) { // length-prefixed, so fields cannot run into each other
		mac.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		mac.Write(b)
	}
	for _, u := range uses {
		for _, s := range []string{u.kind, u.namespace, u.name, u.key} {
			field([]byte(s))
		}
		if u.kind == "ServiceAccount" {
			continue
		}
		data, err := r.reader.get(ctx, objectKey{u.kind, u.namespace, u.name})
		if err != nil {
			return "", err
		}
		// A credential that disappeared also changes the identity.
		v, ok := data[u.key]
		field([]byte{map[bool]byte{false: 0, true: 1}[ok]})
		field(v)
	}
	return hex.EncodeToString(mac.Sum(nil)[:16]), nil
}
