package msalcache

import (
	"log/slog"
	"time"

	"github.com/msalcache/msalcache/persistence"
)

// An Option configures New. The set is closed: use the With functions.
type Option interface {
	apply(*config)
}

type config struct {
	plaintext         bool
	plaintextFallback bool
	service, account  string
	lockTimeout       time.Duration
	logger            *slog.Logger
}

func defaultConfig() config {
	return config{
		service:     persistence.DefaultKeyringService,
		account:     persistence.DefaultKeyringAccount,
		lockTimeout: DefaultLockTimeout,
		logger:      slog.New(slog.DiscardHandler),
	}
}

// DefaultLockTimeout bounds every call whose context has no deadline.
const DefaultLockTimeout = 30 * time.Second

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithPlaintext stores the cache unencrypted: the MSAL JSON itself, in a file
// only its owner can read (0600). Choose it explicitly, for example for a CI
// job whose machine has no keyring and whose disk nobody else reads.
func WithPlaintext() Option {
	return optionFunc(func(c *config) { c.plaintext = true })
}

// WithPlaintextFallback uses the platform protection when it is available
// and otherwise stores the cache in plaintext (0600), logging a warning that
// names the file. Typical for tools that also run over SSH, in containers or
// on WSL, where no Secret Service runs. When the protection becomes
// available again, the next write encrypts the file and the user stays
// signed in.
func WithPlaintextFallback() Option {
	return optionFunc(func(c *config) { c.plaintextFallback = true })
}

// WithKeyringItem names the keyring item that holds the cache's encryption
// key on macOS (Keychain) and Linux (Secret Service). The defaults are
// persistence.DefaultKeyringService and persistence.DefaultKeyringAccount;
// apps that must not share a key with other msalcache apps set their own.
// Windows (DPAPI) has no key item and ignores it.
func WithKeyringItem(service, account string) Option {
	return optionFunc(func(c *config) { c.service, c.account = service, account })
}

// WithLockTimeout bounds a call whose context has no deadline: waiting for
// the cross-process lock, the keyring and the file. The default is
// DefaultLockTimeout (30s). A context's own deadline always wins.
func WithLockTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.lockTimeout = d })
}

// WithLogger receives warnings (a corrupt cache file set aside, the
// plaintext fallback in use) and debug records. Secrets are never logged.
// The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}
