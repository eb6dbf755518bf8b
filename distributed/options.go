package distributed

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/msalcache/msalcache/internal/seal"
)

// Defaults of the options.
const (
	DefaultKeyPrefix = "msalcache:"
	DefaultTTL       = 24 * time.Hour
	DefaultL1        = 64 << 20
	DefaultTimeout   = 2 * time.Second
)

// An Option configures New. The set of options is closed.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	keys    [][]byte
	prefix  string
	ttl     time.Duration
	l1      int64
	logger  *slog.Logger
	timeout time.Duration
	meter   metric.MeterProvider

	// Unexported knobs of the working set (see view), for tests.
	viewMax   int
	flushHook func(key string) // see withFlushHook
	viewGrace time.Duration
	now       func() time.Time
}

// WithEncryptionKeys seals every stored blob with AES-256-GCM, bound to its
// store key. Each key is 32 bytes; the first one encrypts, all of them
// decrypt, so keys can be rotated: deploy [old, new] everywhere, then
// [new, old], then Reseal, then [new] (see the package doc). Without keys,
// blobs are stored in clear (fine for NewMemoryStore, not for a shared
// Redis).
func WithEncryptionKeys(keys ...[]byte) Option {
	return optionFunc(func(c *config) {
		c.keys = nil
		for _, k := range keys {
			c.keys = append(c.keys, append([]byte(nil), k...))
		}
		if c.keys == nil {
			c.keys = [][]byte{}
		}
	})
}

// WithKeyPrefix sets the namespace of the Cache's keys in the store; the
// default is "msalcache:". Apps sharing one store use different prefixes.
func WithKeyPrefix(p string) Option { return optionFunc(func(c *config) { c.prefix = p }) }

// WithTTL sets the sliding expiry of a partition: it is removed from the
// store when no process has read or written it for d (default 24 hours).
// Partitions of app tokens (client credentials) expire with their last
// access token if that comes first.
func WithTTL(d time.Duration) Option { return optionFunc(func(c *config) { c.ttl = d }) }

// WithL1 bounds the in-process layer, in bytes (default 64 MiB); 0 disables
// it, so that every MSAL call asks the store. The layer is used only with a
// store that implements Notifier, which keeps it coherent.
func WithL1(maxBytes int64) Option { return optionFunc(func(c *config) { c.l1 = maxBytes }) }

// WithLogger sets where the Cache logs: an outage and the recovery once each
// (warn, info), blobs that do not decrypt (warn), dropped and conflicting
// writes (debug, info). Nothing secret is logged; partitions are named by
// their store key. The default discards everything.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(c *config) { c.logger = l }) }

// WithTimeout bounds each store call (default 2 s); a ctx with an earlier
// deadline bounds it sooner. A store that does not answer in time is
// treated as out: MSAL is served from process memory, writes are kept.
func WithTimeout(d time.Duration) Option { return optionFunc(func(c *config) { c.timeout = d }) }

func withView(max int, grace time.Duration) Option {
	return optionFunc(func(c *config) { c.viewMax, c.viewGrace = max, grace })
}

func withClock(now func() time.Time) Option { return optionFunc(func(c *config) { c.now = now }) }

// withFlushHook calls f with the partition key in the write-back after it
// took a kept write and before it writes it: tests interleave other calls
// there.
func withFlushHook(f func(key string)) Option {
	return optionFunc(func(c *config) { c.flushHook = f })
}

func (c *config) validate() (*seal.Keys, error) {
	switch {
	case c.ttl <= 0:
		return nil, fmt.Errorf("distributed: TTL %v: must be positive", c.ttl)
	case c.l1 < 0:
		return nil, fmt.Errorf("distributed: L1 size %d: must be 0 (off) or more", c.l1)
	case c.timeout <= 0:
		return nil, fmt.Errorf("distributed: timeout %v: must be positive", c.timeout)
	case strings.ContainsAny(c.prefix, "{}"):
		// Redis Cluster reads {...} as a hash tag: one tag would put every
		// partition in one slot.
		return nil, errors.New("distributed: key prefix must not contain '{' or '}'")
	case c.viewMax < 1:
		return nil, errors.New("distributed: working set must hold at least one partition")
	}
	if c.keys == nil {
		return nil, nil
	}
	keys, err := seal.New(c.keys...)
	if err != nil {
		return nil, fmt.Errorf("distributed: WithEncryptionKeys: %w", err)
	}
	return keys, nil
}
