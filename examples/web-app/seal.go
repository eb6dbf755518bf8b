package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"

	"github.com/msalcache/msalcache/internal/appkey"
	"github.com/msalcache/msalcache/internal/seal"
)

// Purposes of the keys derived from the app's key: one key never serves
// two purposes.
const (
	purposeCookies = appkey.Cookies
	purposeRecords = appkey.Records
	purposeTokens  = appkey.Tokens
)

// errUnsealed is returned for a sealed value that does not open: tampered
// with, sealed with another key, or meant for another purpose.
var errUnsealed = errors.New("not sealed by this app")

// A sealer seals small values (JSON) with the keys derived for one purpose
// from the app's keys: the first seals, every one opens (key rotation). The
// additional data binds a sealed value to what it is for (a cookie's name, a
// record's store key), so that one cannot be replayed as another.
type sealer struct {
	keys *seal.Keys
}

// newSealer derives the keys for purpose from the app's keys.
func newSealer(appKeys [][]byte, purpose string) (*sealer, error) {
	k, err := seal.New(appkey.Derive(appKeys, purpose)...)
	if err != nil {
		return nil, err
	}
	return &sealer{k}, nil
}

// seal returns v as JSON, encrypted and authenticated, in base64url.
func (s *sealer) seal(ad string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(s.keys.Seal(plain, []byte(ad))), nil
}

// open reverses seal into v; it returns errUnsealed for anything that was
// not sealed by seal with one of the keys and the same additional data.
func (s *sealer) open(ad, sealed string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil {
		return errUnsealed
	}
	plain, err := s.keys.Open(raw, []byte(ad))
	if err != nil {
		return errUnsealed
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return errUnsealed
	}
	return nil
}

// randomKey returns a new random 32-byte key.
func randomKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// randomString returns n random bytes in base64url.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
