// Package appkey derives examples/web-app's keys from its secret keys, one
// key a purpose, so that one key never serves two purposes. The web app
// uses it; distributed/loadtest, which reads the web app's token cache from
// Redis directly, derives the same token-cache key with it.
package appkey

import (
	"crypto/hkdf"
	"crypto/sha256"
)

// Purposes of the keys derived from the app's keys.
const (
	Cookies = "msalcache web-app: cookies"
	Records = "msalcache web-app: session records"
	Tokens  = "msalcache web-app: token cache"
)

// Derive derives a 32-byte key for purpose from each of the app's keys
// with HKDF-SHA256.
func Derive(appKeys [][]byte, purpose string) [][]byte {
	var out [][]byte
	for _, k := range appKeys {
		d, err := hkdf.Key(sha256.New, k, nil, purpose, 32)
		if err != nil {
			panic(err) // only for a length HKDF-SHA256 cannot produce; 32 is fine
		}
		out = append(out, d)
	}
	return out
}
