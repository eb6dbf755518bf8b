// Package distributed is a partitioned MSAL Go token cache for confidential
// clients (web apps, web APIs, daemons): one blob per partition key (a
// user's home account ID; a client and tenant for app tokens) in a shared
// Store, used by many goroutines, processes and machines at once.
// NewMemoryStore keeps the blobs in the process; package redisstore keeps
// them in Redis for many replicas, package pgstore in PostgreSQL; Tiered
// puts two stores in tandem: Redis serving reads over a database that holds
// the truth.
//
// # Wiring
//
// A web app holds one confidential client for all its requests, and signs
// users out with RemovePartition:
//
//	store, err := redisstore.Open("rediss://cache.example:6380") // or distributed.NewMemoryStore()
//	...
//	c, err := distributed.New(store, distributed.WithEncryptionKeys(key)) // key: 32 random bytes, kept secret
//	...
//	defer store.Close()
//	defer c.Close()
//	app, err := confidential.New(authority, clientID, cred, confidential.WithCache(c))
//
//	// sign-in callback: app.AcquireTokenByAuthCode(...), keep res.Account.HomeAccountID in the session
//	// each request:     app.AcquireTokenSilent(ctx, scopes, confidential.WithSilentAccount(account))
//	// sign-out:         c.RemovePartition(ctx, account.HomeAccountID), then end the session
//
// A daemon calls app.AcquireTokenByCredential(ctx, scopes,
// confidential.WithTenantID(tenant)) from as many goroutines as it likes:
// each tenant's token is one partition, fetched once and then served from
// the cache everywhere until it expires.
//
// One client per process is enough and is correct (see below). A client
// keeps up to 1024 partitions in its memory; an app that serves more users
// than that at once can spread them over a few clients on the same Cache,
// choosing the client by a hash of the home account ID (a partition-affine
// pool), which also makes each client's memory smaller and its reads
// faster.
//
// # What it promises
//
//   - A shared client works. MSAL Go v1.10 calls Replace under a read lock
//     and reads its memory after releasing it, so a Replace that swapped
//     MSAL's memory for one partition would pull the tokens from under
//     another goroutine (a naive per-partition plugin fails most silent
//     calls on a shared client). The Cache makes MSAL's memory a working
//     set: the union of the partitions the client used recently. A
//     partition is dropped from it only when the set is full and the
//     partition has not been used for two seconds, so a concurrent reader
//     always finds its tokens. A partition counts as used when Replace hands
//     it to MSAL (after a load, however long the load took), including when
//     MSAL is served from its memory during an outage. A client made per
//     request costs the same whatever the number of clients made before
//     (the state kept for a client unused for five minutes is dropped a
//     little at a time, as new clients come). If MSAL rejects the working
//     set (Unmarshal fails), it is offered again after a wait that doubles
//     from 100 ms to a minute (MSAL's on-behalf-of store rejects every
//     one: see below).
//   - Isolation. What is stored for a partition is computed from each entry
//     of MSAL's memory: tokens, ID tokens and accounts with that
//     home_account_id; app tokens with client_id and realm (and
//     ext_cache_key) making that app partition key; the app's metadata
//     (no user data) with every partition. The store's key for a partition
//     is the prefix and a SHA-256 of prefix and partition key: no user,
//     tenant or client is named in clear.
//   - No lost updates. A write is a compare-and-set on the store's version,
//     merged three ways (the file cache's merge: the partition as this
//     client last saw it, as MSAL holds it now, as the store holds it) and
//     retried on conflict. Writers never overwrite each other's tokens.
//   - Cheap, coherent reads. With a store that sends change notices
//     (Notifier: both stores of this module), a Replace for a partition
//     MSAL already holds at the store's current version is a map lookup: no
//     store call, no decoding, no Unmarshal. A partition that another
//     process changes is read again at its next Replace, as soon as the
//     store's notice arrives. Decoded partitions of other clients are kept
//     in an in-process layer bounded in bytes (WithL1).
//   - Sign-out. RemovePartition stores a tombstone with a new generation
//     for the TTL, stamped with when it was called: every process drops
//     the partition from MSAL's memory at its next Replace. A sign-out is
//     undone only by a write whose request began after it: a sign-in after
//     it is stored at once (on any replica, and seen by the others as soon
//     as the store's notice arrives), while a token refresh that was in
//     flight across it (it read the partition before the sign-out and got
//     its answer after), a write kept during an outage that began before
//     it, and a write based on the old generation are dropped. The Cache
//     tells requests apart by their ctx (ctx.Done(): one per net/http
//     request), so pass the request's context (r.Context()) to MSAL's calls
//     and to RemovePartition. A ctx without Done (context.Background) gets
//     a conservative rule: a write through it into a partition that client
//     read alive within the last 35 seconds (MSAL gives a token request 30
//     seconds) is taken as a refresh begun before the sign-out and
//     dropped, so a user who signs in again that way within that time is
//     asked to sign in once more. Within a process, a refresh across a
//     sign-out is recognized without a clock; across replicas (and for
//     writes kept during an outage) the order is decided by wall-clock
//     times, so the replicas' clocks must agree to well within the time a
//     sign-out and the next sign-in take (seconds; NTP keeps them within
//     milliseconds). A token refresh never starts a new generation over a
//     sign-out, whatever the clocks say: a request that read the partition
//     before its token request (a silent call) is a refresh, and only a
//     request that read it just before its Export (a sign-in: MSAL reads
//     the partition only then) may. So a replica cut off from the store
//     that keeps serving a user who signed out elsewhere, and refreshes her
//     tokens, does not bring her back at the write-back. Removing an app-token partition (a daemon's) only
//     makes the next call get a new token: no write into it is dropped.
//   - Expiry. A partition expires when no process has used it for the TTL
//     (WithTTL, default 24 hours; reads renew it at most every quarter of
//     the TTL). An app-token partition expires with its last access token.
//   - Outage. When the store fails or does not answer within the timeout
//     (WithTimeout, default 2 s), MSAL is served from its memory (warm users
//     keep getting tokens), writes are kept in the process and written back
//     (merged) when the store answers again, which the Cache probes for in
//     the background, several times a second. A write kept is what the
//     process's clients read for that partition until it is written back:
//     no older copy (in the in-process layer, or a client's memory) hides
//     it. Users served during the outage keep their place in a full
//     working set: a sign-in kept meanwhile evicts a user nobody asked for. A Replace of a partition MSAL
//     does not hold (a user who signed in on another replica) still asks the
//     store, so such a user is served as soon as the store answers again.
//     While the store is out, such a call asks it at most about once a
//     second, one at a time and within a short bound; calls that come
//     meanwhile wait briefly for that answer or fail over at once. So a
//     store that is out, even one that accepts calls but never answers,
//     costs such calls a short wait now and then, not the timeout each.
//     The outage and the recovery are logged once each. A store that
//     answers reads but refuses writes (a READONLY Redis after a failover, a
//     Redis out of memory, a tandem whose database is down) serves reads,
//     but its outage ends only when it takes a kept write: until then the
//     write-back retries a few times a second (jittered), not at once. While
//     the store is out, changes made elsewhere to the partitions a client
//     holds are not seen. A sign-out (RemovePartition) during an outage
//     removes the partition from this process at once, is kept, and
//     returns nil. The writes kept for a partition are written back in the
//     order they were made, each ordered with the sign-outs made elsewhere
//     meanwhile by when it began (see Sign-out): a sign-in kept on a
//     replica cut off does not undo a later sign-out on another, and a
//     sign-out then a sign-in during one outage leave only the new
//     sign-in's tokens. Close reports the kept writes it could not write.
//   - A store that lost its data (see below) is the truth: users sign in
//     again.
//   - Security. With WithEncryptionKeys each blob is AES-256-GCM sealed,
//     with the store key as additional data: a blob copied to another key
//     does not open. A blob that does not open (other keys, tampered) is a
//     miss and a warning; it is never handed to MSAL. A Cache without keys
//     never takes a sealed blob for a partition or a sign-out: it is a
//     miss too. Without keys, blobs
//     are stored in clear: fine for NewMemoryStore, not for a shared Redis;
//     New logs one warning for a store that says it is shared (Sharer:
//     redisstore, pgstore) without keys. Nothing secret is logged, and
//     nothing at all without WithLogger.
//   - Key rotation. WithEncryptionKeys(new, old) seals with new and opens
//     with both. In a rolling deploy replicas run with two lists for a
//     while, so rotate in four steps, each deployed on every replica
//     before the next begins: [old, new] (still seals with old, already
//     opens new); then [new, old] (seals with new, which every replica
//     opens since the first step); then Reseal (or the command
//     distributed/cmd/reseal), which rewrites what is still sealed with
//     old through compare-and-set and counts what dropping old would cost
//     (a DryRun must count no partition sealed with an old key); then
//     [new]. Reseal lists the keys through the optional Scanner interface,
//     which every store of this module implements.
//   - A replica never overwrites what it cannot read. Skipping the first
//     step leaves replicas on [old] beside replicas on [new, old]; dropping
//     old before Reseal leaves partitions only old opens; a Cache without
//     keys beside Caches with them, or a release rolled back beside a
//     newer one that writes a newer record format, is the same. A replica
//     that finds a partition sealed with a key it lacks (or sealed, when
//     it has no keys), or in a newer format, reads it as empty (the user
//     signs in again on that replica) and never writes over it: its write
//     is withheld, not stored and not kept for later (Stats.Withheld,
//     Stats.Rejected; Export returns an error that says so, so MSAL's
//     call fails instead of reporting tokens kept that were not), and it logs one warning per cause (a key id, a
//     format) with the remedy: the same key list, and release, on every
//     replica. So a wrong sequence costs sign-ins on the replicas that lag,
//     never a stored token, and never brings a signed-out user back. A
//     sign-out (RemovePartition) is written over such a partition all the
//     same: it drops only what the user asked to drop. A value that is
//     damaged under a key the Cache holds (tampered, or copied from another
//     store key), or that is no partition record at all, is different: the
//     next write replaces it, which is how such a partition heals. Turning
//     encryption on is not a rolling change: a Cache with keys does not
//     trust a record in clear (whoever can write to the store could have
//     written it), reads it as empty and replaces it at its next write,
//     while Caches without keys leave sealed ones alone, so users sign in
//     again.
//
// # What MSAL Go v1.10 lets a cache do, and what it does not
//
//   - On-behalf-of (web APIs). MSAL keeps on-behalf-of tokens in a separate
//     in-memory store, partitioned by a hash of the incoming assertion. Its
//     Unmarshal rejects every input (MSAL Go issue 455), and after an
//     on-behalf-of request MSAL exports its other store under the
//     assertion's key. So a plugin can neither persist nor share
//     on-behalf-of tokens. The Cache never hands that store anything and
//     never stores a partition for an assertion (the filter finds no entry
//     of it in what MSAL exports), so on-behalf-of works exactly as without
//     a plugin: each process caches the tokens for the assertions it has
//     seen, in memory, and asks the identity provider once per assertion
//     and scope.
//   - RemoveAccount names no partition (it Replaces and Exports the empty
//     key). The Cache writes every partition the client holds that
//     RemoveAccount changed, so it works for an account the client read
//     recently (Account(ctx, id) first); RemovePartition is the sign-out
//     that works everywhere.
//   - Accounts() on a confidential client names no partition either: it
//     lists the accounts of the client's working set. Web apps look an
//     account up with Account(ctx, homeAccountID), which reads its
//     partition.
//
// # A store that loses its data (Redis without persistence)
//
// Put Redis in tandem with a database (Tiered, above): then a Redis that
// loses its data costs one database read per partition and nothing else.
// Otherwise run Redis with persistence (appendonly yes, with appendfsync everysec or
// always) or with replicas that take over (Redis Sentinel, a Cluster with a
// replica per master, a managed Redis that has both), so that a restart
// keeps the partitions. If a Redis without persistence restarts, or its
// data is flushed, every partition and every tombstone is gone, and the
// Cache takes the empty store as the truth: when it sees the store back, it
// reads each partition again and finds it empty, so every process drops the
// users' tokens from MSAL's memory, silent calls fail (MSAL's "no token
// found": the web app asks its users to sign in again), and each daemon
// tenant costs one token request to the identity provider, all at about the
// same time. Only what a process changed during the outage (a sign-in, a
// refreshed token) is written back. The Cache does not write back what
// MSAL still holds, on purpose: the tombstones of the users who signed out
// were lost too, so writing back what each process remembers would bring
// signed-out users' tokens back into the store. A web app that keeps its
// sessions in the same Redis (as examples/web-app does) loses them too.
//
// The Cache says so. At its first use of a store it writes a marker (one
// key under the key prefix, no expiry, nothing secret); when the store
// reports a lost or re-established connection, and when an outage ends, it
// reads the marker on its background goroutine (never on the hot path). A
// marker gone, or written again by another process, means the store lost
// its data: the Cache logs one warning naming the cause and the fixes
// above, counts it (Stats.Emptied, the metric
// msalcache.distributed.store.emptied) and writes the marker again. A
// Redis restarted with its data (appendonly), or a tandem (whose database
// still holds the marker), is not reported. Limits: in a Redis Cluster the
// marker lives on one node, so a node that restarts empty is seen only if
// it holds it (give each master a replica); a Redis that evicts keys under
// memory pressure (an allkeys-* policy) may evict the marker, and is then
// reported, which is true of what it evicted. The memory store keeps no
// marker: it lives and dies with the process.
//
// # Redis and a database in tandem
//
// Tiered(first, second) is a Store in two layers, so that the Cache needs
// no change: first (Redis) serves reads, second (pgstore) is the truth for
// versions and tombstones. Nothing reaches first that second did not
// commit: a write is a compare-and-set on second, then the same version is
// written to first from the write's base; a key first does not hold is read
// from second and copied to first, never over a copy someone wrote
// meanwhile, and checked against second again after the copy. So:
//
//   - A flush or an empty restart of Redis signs nobody out and brings no
//     signed-out user back: each partition, tombstones included, is read
//     once from the database and served from Redis again. Redis needs no
//     persistence.
//   - The hot path does not change: a partition MSAL holds at the current
//     version costs no Redis command and no query.
//   - Redis down (or not answering within half the call's time): calls go
//     to the database, none fails; what was written meanwhile is repaired in
//     Redis when it answers again, before its copies are used by the
//     process that wrote it.
//   - Database down: partitions Redis holds are still served (a replica
//     started during the outage too), writes fail and are kept by the Cache
//     and written back when the database returns, as in any outage; touches
//     are owed and paid then. Nothing is written to Redis meanwhile.
//   - A copy that a failure left stale in Redis is never served: a process
//     serves a copy only once it checked it against the database since the
//     key last changed (at its first load of the key, at its next load
//     after the database told of a change of it, and for every key once
//     more after Redis reconnected, was flushed or restarted). That covers
//     a writer that ended between its two writes, a write to Redis that
//     failed, and a Redis restored from files older than the database, for
//     running processes and for those started after; a signed-out user
//     stays signed out. It costs one database read per key a process loads,
//     and per change of a key per process that loads it again. The process
//     that wrote repairs such a copy in the background; a writer that read a
//     stale copy is told ErrConflict only after Redis holds the truth, so it
//     never loops. While the database is down, Redis's copies are served
//     unchecked: they are all there is.
//
// Tiered's Close closes both layers.
//
// # Operating it
//
// WithMeterProvider publishes these instruments through OpenTelemetry's
// metric API (scope github.com/msalcache/msalcache/distributed); the
// application picks the SDK and the exporter. The counters and gauges are
// read from the Cache's own counters (Stats) when the reader collects, so a
// silent call costs nothing more; only real store calls are timed.
//
// Health reports whether the store answers, since when it is down and how
// many writes wait, from the Cache's own calls and probes (no store call):
// a readiness probe can call it on every request.
//
//	msalcache.distributed.hits            counter   {hit}          layer: memory (MSAL's), l1, store
//	msalcache.distributed.misses          counter   {miss}         loads that found no partition
//	msalcache.distributed.writes          counter   {write}        writes the store took
//	msalcache.distributed.conflicts       counter   {conflict}     compare-and-set refusals (merged, retried)
//	msalcache.distributed.dropped_writes  counter   {write}        writes dropped: their partition was removed
//	msalcache.distributed.rejected        counter   {partition}    stored partitions that did not decrypt or parse
//	msalcache.distributed.withheld_writes counter   {write}        writes not made over a partition this process cannot read
//	msalcache.distributed.invalidations   counter   {invalidation} notices of changes made elsewhere
//	msalcache.distributed.store.errors    counter   {error}        store calls that failed
//	msalcache.distributed.store.emptied   counter   {event}        the store was found to have lost its data (below)
//	msalcache.distributed.store.duration  histogram s              store calls; operation: load, store, touch
//	msalcache.distributed.pending_writes  updown    {write}        writes kept for the store's return
//	msalcache.distributed.l1.size         updown    By             bytes held by the in-process layer
//	msalcache.distributed.store.down      updown    {outage}       1 while the store is out, else 0
//
// # Concurrency
//
// A Cache is safe for concurrent use and may serve any number of MSAL
// clients. It never holds a lock across a store call; a lock of one client's
// working set is held while MSAL's memory is replaced (an in-memory
// operation), so that the Cache knows what MSAL holds. Close stops the
// background write-back, waits for the Export and RemovePartition calls in
// progress (within the timeout), writes back what was kept (within the
// timeout again) and returns an error wrapping ErrUnavailable if some of it
// could not be stored. A write still in progress after Close's wait that
// the store does not take is reported to its caller: its Export (or
// RemovePartition) returns an error wrapping ErrClosed and ErrUnavailable,
// never nil. Close does not close the store, which its opener closes after
// the Cache. Close is idempotent, on
// the Cache and on every Store of this module: a second call returns nil
// and does nothing; other calls after Close return ErrClosed, which wraps
// net.ErrClosed.
package distributed
