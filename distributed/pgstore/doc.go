// Package pgstore is a distributed.Store on PostgreSQL: the durable layer
// under distributed.Cache, alone or as the second layer of
// distributed.Tiered beside Redis. It uses github.com/jackc/pgx/v5; neither
// msalcache nor distributed imports it, so a program that does not use
// this package does not compile pgx.
//
// # Consistency
//
// Each key is one row: the value, its version (a distributed.Version, its
// 64 bits stored as a bigint) and its expiry. Store is a compare-and-set in
// one statement: an UPDATE ... WHERE version = prev, or, for prev zero, an
// INSERT ... ON CONFLICT that takes over only an expired row. Concurrent
// writers of a key never lose each other's update: all but one get
// distributed.ErrConflict, having changed nothing, and retry from a new
// Load. (A blind upsert without a version, as Microsoft.Extensions.Caching.
// SqlServer does, loses updates: the tests measure both side by side.)
//
// Load never returns an expired row, whether or not the cleanup deleted it
// yet. Expiries use the server's clock, the one clock every instance
// shares. Touch moves a live row's expiry (sliding expiration).
//
// # Change notices
//
// The statement that writes a row also sends a notice (pg_notify) on the
// channel named after the table, delivered when it commits; the cleanup's
// deletions send one per deleted row. Each Store LISTENs on a dedicated
// connection and passes the keys to its Notify callbacks, so that Caches
// keep their in-process copies coherent with no query on a hit. A Store
// call returns once its own notice has come back (a second at most), so
// every Cache sharing the Store has dropped its copy by then. When the
// notice connection is lost (checked every WithHealthTimeout while idle),
// the callbacks get "" (anything may have changed), the Store connects
// again, backing off, and calls them with "" again once it listens.
//
// # Schema
//
// Open creates the tables when they are missing, under an advisory lock so
// that instances starting together do not collide. A role without the
// right to create tables uses WithExistingSchema, after an administrator
// ran (for the default table name; WithTable changes every name):
//
//	CREATE TABLE IF NOT EXISTS msalcache_entries (
//		key        text COLLATE "C" PRIMARY KEY,
//		value      bytea NOT NULL,
//		version    bigint NOT NULL,
//		expires_at timestamptz
//	);
//	CREATE INDEX IF NOT EXISTS msalcache_entries_expires_at ON msalcache_entries (expires_at) WHERE expires_at IS NOT NULL;
//	CREATE TABLE IF NOT EXISTS msalcache_entries_schema (
//		one     boolean PRIMARY KEY DEFAULT true CHECK (one),
//		version integer NOT NULL
//	);
//	INSERT INTO msalcache_entries_schema (version) VALUES (1) ON CONFLICT DO NOTHING;
//
// and granted SELECT, INSERT, UPDATE, DELETE on msalcache_entries and
// SELECT on msalcache_entries_schema. The row of msalcache_entries_schema
// is the schema's version: Open refuses a version it does not know, and a
// later release that changes the schema migrates from it.
//
// # Cleanup
//
// Expired rows are deleted by a goroutine that Open starts and Close
// stops, every WithCleanupInterval (one minute by default, with jitter).
// It deletes in batches of 500 rows, one short statement each, skipping
// rows a writer holds, so that no Load or Store waits behind it; and only
// one instance cleans a table at a time: a cleanup first takes a session
// advisory lock (pg_try_advisory_lock) and does nothing when another
// instance holds it. WithCleanupInterval(0) turns it off, for an external
// job (pg_cron, a cron job with psql) that repeats, until it deletes no
// row:
//
//	DELETE FROM msalcache_entries WHERE key = ANY(ARRAY(
//		SELECT key FROM msalcache_entries WHERE expires_at <= now()
//		LIMIT 500 FOR UPDATE SKIP LOCKED));
//
// (The array makes PostgreSQL look the 500 keys up in the primary key; an
// IN (SELECT ...) is planned as a scan of the whole table per batch.)
//
// The Store's cleanup sends the notices of the keys it deletes, so Caches
// drop their in-process copies of expired partitions then (not at the
// moment of expiry, which nothing signals); a plain DELETE by an external
// job sends none, and a Cache may serve a partition that expired from
// memory until it is written again or evicted.
//
// # Failures
//
// Every call honours its ctx; a connection attempt is bounded by
// WithDialTimeout. Calls made while the server is down fail; they work
// again as soon as it is back, on new connections. Open fails, within a
// bound, when the server cannot be reached. A distributed.Cache above
// serves warm users from memory during an outage and writes back what it
// kept (see distributed). What the server committed survives its crash:
// unlike a Redis without persistence, a restart loses no user.
//
// # Security
//
// Keys and values are opaque: distributed.Cache hashes identifiers into
// keys and can encrypt values. Use sslmode=verify-full across untrusted
// networks. Errors and logs never contain the URL's password, a key or a
// value.
package pgstore
