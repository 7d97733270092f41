package cache

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// sealingKey is one generation of the cache's AES-256-GCM key. The raw key
// bytes are wiped once the cipher is built, and no field is ever formatted
// or logged: the key exists only inside the cipher, in this process.
type sealingKey struct {
	aead    cipher.AEAD
	gen     uint64
	created time.Time
}

func newSealingKey(gen uint64, now time.Time) *sealingKey {
	raw := make([]byte, 32)
	// crypto/rand.Read never returns an error; aes.NewCipher accepts any
	// 32-byte key, and a random-nonce GCM accepts any AES cipher. None of
	// these can fail, so a failure is a broken runtime.
	_, _ = rand.Read(raw)
	block, err := aes.NewCipher(raw)
	clear(raw)
	if err != nil {
		panic(err)
	}
	// A fresh random 96-bit nonce per seal, prepended to the ciphertext:
	// entries are written far fewer than the 2^32 times per key at which
	// random nonces become a concern, and rotation starts a new key anyway.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		panic(err)
	}
	return &sealingKey{aead: aead, gen: gen, created: now}
}

// seal encrypts plaintext with key as associated data, so the result opens
// only under the cache key it was stored under.
func (k *sealingKey) seal(plaintext []byte, key Key) []byte {
	return k.aead.Seal(nil, nil, plaintext, []byte(key))
}

// open reverses seal; it fails for a ciphertext that was altered, sealed
// under another cache key, or sealed under another generation's key.
func (k *sealingKey) open(sealed []byte, key Key) ([]byte, error) {
	return k.aead.Open(nil, nil, sealed, []byte(key))
}

// keyring hands out the current sealing key and replaces it once it is
// older than the rotation interval. Rotation is checked on use rather than
// by a timer, so an idle cache does no work and tests can drive it with a
// fake clock. The previous key is dropped at once: entries sealed under it
// can no longer be opened and become misses.
type keyring struct {
	clock    clock.PassiveClock
	rotation time.Duration // 0: never

	mu  sync.Mutex // serialises rotation
	cur atomic.Pointer[sealingKey]
}

func newKeyring(c clock.PassiveClock, rotation time.Duration) *keyring {
	r := &keyring{clock: c, rotation: rotation}
	r.cur.Store(newSealingKey(1, c.Now()))
	return r
}

func (r *keyring) current() *sealingKey {
	k := r.cur.Load()
	if !r.due(k) {
		return k
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if k = r.cur.Load(); r.due(k) {
		k = newSealingKey(k.gen+1, r.clock.Now())
		r.cur.Store(k)
	}
	return k
}

func (r *keyring) due(k *sealingKey) bool {
	return r.rotation > 0 && r.clock.Since(k.created) >= r.rotation
}
