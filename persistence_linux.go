package msalcache

import "github.com/msalcache/msalcache/persistence"

// platformProtector: on Linux, a key held by the Secret Service (gnome-keyring,
// KeePassXC, ...) on the user's session bus, and AES-256-GCM in the file.
func platformProtector(cfg *config) (persistence.Protector, error) {
	return persistence.Keyring("secret-service", cfg.service, cfg.account), nil
}
