package distributed

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// A Version identifies one stored state of a key. The writer chooses it
// (NewVersion): a random non-zero number, so a version never repeats for a
// key, even after the key was deleted or expired and written again. The zero
// Version means "no value".
type Version uint64

// ErrConflict is returned by Store.Store when the key no longer holds the
// version the write was based on: another writer was first. The caller
// loads again, merges and retries.
var ErrConflict = errors.New("distributed: the stored value changed since it was loaded")

// A Store keeps one opaque value per key, with a version for optimistic
// concurrency. It is the shared layer under Cache: NewMemoryStore for one
// process, redisstore.Open for many processes and machines. Keys and values
// are opaque to the store; Cache hashes identifiers into keys and may
// encrypt values.
//
// A Store is safe for concurrent use by multiple goroutines. Every method
// honours ctx: a call never waits past its deadline.
type Store interface {
	// Load returns the value stored at key and its version, or (nil, 0, nil)
	// when there is none. It may be served from a client-side cache that is
	// kept coherent with the server (see Notifier).
	Load(ctx context.Context, key string) (value []byte, v Version, err error)

	// Store writes value at key as version next, provided the key still holds
	// version prev (zero: the key must hold no value), and sets the key to
	// expire after ttl (zero: never). It returns ErrConflict, and changes
	// nothing, when the key holds another version.
	Store(ctx context.Context, key string, value []byte, prev, next Version, ttl time.Duration) error

	// Touch resets the expiry of key to ttl, if it exists (sliding
	// expiration). It does not change the version.
	Touch(ctx context.Context, key string, ttl time.Duration) error

	// Close releases what the store holds (connections, goroutines). A
	// second Close returns nil and does nothing; other calls after Close
	// return an error wrapping net.ErrClosed (ErrClosed does).
	Close() error
}

// A Notifier is a Store that tells its user when keys change elsewhere, so
// that an in-process copy can be kept coherent without asking the server on
// every read. Both stores of this module implement it.
type Notifier interface {
	// Notify registers f, which is called with the key of every value that
	// another writer (another Cache, process or machine) changed, or that was
	// deleted or expired, after this client loaded it; f("") means anything
	// may have changed (the connection to the server was lost or
	// re-established). f may also be called for this client's own writes
	// (the Cache expects it). f is called on the store's own goroutine, or
	// within the Store call that made the change, and must return quickly;
	// it never calls the store. New calls Notify once per Cache, before its
	// first Load; several Caches may share one store.
	Notify(f func(key string))
}

// A Scanner is a Store that can list its keys, in batches, so that a tool
// can visit every partition (Reseal). Implementing it is optional: the
// stores of this module do (memory, Redis standalone, Sentinel and Cluster,
// PostgreSQL, Tiered through its second layer).
type Scanner interface {
	// Scan returns keys that start with prefix, about n of them (a batch
	// may hold more or fewer, even none, before the end), from the position
	// cursor ("" is the beginning), and the cursor of the next batch: ""
	// once the scan is complete. A cursor is printable text the caller
	// keeps to resume later, on any client of the same store.
	//
	// Guarantee: a key that holds a value from the first call of a scan to
	// its end is returned at least once. A key may be returned more than
	// once (Redis), and one written, removed or expired during the scan may
	// or may not be. Keys are not loaded: the caller loads each one.
	Scan(ctx context.Context, prefix, cursor string, n int) (keys []string, next string, err error)
}

// A Sharer is a Store that other processes or machines reach too (Redis,
// PostgreSQL): whoever can read the server can read what it holds. New logs
// one warning when a Cache on a shared store has no WithEncryptionKeys (its
// tokens would be stored in clear). Implementing it is optional: a Store
// without it (NewMemoryStore) counts as not shared. A store made of others,
// as Tiered, is shared when one of them is.
type Sharer interface {
	// Shared reports whether the store is reached by other processes.
	Shared() bool
}

// isShared reports whether s says it is shared (see Sharer).
func isShared(s Store) bool {
	sh, ok := s.(Sharer)
	return ok && sh.Shared()
}

// Shared reports whether one of the tandem's layers is shared (Sharer).
func (t *tiered) Shared() bool { return isShared(t.first) || isShared(t.second) }

// NewVersion returns a random non-zero Version for the next write.
func NewVersion() Version {
	for {
		if v := Version(rand.Uint64()); v != 0 {
			return v
		}
	}
}
