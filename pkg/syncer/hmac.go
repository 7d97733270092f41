package syncer

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/utils/ptr"

	configv1alpha1 "github.com/veil-dev/veil/pkg/apis/config/v1alpha1"
)

// HMACKeySecret is the Secret, in the syncer's namespace, holding the key of
// the data HMACs. Its name is fixed because the Role in artifacts/ grants
// get on it, and on no other Secret, by name.
const HMACKeySecret = "veil-syncer-hmac-key"

const hmacKeyField = "key"

// loadHMACKey reads the HMAC key, creating it on the first start. Replicas
// starting together may both try to create it; the one that loses reads the
// other's.
func loadHMACKey(ctx context.Context, secrets corev1client.SecretInterface, namespace string) ([]byte, error) {
	for range 2 {
		s, err := secrets.Get(ctx, HMACKeySecret, metav1.GetOptions{})
		if err == nil {
			key := s.Data[hmacKeyField]
			if len(key) != sha256.Size {
				return nil, fmt.Errorf("Secret %s/%s does not hold a %d-byte %q: delete it and veil-syncer creates a new key "+
					"(every target is then rewritten once and its rollout restart targets restarted)", namespace, HMACKeySecret, sha256.Size, hmacKeyField)
			}
			return key, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading the HMAC key Secret %s/%s: %w", namespace, HMACKeySecret, err)
		}
		key := make([]byte, sha256.Size)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: HMACKeySecret, Labels: map[string]string{"app.kubernetes.io/part-of": "veil"}},
			// Replacing the key would make every HMAC change at once.
			Immutable: ptr.To(true),
			Data:      map[string][]byte{hmacKeyField: key},
		}, metav1.CreateOptions{FieldManager: fieldManager})
		if err == nil {
			return key, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating the HMAC key Secret %s/%s: %w", namespace, HMACKeySecret, err)
		}
	}
	return nil, fmt.Errorf("the HMAC key Secret %s/%s was created and deleted while veil-syncer was reading it", namespace, HMACKeySecret)
}

// dataHMAC is an HMAC-SHA256 of the data veil-syncer writes for an
// ExternalSecret. It is bound to the ExternalSecret (namespace, name, UID):
// status.dataHMAC is readable by anyone who may view the ExternalSecret,
// and the key is shared by every namespace, so an HMAC of the data alone
// would let an author of an ExternalSecret elsewhere confirm a guess at
// these values by making the syncer compute the HMAC of the guess.
func dataHMAC(key []byte, es *configv1alpha1.ExternalSecret, data map[string][]byte) string {
	mac := hmac.New(sha256.New, key)
	writeOwner(mac, "ExternalSecret", es)
	writeData(mac, data)
	return hex.EncodeToString(mac.Sum(nil))
}

// templateEncodingKey is the key of the template functions that draw salts
// (the *ToPkcs12 functions): derived from the HMAC key, so every replica
// draws the same salts for the same inputs and a refresh with unchanged
// values renders the same archive, rather than new salts rewriting the
// Secret and restarting its rollout targets at every refresh. The label
// keeps it apart from every HMAC here, which all start with a length
// prefix.
func templateEncodingKey(key []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("veil-syncer template encoding key v1"))
	return mac.Sum(nil)
}

// pushHMAC is an HMAC-SHA256 of what a PushSecret pushes and where to: its
// stores, update policy and mapping, and the values. The status keeps it
// instead of the values, so that the next sync can tell that nothing
// changed without a SecretPush and without anyone learning the values from
// it. It is bound to the PushSecret for the reason dataHMAC is.
func pushHMAC(key []byte, ps *configv1alpha1.PushSecret, data map[string][]byte) string {
	mac := hmac.New(sha256.New, key)
	// The kind is a domain of its own: no PushSecret's HMAC can equal the
	// data HMAC of an ExternalSecret, even for the same values.
	writeOwner(mac, "PushSecret", ps)
	spec := &ps.Spec
	writeCount(mac, len(spec.SecretStoreRefs))
	for _, s := range spec.SecretStoreRefs {
		writeField(mac, []byte(s.Kind))
		writeField(mac, []byte(s.Name))
	}
	writeField(mac, []byte(spec.UpdatePolicy))
	writeCount(mac, len(spec.Data))
	for _, d := range spec.Data {
		writeField(mac, []byte(d.Match.SecretKey))
		writeField(mac, []byte(d.Match.RemoteRef.RemoteKey))
		writeField(mac, []byte(d.Match.RemoteRef.Property))
	}
	// Metadata goes with each key; written only when some is set, so the
	// HMACs of PushSecrets without it are what they were.
	if slices.ContainsFunc(spec.Data, func(d configv1alpha1.PushSecretData) bool { return d.Metadata != nil }) {
		for _, d := range spec.Data {
			if d.Metadata != nil {
				writeField(mac, d.Metadata.Raw)
			} else {
				writeField(mac, nil)
			}
		}
	}
	// dataTo decides where each key goes; written only when set, so the
	// HMACs of PushSecrets without it are what they were.
	if len(spec.DataTo) > 0 {
		b, _ := json.Marshal(spec.DataTo)
		writeField(mac, b)
	}
	writeData(mac, data)
	return hex.EncodeToString(mac.Sum(nil))
}

// writeOwner writes the kind and identity of the object an HMAC is for. The
// UID keeps an object deleted and created again under the same name from
// matching what was computed for its predecessor.
func writeOwner(h hash.Hash, kind string, obj metav1.Object) {
	for _, f := range []string{kind, obj.GetNamespace(), obj.GetName(), string(obj.GetUID())} {
		writeField(h, []byte(f))
	}
}

// writeData writes a map in key order. It needs no count as long as it is
// the last thing written.
func writeData(h hash.Hash, data map[string][]byte) {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		writeField(h, []byte(k))
		writeField(h, data[k])
	}
}

func writeField(h hash.Hash, b []byte) {
	writeCount(h, len(b))
	h.Write(b)
}

func writeCount(h hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}
