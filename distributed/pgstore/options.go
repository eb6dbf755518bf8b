package pgstore

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"
)

// An Option configures Open.
type Option interface{ apply(*config) }

type config struct {
	table           string
	existingSchema  bool
	cleanupInterval time.Duration
	cleanupBatch    int64
	dialTimeout     time.Duration
	health          time.Duration
	log             *slog.Logger
}

// DefaultTable is the name of the entries table unless WithTable says
// otherwise.
const DefaultTable = "msalcache_entries"

func defaultConfig() config {
	return config{
		table:           DefaultTable,
		cleanupInterval: time.Minute,
		cleanupBatch:    500,
		dialTimeout:     5 * time.Second,
		health:          2 * time.Second,
		log:             slog.New(slog.DiscardHandler),
	}
}

// tableName is what WithTable accepts: a plain lower-case identifier, short
// enough to leave room for the suffixes of the other names derived from it.
var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

func (c *config) validate() error {
	if !tableName.MatchString(c.table) {
		return fmt.Errorf("pgstore: WithTable(%q): want a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 40 characters)", c.table)
	}
	if c.cleanupInterval < 0 {
		return fmt.Errorf("pgstore: WithCleanupInterval(%v): must not be negative (0 turns the cleanup off)", c.cleanupInterval)
	}
	if c.cleanupBatch <= 0 {
		return fmt.Errorf("pgstore: cleanup batch %d: must be positive", c.cleanupBatch)
	}
	if c.dialTimeout <= 0 {
		return fmt.Errorf("pgstore: WithDialTimeout(%v): must be positive", c.dialTimeout)
	}
	if c.health < 100*time.Millisecond {
		return fmt.Errorf("pgstore: WithHealthTimeout(%v): must be at least 100ms", c.health)
	}
	if c.log == nil {
		return errors.New("pgstore: WithLogger(nil)")
	}
	return nil
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTable sets the name of the entries table (default DefaultTable). The
// schema's version lives in the table name+"_schema", the expiry index is
// name+"_expires_at", and change notices travel on the channel name.
// Stores of different tables share nothing.
func WithTable(name string) Option {
	return optionFunc(func(c *config) { c.table = name })
}

// WithExistingSchema tells Open not to create the tables, for a role
// without the right to: they must exist (created with the SQL in the
// package doc), and Open fails with a clear error when they do not.
func WithExistingSchema() Option {
	return optionFunc(func(c *config) { c.existingSchema = true })
}

// WithCleanupInterval sets how often the Store deletes expired rows
// (default one minute); 0 turns its cleanup off, for a database where an
// external job runs the statement shown in the package doc. Reads never
// return an expired row either way: the cleanup only reclaims space.
func WithCleanupInterval(d time.Duration) Option {
	return optionFunc(func(c *config) { c.cleanupInterval = d })
}

// WithDialTimeout bounds each attempt to connect to the server, including
// the handshake: Open fails after it when the server does not answer, and
// a call made while the server is down waits no longer for a new
// connection (and never past its ctx). The default is 5 s.
func WithDialTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.dialTimeout = d })
}

// WithHealthTimeout sets how soon a lost notice connection is detected: an
// idle one is checked with an empty statement every d, and one that does
// not answer within d is dropped and replaced, with the Notify callback
// called with "". The default is 2 s.
func WithHealthTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.health = d })
}

// WithLogger sets the logger; the default discards everything, as
// distributed.WithLogger's. The Store
// logs the loss and return of its notice connection and the cleanup's
// failures at Warn, the cleanup's work at Debug; never keys, values or
// passwords.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.log = l })
}
