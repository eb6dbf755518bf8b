// Package redisstore is a distributed.Store on Redis, standalone, Redis
// Cluster or a master found through Redis Sentinel, for many processes and
// machines sharing a distributed.Cache.
//
// # Consistency
//
// Each key is one Redis string holding an 8-byte version and the value.
// Store is a compare-and-set on that version in a Lua script, atomic on
// the server: concurrent writers of a key never lose each other's update;
// all but one get distributed.ErrConflict and retry from a new Load. Each
// call touches one key, so Redis Cluster needs no cross-slot operation.
//
// # Reads and coherence
//
// Load uses RESP3 client-side caching (CLIENT TRACKING, through rueidis):
// the first Load of a key is a round trip, and the server remembers that
// this client holds the key; later Loads are served from process memory
// with no round trip until the server sends an invalidation, when the key
// changes on the server (any writer, an expiry, a Touch). A change made by
// another process is therefore seen after the invalidation's trip over the
// network; this Store's own writes are seen at once (see Store.Store).
// Notify passes the invalidations on, so that a layer above can drop its
// own copies.
//
// # Failures
//
// Every call honours its ctx. An idle connection is PINGed and dropped
// when it stops answering (WithHealthTimeout, 2 s by default): a crashed
// server, a half-open connection. Until then cached values may be stale;
// when a connection is dropped, its cached values are discarded and
// Notify's listeners receive "". Calls made while a server is down fail:
// a write at once (after the dial timeout at most), a read after at most
// three more attempts over about a second; with a ctx that ends sooner,
// when it ends. They work again as soon as the server is back; a cluster
// serves a failed master's keys again once a replica is promoted, and a
// Store on Sentinel writes to the replica the sentinels promote when they
// announce it (or within 5 s, when it asks them again).
//
// Open does not need the server up: opened while nothing answers, the
// Store logs a warning, its calls fail with an error wrapping
// distributed.ErrUnavailable, and it connects when a call finds the server
// back (one attempt at a time, at most one every 100 ms). Open still fails
// for a malformed URL and for a server that answers and refuses the client.
//
// When the server restarts, the Store's cached copies were dropped with the
// connection; a server restarted without persistence has lost its data,
// and a Cache above then finds its partitions empty.
//
// # Security
//
// Keys and values are opaque: distributed.Cache hashes identifiers into
// keys and can encrypt values. Use rediss:// (TLS) and a password across
// untrusted networks. Errors and logs never contain the URL's password.
package redisstore
