package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// An Option configures Open.
type Option interface{ apply(*config) }

type config struct {
	dialTimeout   time.Duration
	health        time.Duration
	cacheBytes    int
	tls           *tls.Config
	log           *slog.Logger
	noClientCache bool // tests only: measure Load without the client-side cache
}

func defaultConfig() config {
	return config{
		dialTimeout: 5 * time.Second,
		health:      2 * time.Second,
		cacheBytes:  16 << 20,
		log:         slog.New(slog.DiscardHandler),
	}
}

func (c *config) validate() error {
	if c.dialTimeout <= 0 {
		return fmt.Errorf("redisstore: WithDialTimeout(%v): must be positive", c.dialTimeout)
	}
	if c.health < 100*time.Millisecond {
		return fmt.Errorf("redisstore: WithHealthTimeout(%v): must be at least 100ms", c.health)
	}
	if c.cacheBytes <= 0 {
		return fmt.Errorf("redisstore: WithClientCacheSize(%d): must be positive", c.cacheBytes)
	}
	if c.log == nil {
		return errors.New("redisstore: WithLogger(nil)")
	}
	return nil
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithDialTimeout bounds each attempt to connect to a server, including
// the handshake: Open fails after it when no server answers, and a call
// made while the server is down waits no longer for a new connection (and
// never past its ctx). The default is 5 s.
func WithDialTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.dialTimeout = d })
}

// WithHealthTimeout sets how soon a connection whose server stopped
// answering (a crashed host, a half-open connection through a dead
// firewall or proxy) is detected and dropped: an idle connection is
// PINGed, and one that answers nothing within d is closed, dropping its
// client-side cache and calling the Notify callback with "". Until then,
// cached values may be stale. The default is 2 s; smaller values send
// more PINGs (one every d/5 on an idle connection).
func WithHealthTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.health = d })
}

// WithClientCacheSize sets the size in bytes of the client-side cache of
// each connection (one per server). The default is 16 MiB.
func WithClientCacheSize(bytes int) Option {
	return optionFunc(func(c *config) { c.cacheBytes = bytes })
}

// WithTLSConfig sets the TLS configuration for a rediss:// URL (client
// certificates, a private CA). When its ServerName is empty, the URL's
// host is used. Without it, rediss:// verifies the server against the
// system's roots. It is an error with a redis:// URL.
func WithTLSConfig(cfg *tls.Config) Option {
	return optionFunc(func(c *config) { c.tls = cfg })
}

// WithLogger sets the logger; the default discards everything, as
// distributed.WithLogger's. The Store logs that the server does not answer
// at Open (warn) and that it connected later (info), and at Debug level the
// loss of a connection's client-side cache and failed attempts to connect
// (the Cache above it logs outages); it never logs keys, values or the
// URL's password.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.log = l })
}

// tlsConfig returns the TLS configuration for host.
func tlsConfig(base *tls.Config, host string) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return cfg
}
