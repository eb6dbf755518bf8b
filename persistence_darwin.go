package msalcache

import "github.com/msalcache/msalcache/persistence"

// platformProtector: on macOS, a key held by the login Keychain, and
// AES-256-GCM in the file.
func platformProtector(cfg *config) (persistence.Protector, error) {
	return persistence.Keyring("keychain", cfg.service, cfg.account), nil
}
