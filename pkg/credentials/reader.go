// Package credentials reads what stores refer to — Secrets, ConfigMaps and
// ServiceAccount tokens — on demand, never through a cluster-wide informer,
// and only from the namespace of the store that refers to them.
package credentials

import (
	"context"
	"crypto/rand"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
	"github.com/veil-dev/veil/pkg/providers"
)

// Reader gets Secrets and ConfigMaps with a short cache, so a burst of reads
// through one store costs one GET, and a rotated credential is seen within
// TTL.
type Reader struct {
	client kubernetes.Interface
	ttl    time.Duration
	clock  clock.PassiveClock

	mu      sync.Mutex
	objects map[objectKey]cached
	// fingerprintKey keys the HMAC of credentials; it never leaves memory.
	fingerprintKey []byte
	// refuse, when set, is why this Reader reads nothing (NewRefusing).
	refuse string
}

type objectKey struct{ kind, namespace, name string }

type cached struct {
	data    map[string][]byte // nil when the object does not exist
	fetched time.Time
}

// NewReader returns a Reader caching objects for ttl (0 disables the cache).
func NewReader(client kubernetes.Interface, ttl time.Duration) *Reader {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return &Reader{client: client, ttl: ttl, clock: clock.RealClock{}, objects: map[objectKey]cached{}, fingerprintKey: key}
}

// NewRefusing returns a Reader that never reaches kube-apiserver: every
// read and token request fails as Forbidden with why. veil-apiserver run
// with --in-process-providers=false uses it, so that even a store that got
// past stores.Lookup could not make it read a credential or mint a token.
func NewRefusing(why string) *Reader {
	r := NewReader(nil, 0)
	r.refuse = why
	return r
}

func (r *Reader) get(ctx context.Context, k objectKey) (map[string][]byte, error) {
	if r.refuse != "" {
		return nil, providers.Errorf(providers.Forbidden, "reading %s %s/%s: %s", k.kind, k.namespace, k.name, r.refuse)
	}
	now := r.clock.Now()
	r.mu.Lock()
	c, ok := r.objects[k]
	r.mu.Unlock()
	if ok && now.Sub(c.fetched) < r.ttl {
		return c.data, nil
	}
	var data map[string][]byte
	var err error
	switch k.kind {
	case "Secret":
		var s *corev1.Secret
		if s, err = r.client.CoreV1().Secrets(k.namespace).Get(ctx, k.name, metav1.GetOptions{}); err == nil {
			data = s.Data
		}
	case "ConfigMap":
		var cm *corev1.ConfigMap
		if cm, err = r.client.CoreV1().ConfigMaps(k.namespace).Get(ctx, k.name, metav1.GetOptions{}); err == nil {
			data = make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
			for key, v := range cm.Data {
				data[key] = []byte(v)
			}
			for key, v := range cm.BinaryData {
				data[key] = v
			}
		}
	}
	if apierrors.IsNotFound(err) {
		data, err = nil, nil
	}
	if err != nil {
		return nil, providers.Wrap(providers.Unavailable, err, "reading %s %s/%s", k.kind, k.namespace, k.name)
	}
	if r.ttl > 0 {
		r.mu.Lock()
		r.objects[k] = cached{data: data, fetched: now}
		r.mu.Unlock()
	}
	return data, nil
}

// ForStore returns the Credentials a provider uses to build a client for
// store, confined to the store's namespace, and recording what it read.
func (r *Reader) ForStore(store *providers.Store) *Recorder {
	return &Recorder{reader: r, store: store}
}

// namespaceFor applies Veil's rule: a SecretStore's credentials are in its
// own namespace, and it may not name another; a ClusterSecretStore, which
// has no namespace, must name one.
func namespaceFor(store *providers.Store, what string, ns *string) (string, error) {
	if store.Kind == configv1alpha1.ClusterSecretStoreKind {
		if ns == nil || *ns == "" {
			return "", providers.Errorf(providers.Invalid, "%s: %s must set namespace, because a ClusterSecretStore has none of its own", store, what)
		}
		return *ns, nil
	}
	if ns != nil && *ns != "" && *ns != store.Namespace {
		return "", providers.Errorf(providers.Forbidden, "%s: %s is in namespace %q, but a SecretStore may only use credentials of its own namespace %q", store, what, *ns, store.Namespace)
	}
	return store.Namespace, nil
}

func tokenRequest(ctx context.Context, client kubernetes.Interface, ns, name string, audiences []string, expirationSeconds int64) (string, error) {
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         audiences,
		ExpirationSeconds: &expirationSeconds,
	}}
	out, err := client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, tr, metav1.CreateOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", providers.Errorf(providers.Invalid, "ServiceAccount %s/%s does not exist", ns, name)
	case err != nil:
		return "", providers.Wrap(providers.Unavailable, err, "requesting a token for ServiceAccount %s/%s", ns, name)
	}
	return out.Status.Token, nil
}

func keyOf(data map[string][]byte, kind, ns, name, key string) ([]byte, error) {
	if data == nil {
		return nil, providers.Errorf(providers.Invalid, "%s %s/%s does not exist", kind, ns, name)
	}
	v, ok := data[key]
	if !ok {
		return nil, providers.Errorf(providers.Invalid, "%s %s/%s has no key %q", kind, ns, name, key)
	}
	return v, nil
}
