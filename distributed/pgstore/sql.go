package pgstore

import (
	"fmt"
	"strings"
)

// schemaVersion is the version of the schema this release creates and
// reads. A later release that changes the schema raises it and migrates
// from the versions before.
const schemaVersion = 1

// schemaSQL creates the tables, when they are missing, for the entries
// table %[1]s: keys, values, versions and expiries, and a one-row table
// holding the schema's version. The package doc shows it for the default
// table name.
const schemaSQL = `CREATE TABLE IF NOT EXISTS %[1]s (
	key        text COLLATE "C" PRIMARY KEY,
	value      bytea NOT NULL,
	version    bigint NOT NULL,
	expires_at timestamptz
);
CREATE INDEX IF NOT EXISTS %[1]s_expires_at ON %[1]s (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS %[1]s_schema (
	one     boolean PRIMARY KEY DEFAULT true CHECK (one),
	version integer NOT NULL
);
INSERT INTO %[1]s_schema (version) VALUES (1) ON CONFLICT DO NOTHING;`

// expiry is the expires_at of a write with ttl $ttl milliseconds: none
// for 0. The server's clock is the one clock all instances share.
const expiry = `CASE WHEN %[2]s::bigint > 0 THEN now() + %[2]s::bigint * interval '1 millisecond' END`

// alive is the condition of a row that has not expired.
const alive = `(expires_at IS NULL OR expires_at > now())`

// notice sends the change notice of the row of key on the table's
// channel: a 16-character token naming the write (see Store.Store), then
// the key, or nothing (anything may have changed) for a key too long for
// a payload (8000 bytes).
const notice = `pg_notify('%[1]s', %[3]s || CASE WHEN octet_length(key) < 7900 THEN key ELSE '' END)`

// cleanupNotice sends the notice of up to keysPerNotice deleted keys, one
// per line, after the cleanup's token; or only the token (anything may
// have changed) when a key holds a line break or they are too long for a
// payload. One notice per key would make the notices of a large cleanup
// queue up ahead of the writers' for seconds.
const cleanupNotice = `pg_notify('%[1]s', '%[3]s' || CASE
	WHEN bool_or(strpos(key, E'\n') > 0) OR sum(octet_length(key) + 1) > 7900 THEN ''
	ELSE string_agg(key, E'\n') END)`

// keysPerNotice is how many deleted keys a notice of the cleanup names.
const keysPerNotice = 50

// tokenLen is the length of the token that starts a notice's payload;
// cleanupToken is the token of the cleanup's deletions, which nobody waits
// for.
const (
	tokenLen     = 16
	cleanupToken = "0000000000000000"
)

// queries are the statements of a Store on one table, named. The table's
// name is also the channel of its change notices.
type queries struct {
	schema        string // schemaSQL
	schemaVersion string // the schema's version
	load          string // $1 key → value, version; no row when missing or expired
	create        string // $1 key, $2 value, $3 next version, $4 ttl ms, $5 token: writes when missing or expired, then notifies
	update        string // $1 key, $2 value, $3 next version, $4 ttl ms, $5 token, $6 prev version: writes when alive at prev, then notifies
	touch         string // $1 key, $2 ttl ms: sets the expiry of a live row
	scan          string // $1 prefix, $2 after this key, $3 batch size: live keys that start with $1, after $2, in key order
	tryLock       string // $1 lock id: the cleanup's session lock, if free
	unlock        string // $1 lock id
	deleteExpired string // $1 batch size: deletes up to $1 expired rows not locked by a writer, notifies, returns the count
	listen        string // subscribes the session to the table's notices
}

func newQueries(table string) queries {
	q := func(format string, args ...any) string {
		return strings.TrimSpace(fmt.Sprintf(format, args...))
	}
	return queries{
		schema:        q(schemaSQL, table),
		schemaVersion: q(`SELECT version FROM %s_schema`, table),
		load:          q(`SELECT value, version FROM %s WHERE key = $1 AND %s`, table, alive),
		create: q(`WITH w AS (
	INSERT INTO %[1]s AS t (key, value, version, expires_at) VALUES ($1, $2, $3, `+expiry+`)
	ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version, expires_at = excluded.expires_at
		WHERE t.expires_at IS NOT NULL AND t.expires_at <= now()
	RETURNING key)
SELECT `+notice+` FROM w`, table, "$4", "$5::text"),
		update: q(`WITH w AS (
	UPDATE %[1]s SET value = $2, version = $3, expires_at = `+expiry+`
	WHERE key = $1 AND version = $6 AND `+alive+`
	RETURNING key)
SELECT `+notice+` FROM w`, table, "$4", "$5::text"),
		touch:   q(`UPDATE %[1]s SET expires_at = `+expiry+` WHERE key = $1 AND `+alive, table, "$2"),
		scan:    q(`SELECT key FROM %[1]s WHERE key > $2 AND starts_with(key, $1) AND `+alive+` ORDER BY key LIMIT $3`, table),
		tryLock: `SELECT pg_try_advisory_lock($1)`,
		unlock:  `SELECT pg_advisory_unlock($1)`,
		deleteExpired: q(`WITH d AS (
	DELETE FROM %[1]s WHERE key = ANY(ARRAY(
		SELECT key FROM %[1]s WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED))
	AND expires_at <= now()
	RETURNING key),
g AS (SELECT key, (row_number() OVER ()) / %[2]d AS grp FROM d)
SELECT coalesce(sum(n), 0)::bigint FROM (
	SELECT count(*) AS n, `+cleanupNotice+` AS sent FROM g GROUP BY grp) notices`, table, keysPerNotice, cleanupToken),
		listen: q(`LISTEN %s`, table),
	}
}
