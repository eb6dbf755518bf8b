package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/msalcache/msalcache/distributed"
)

// errClosed is returned by every call after Close. It matches
// distributed.ErrClosed and net.ErrClosed.
var errClosed = fmt.Errorf("pgstore: %w (%w)", distributed.ErrClosed, net.ErrClosed)

// A Store is a distributed.Store and distributed.Notifier on PostgreSQL.
// Open makes one.
//
// Each key is one row: the value, its version and its expiry. Store is a
// compare-and-set in one statement, which also sends the change notice
// (NOTIFY, delivered when the statement commits). A dedicated connection
// LISTENs for the notices of every writer and passes them to the Notify
// callbacks. A goroutine deletes expired rows (see WithCleanupInterval).
//
// A Store is safe for concurrent use by multiple goroutines; the
// listening and the cleanup run on goroutines of their own, started by
// Open and stopped by Close.
type Store struct {
	pool     *pgxpool.Pool
	q        queries
	cfg      config
	lockID   int64  // the cleanup's advisory lock
	redacted string // the URL without its password, for messages
	log      *slog.Logger

	echoes echoes // the writes waiting for their own notice

	closed atomic.Bool
	stop   context.CancelFunc // ends the goroutines' context
	done   sync.WaitGroup     // the goroutines

	// lockHeld, when set (by tests, before the cleanup starts), is called
	// with true when a cleanup takes the advisory lock and with false
	// before it releases it.
	lockHeld func(held bool)

	mu        sync.Mutex                         // serializes Notify
	listeners atomic.Pointer[[]func(key string)] // replaced, never changed
}

// Open connects to the PostgreSQL server at url, creates the schema when
// it is missing (unless WithExistingSchema), starts listening for change
// notices and the cleanup of expired rows, and returns a Store. The URL is
// the usual one:
//
//	postgres://user:password@host:port/database?sslmode=verify-full
//
// with pgx's parameters (sslmode, sslrootcert, pool_max_conns,
// search_path, ...). Open fails, within about twice the dial timeout
// (WithDialTimeout) when the server does not answer, when the URL is
// malformed, the server unreachable, the schema missing or of a later
// release; its errors never show the password.
func Open(url string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	pcfg, redacted, err := parseURL(url, cfg.dialTimeout)
	if err != nil {
		return nil, err
	}
	s := &Store{q: newQueries(cfg.table), cfg: cfg, lockID: lockID(cfg.table), redacted: redacted, log: cfg.log}
	ctx, cancel := context.WithTimeout(context.Background(), 2*cfg.dialTimeout)
	defer cancel()
	if s.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, s.openError("", err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, s.openError("connecting to", err)
	}
	if err := s.setUp(ctx); err != nil {
		s.pool.Close()
		return nil, err
	}
	// Listening before Open returns: no write that follows goes unheard.
	conn, err := s.listen(ctx)
	if err != nil {
		s.pool.Close()
		return nil, s.openError("listening for notices on", err)
	}
	s.echoes.setUp(true)
	run, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.done.Go(func() { s.listenLoop(run, conn) })
	if cfg.cleanupInterval > 0 {
		s.done.Go(func() { s.cleanupLoop(run) })
	}
	return s, nil
}

func (s *Store) openError(what string, err error) error {
	if what == "" {
		return fmt.Errorf("pgstore: %s: %w", s.redacted, err)
	}
	return fmt.Errorf("pgstore: %s %s: %w", what, s.redacted, err)
}

// setUp creates the schema when it is missing and checks its version.
func (s *Store) setUp(ctx context.Context) error {
	if !s.cfg.existingSchema {
		// One instance at a time: concurrent CREATE ... IF NOT EXISTS
		// of one table can fail.
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockID+1); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, s.q.schema)
			return err
		})
		if err != nil {
			return fmt.Errorf("pgstore: creating the schema (table %s) on %s: %w; a role without the right to create tables can use WithExistingSchema once the tables exist",
				s.cfg.table, s.redacted, err)
		}
	}
	var version int
	err := s.pool.QueryRow(ctx, s.q.schemaVersion).Scan(&version)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return fmt.Errorf("pgstore: table %s_schema does not exist on %s: create the schema with the SQL in the package documentation, or let Open create it (without WithExistingSchema)",
			s.cfg.table, s.redacted)
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("pgstore: table %s_schema on %s holds no version: insert (%d), as the SQL in the package documentation does", s.cfg.table, s.redacted, schemaVersion)
	case err != nil:
		return fmt.Errorf("pgstore: reading the schema version on %s: %w", s.redacted, err)
	case version > schemaVersion:
		return fmt.Errorf("pgstore: the schema of table %s is version %d, written by a later release; this one reads version %d: upgrade", s.cfg.table, version, schemaVersion)
	case version < schemaVersion:
		return fmt.Errorf("pgstore: the schema of table %s is version %d, unknown to this release (%d)", s.cfg.table, version, schemaVersion)
	}
	return nil
}

// lockID returns the advisory lock of the cleanup of table; lockID+1 is
// the schema's creation.
func lockID(table string) int64 {
	h := fnv.New64a()
	h.Write([]byte("msalcache pgstore " + table))
	return int64(h.Sum64() &^ 1)
}

// Load returns the value stored at key and its version, or (nil, 0, nil)
// when there is none or it expired. Each Load is one query.
func (s *Store) Load(ctx context.Context, key string) ([]byte, distributed.Version, error) {
	if err := s.check(key); err != nil {
		return nil, 0, err
	}
	var value []byte
	var version int64
	err := s.pool.QueryRow(ctx, s.q.load, key).Scan(&value, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, s.wrap("load", err)
	}
	if value == nil {
		value = []byte{}
	}
	return value, distributed.Version(version), nil
}

// Store writes value at key as version next if the key holds version prev
// (zero: holds nothing, or an expired row), and returns
// distributed.ErrConflict, changing nothing, if it does not. A ttl of zero
// means no expiry. The write and its change notice are one statement, so
// one transaction: both happen or neither. An error other than ErrConflict
// (a lost connection) leaves it unknown whether the write happened; a
// retry based on a new Load settles it.
//
// After a write, Store waits (within ctx, and a second at most) until its
// notice came back to this Store's listening goroutine: when Store
// returns, the Notify callbacks have been called for the write.
func (s *Store) Store(ctx context.Context, key string, value []byte, prev, next distributed.Version, ttl time.Duration) error {
	if err := s.check(key); err != nil {
		return err
	}
	if next == 0 || next == prev {
		return errors.New("pgstore: Store: the next version must be new and not zero")
	}
	if ttl < 0 {
		return fmt.Errorf("pgstore: Store: negative ttl %v", ttl)
	}
	if value == nil {
		value = []byte{} // a value, not NULL
	}
	token, heard := s.echoes.expect()
	var tag pgconn.CommandTag
	var err error
	if prev == 0 {
		tag, err = s.pool.Exec(ctx, s.q.create, key, value, int64(next), millis(ttl), token)
	} else {
		tag, err = s.pool.Exec(ctx, s.q.update, key, value, int64(next), millis(ttl), token, int64(prev))
	}
	if err != nil {
		s.echoes.forget(token)
		return s.wrap("store", err)
	}
	if tag.RowsAffected() == 0 {
		s.echoes.forget(token)
		return distributed.ErrConflict
	}
	s.echoes.wait(ctx, token, heard)
	return nil
}

// Touch sets the expiry of key to ttl (zero: none) if the key holds a
// value that has not expired. It sends no change notice: the value and
// version stay the same.
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.check(key); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("pgstore: Touch: negative ttl %v", ttl)
	}
	if _, err := s.pool.Exec(ctx, s.q.touch, key, millis(ttl)); err != nil {
		return s.wrap("touch", err)
	}
	return nil
}

// Notify registers f, called with the key of every value that changed on
// the server (another writer, this Store's own writes, a deletion of an
// expired row by a cleanup), whether or not this Store loaded it; and with
// "" when the notice connection is lost and again when it is established
// anew (notices sent in between were missed). f runs on the Store's
// listening goroutine; it must return quickly and not call the Store. Each
// call adds a listener (one per Cache sharing the Store); every listener
// hears every key.
func (s *Store) Notify(f func(key string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fs []func(string)
	if old := s.listeners.Load(); old != nil {
		fs = append(fs, *old...)
	}
	fs = append(fs, f)
	s.listeners.Store(&fs)
}

// broadcast calls every listener with key.
func (s *Store) broadcast(key string) {
	if s.closed.Load() {
		return
	}
	if fs := s.listeners.Load(); fs != nil {
		for _, f := range *fs {
			f(key)
		}
	}
}

// Shared reports true: a PostgreSQL server is reached by other processes,
// so a distributed.Cache on it without encryption keys logs a warning (see
// distributed.Sharer).
func (s *Store) Shared() bool { return true }

// Close stops the listening and the cleanup, and closes the connections.
// A second Close returns nil and does nothing; other calls after Close
// return an error that matches net.ErrClosed and distributed.ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.stop()
	s.done.Wait()
	s.pool.Close()
	return nil
}

func (s *Store) check(key string) error {
	if s.closed.Load() {
		return errClosed
	}
	if key == "" {
		return errors.New("pgstore: empty key")
	}
	return nil
}

func (s *Store) wrap(op string, err error) error {
	if s.closed.Load() {
		return errClosed
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// millis is d in whole milliseconds, rounded up so that a positive
// duration never becomes "no expiry".
func millis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
