package persistence

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// The envelope: a fixed header, a random nonce, and the AES-256-GCM
// ciphertext of the MSAL JSON with the header as additional data.
//
//	offset  size  field
//	0       8     magic "MSALCENV"
//	8       1     format version (1)
//	9       8     key id: the first 8 bytes of SHA-256(key)
//	17      12    nonce
//	29      n+16  ciphertext of the n plaintext bytes, then the GCM tag
//
// There is no length field: the ciphertext runs to the end of the file, so no
// input can make the decoder allocate more than its own size.
const (
	envelopeVersion   = 1
	keyIDSize         = 8
	keySize           = 32
	nonceSize         = 12
	tagSize           = 16
	envelopeHeaderLen = len(envelopeMagic) + 1 + keyIDSize
	envelopeMinLen    = envelopeHeaderLen + nonceSize + tagSize
)

var envelopeMagic = [8]byte{'M', 'S', 'A', 'L', 'C', 'E', 'N', 'V'}

type keyID [keyIDSize]byte

// envelopeKey is a 256-bit key ready for use. It never leaves the process
// except as the keyring item it came from.
type envelopeKey struct {
	id   keyID
	aead cipher.AEAD
}

func newEnvelopeKey(raw []byte) (*envelopeKey, error) {
	if len(raw) != keySize {
		return nil, fmt.Errorf("key is %d bytes, want %d", len(raw), keySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	k := &envelopeKey{aead: aead}
	copy(k.id[:], sum[:keyIDSize])
	return k, nil
}

// seal returns the envelope of plaintext under k with a fresh random nonce.
func (k *envelopeKey) seal(plaintext []byte) []byte {
	out := make([]byte, envelopeHeaderLen+nonceSize, envelopeHeaderLen+nonceSize+len(plaintext)+tagSize)
	copy(out, envelopeMagic[:])
	out[len(envelopeMagic)] = envelopeVersion
	copy(out[len(envelopeMagic)+1:], k.id[:])
	nonce := out[envelopeHeaderLen:]
	// crypto/rand.Read never fails (it crashes the program instead).
	_, _ = rand.Read(nonce)
	return k.aead.Seal(out, nonce, plaintext, out[:envelopeHeaderLen])
}

// envelope is a parsed but not yet authenticated envelope; its slices alias
// the input.
type envelope struct {
	header     []byte
	keyID      keyID
	nonce      []byte
	ciphertext []byte
}

// parseEnvelope splits b into its parts. Errors wrap ErrCorrupt.
func parseEnvelope(b []byte) (envelope, error) {
	if !bytes.HasPrefix(b, envelopeMagic[:]) {
		return envelope{}, fmt.Errorf("%w: not an msalcache envelope (no %q header)", ErrCorrupt, envelopeMagic[:])
	}
	if len(b) > len(envelopeMagic) && b[len(envelopeMagic)] != envelopeVersion {
		return envelope{}, fmt.Errorf("%w: envelope format version %d is not supported by this version of msalcache (it reads version %d); upgrade msalcache",
			ErrCorrupt, b[len(envelopeMagic)], envelopeVersion)
	}
	if len(b) < envelopeMinLen {
		return envelope{}, fmt.Errorf("%w: envelope truncated to %d bytes (at least %d expected)", ErrCorrupt, len(b), envelopeMinLen)
	}
	e := envelope{
		header:     b[:envelopeHeaderLen],
		nonce:      b[envelopeHeaderLen : envelopeHeaderLen+nonceSize],
		ciphertext: b[envelopeHeaderLen+nonceSize:],
	}
	copy(e.keyID[:], b[len(envelopeMagic)+1:envelopeHeaderLen])
	return e, nil
}

// open authenticates and decrypts e with k, which must have e's key id.
func (k *envelopeKey) open(e envelope) ([]byte, error) { return k.openTo(nil, e) }

// openTo is open that appends the plaintext to dst; dst may be
// e.ciphertext[:0] to decrypt in place.
func (k *envelopeKey) openTo(dst []byte, e envelope) ([]byte, error) {
	if k.id != e.keyID {
		return nil, fmt.Errorf("%w: the file was encrypted with another key (key id %x, the keyring holds %x)", ErrCorrupt, e.keyID, k.id)
	}
	pt, err := k.aead.Open(dst, e.nonce, e.ciphertext, e.header)
	if err != nil {
		return nil, fmt.Errorf("%w: the envelope does not authenticate (tampered or damaged)", ErrCorrupt)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}
