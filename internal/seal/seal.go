// Package seal encrypts and authenticates small blobs with AES-256-GCM,
// bound to additional data (for the distributed cache: the store key, so
// that a blob copied to another key does not open). A Keys holds one or more
// keys: the first seals, every one opens (key rotation).
//
// A sealed blob is:
//
//	offset  size  field
//	0       1     format version (1)
//	1       8     key id: the first 8 bytes of SHA-256(key)
//	9       12    nonce (random)
//	21      n+16  ciphertext of the n plaintext bytes, then the GCM tag
//
// The version byte and key id are authenticated too (they are part of the
// additional data given to GCM).
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

const (
	version   = 1
	keySize   = 32
	idSize    = 8
	nonceSize = 12
	tagSize   = 16
	headerLen = 1 + idSize
	// Overhead is how many bytes Seal adds to the plaintext.
	Overhead = headerLen + nonceSize + tagSize
)

// ErrOpen is returned by Open for a blob that is not sealed by one of the
// keys with the given additional data: tampered, truncated, moved to another
// store key, or sealed with a key that is not configured.
var ErrOpen = errors.New("seal: the blob does not open with the configured keys")

// ErrUnknownKey is returned by Open (wrapped with ErrOpen) for a blob
// sealed with a key that is not configured: another holder of the right
// key can open it, so it is not damaged.
var ErrUnknownKey = errors.New("sealed with a key that is not configured")

type key struct {
	id   [idSize]byte
	aead cipher.AEAD
}

// Keys is a list of AES-256 keys. It is safe for concurrent use.
type Keys struct {
	keys []key // keys[0] seals
}

// New returns Keys for the given 32-byte keys; the first one seals. It
// returns an error for no key, a key of another size, or a key given twice.
func New(raw ...[]byte) (*Keys, error) {
	if len(raw) == 0 {
		return nil, errors.New("seal: no key")
	}
	k := &Keys{}
	for i, r := range raw {
		if len(r) != keySize {
			return nil, fmt.Errorf("seal: key %d is %d bytes, want %d (AES-256)", i, len(r), keySize)
		}
		block, err := aes.NewCipher(r)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i, err)
		}
		sum := sha256.Sum256(r)
		kk := key{aead: aead}
		copy(kk.id[:], sum[:idSize])
		for j, other := range k.keys {
			if other.id == kk.id {
				return nil, fmt.Errorf("seal: key %d repeats key %d", i, j)
			}
		}
		k.keys = append(k.keys, kk)
	}
	return k, nil
}

// Seal returns plaintext encrypted and authenticated with the first key and
// bound to ad, with a fresh random nonce.
func (k *Keys) Seal(plaintext, ad []byte) []byte {
	kk := &k.keys[0]
	out := make([]byte, headerLen+nonceSize, Overhead+len(plaintext))
	out[0] = version
	copy(out[1:], kk.id[:])
	nonce := out[headerLen:]
	// crypto/rand.Read never fails (it crashes the program instead).
	_, _ = rand.Read(nonce)
	return kk.aead.Seal(out, nonce, plaintext, additional(out[:headerLen], ad))
}

// Open returns the plaintext of a blob made by Seal with one of the keys and
// the same ad. Errors wrap ErrOpen and never include the blob.
func (k *Keys) Open(blob, ad []byte) ([]byte, error) {
	if len(blob) < Overhead {
		return nil, fmt.Errorf("%w: %d bytes is too short for a sealed blob", ErrOpen, len(blob))
	}
	if blob[0] != version {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrOpen, blob[0])
	}
	var id [idSize]byte
	copy(id[:], blob[1:headerLen])
	for i := range k.keys {
		kk := &k.keys[i]
		if kk.id != id {
			continue
		}
		pt, err := kk.aead.Open(nil, blob[headerLen:headerLen+nonceSize], blob[headerLen+nonceSize:], additional(blob[:headerLen], ad))
		if err != nil {
			return nil, fmt.Errorf("%w: authentication failed (tampered, or sealed for another store key)", ErrOpen)
		}
		if pt == nil {
			pt = []byte{}
		}
		return pt, nil
	}
	return nil, fmt.Errorf("%w: %w (key id %x)", ErrOpen, ErrUnknownKey, id)
}

// KeyID reports whether blob has the form of a sealed blob (this format's
// version byte, and long enough), and the id of the key that sealed it (the
// first 8 bytes of SHA-256 of the key: it names the key, it does not reveal
// it). It does not check that blob opens.
func KeyID(blob []byte) (id [idSize]byte, ok bool) {
	if len(blob) < Overhead || blob[0] != version {
		return id, false
	}
	return [idSize]byte(blob[1:headerLen]), true
}

// SealedWithFirst reports whether blob names the first key as the one that
// sealed it (key rotation: a blob that opens but is not sealed with the
// first key is due to be sealed again). It does not check that blob opens.
func (k *Keys) SealedWithFirst(blob []byte) bool {
	return len(blob) >= headerLen && blob[0] == version && [idSize]byte(blob[1:headerLen]) == k.keys[0].id
}

// additional is the header followed by ad: both are authenticated.
func additional(header, ad []byte) []byte {
	b := make([]byte, 0, len(header)+len(ad))
	return append(append(b, header...), ad...)
}
