package distributed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/internal/recordfmt"
	"github.com/msalcache/msalcache/internal/seal"
)

// ErrUnavailable is returned by RemovePartition when the store cannot be
// reached: the partition is removed from this process at once and from the
// store when it returns.
var ErrUnavailable = errors.New("distributed: the store is unavailable")

// Working set defaults (see view).
const (
	defaultViewMax   = 1024
	defaultViewGrace = 2 * time.Second
)

// How a write retries on ErrConflict, and how the write-back after an
// outage paces itself.
const (
	maxAttempts  = 16
	retryMin     = 100 * time.Millisecond
	retryMax     = 250 * time.Millisecond // the probe's period while the store is out
	probeJoin    = 250 * time.Millisecond // how long a Replace waits for another's probe
	probeEvery   = time.Second            // how often a Replace may probe a store that is out
	probeMax     = 200 * time.Millisecond // bound of a Replace's probe: a store that is back answers sooner
	viewIdle     = 5 * time.Minute        // a view unused this long may be dropped
	viewsToSweep = 64                     // ... once there are more views than this
)

// Cache is a cache.ExportReplace for confidential.WithCache that keeps one
// blob per partition key in a Store. One Cache may serve any number of MSAL
// clients; a client may be shared by any number of goroutines.
//
// A Cache is safe for concurrent use. Its methods never hold a lock across
// a store call.
type Cache struct {
	store    Store
	cfg      config
	keys     *seal.Keys
	l1       *l1 // nil: no in-process layer
	coherent bool
	log      *slog.Logger
	st       counters
	metrics  *metrics // nil: no MeterProvider

	views sync.Map // cache.Unmarshaler or cache.Marshaler (the MSAL manager) -> *view

	mu      sync.Mutex
	pending map[string]*pendingWrite // by partition key, during an outage
	down    bool                     // the store failed and has not answered since
	logged  bool                     // the outage was logged and its end was not
	refused bool                     // a write failed, and none was taken since
	downAt  time.Time                // when logged became true
	used    bool                     // a store call succeeded once
	probing chan struct{}            // closed when the Replace probing the store is done; nil: none
	probed  time.Time                // when a Replace's probe last failed
	closed  bool
	nviews  int

	isClosed atomic.Bool   // closed, for the hot path
	recheck  atomic.Bool   // the store's connection was lost or renewed: the write-back asks it (see verify)
	markDue  atomic.Bool   // the write-back checks the store's marker (see checkMarker)
	failures atomic.Uint64 // store failures recorded so far (see recover)
	marker   marker        // the store's marker as last seen; only the write-back goroutine
	marks    bool          // the store may lose its data: the marker is kept (not the memory store)

	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

type counters struct {
	l1Hits, memHits, storeReads, misses, writes, conflicts atomic.Int64
	errors, invalidations, unmarshals, dropped, rejected   atomic.Int64
	storeHits, emptied                                     atomic.Int64
}

// Stats are the Cache's counters since New.
type Stats struct {
	L1Hits        int64 // partitions served from the in-process layer
	MemoryHits    int64 // Replace calls that found MSAL holding the partition at the current version: nothing to do
	StoreHits     int64 // Replace calls that loaded the partition from the store
	StoreReads    int64 // loads from the store
	Misses        int64 // loads that found no partition (absent, removed, or not decryptable)
	Writes        int64 // successful writes to the store, tombstones included
	Conflicts     int64 // writes refused by the store's compare-and-set (retried after a merge)
	Errors        int64 // store calls that failed
	Invalidations int64 // notices from the store that a partition changed elsewhere
	Unmarshals    int64 // times MSAL's memory was replaced
	Dropped       int64 // writes dropped because their partition was removed after they began
	Rejected      int64 // stored blobs that did not decrypt or parse (each one also a miss)
	Emptied       int64 // times the store was found to have lost its data (see the package doc)
	Bytes         int64 // bytes held by the in-process layer now
	Pending       int   // writes kept for the store's return
	StoreDown     bool  // the last store call failed and none has succeeded since, or writes are kept and none was taken since (an outage)
}

// A pendingWrite is a change of a partition that the store could not take
// yet: the three-way merge inputs (base, ours) or a removal.
type pendingWrite struct {
	key, skey string
	base      *msaljson.Snapshot
	baseGen   uint64
	ours      *msaljson.Snapshot
	remove    bool
	suspect   bool // written into a partition just removed: maybe by a refresh begun before (see inFlight)
}

// New returns a Cache on store. It does not close the store: the caller who
// opened it closes it, after the Cache.
func New(store Store, opts ...Option) (*Cache, error) {
	if store == nil {
		return nil, errors.New("distributed: nil Store (use NewMemoryStore for one process)")
	}
	cfg := config{
		prefix: DefaultKeyPrefix, ttl: DefaultTTL, l1: DefaultL1, timeout: DefaultTimeout,
		viewMax: defaultViewMax, viewGrace: defaultViewGrace, now: time.Now,
	}
	for _, o := range opts {
		o.apply(&cfg)
	}
	keys, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	c := &Cache{
		store:   store,
		cfg:     cfg,
		keys:    keys,
		log:     cfg.logger,
		pending: map[string]*pendingWrite{},
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	_, inMemory := store.(*memoryStore)
	c.marks = !inMemory
	if keys == nil && isShared(store) {
		c.log.Warn("distributed: the store is shared and WithEncryptionKeys is not set: tokens are stored in clear, readable by whoever can read the store")
	}
	if n, ok := store.(Notifier); ok && cfg.l1 > 0 {
		c.l1 = newL1(cfg.l1)
		c.coherent = true
		n.Notify(c.notice)
	}
	if cfg.meter != nil {
		if c.metrics, c.store, err = newMetrics(c, cfg.meter, store); err != nil {
			return nil, fmt.Errorf("distributed: WithMeterProvider: %w", err)
		}
	}
	go c.writeBack()
	return c, nil
}

// storeKey is the store's name for a partition: the prefix and a hash, so
// that no user or tenant identifier is stored in clear.
func (c *Cache) storeKey(key string) string {
	return recordfmt.StoreKey(c.cfg.prefix, key)
}

// notice is the store's invalidation callback. It takes no lock that is
// held for long: the clients' views see the notice through their watches.
func (c *Cache) notice(skey string) {
	c.st.invalidations.Add(1)
	c.l1.invalidate(skey)
	if skey == "" {
		c.recheck.Store(true)
		c.poke()
	}
}

// watch returns a watch of the store's notices for skey, taken before a
// read of it.
func (c *Cache) watch(skey string) watch {
	if !c.coherent {
		return watch{}
	}
	return c.l1.watch(skey)
}

// view returns the state kept for one MSAL client's memory.
func (c *Cache) view(m any) (*view, error) {
	if c.isClosed.Load() {
		return nil, ErrClosed
	}
	if v, ok := c.views.Load(m); ok {
		return v.(*view), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if v, ok := c.views.Load(m); ok {
		return v.(*view), nil
	}
	if c.nviews >= viewsToSweep {
		c.sweepViewsLocked()
	}
	v := newView(c.cfg.viewMax, c.cfg.viewGrace)
	c.views.Store(m, v)
	c.nviews++
	return v, nil
}

// sweepViewsLocked drops views that have not been used for a while: those
// of clients that were made per request or per user and are gone.
func (c *Cache) sweepViewsLocked() {
	old := c.cfg.now().Add(-viewIdle)
	c.views.Range(func(m, v any) bool {
		if v.(*view).idleSince(old) {
			c.views.Delete(m)
			c.nviews--
		}
		return true
	})
}

// timeout returns ctx bounded by the Cache's timeout: a store slower than
// that is treated as out, and MSAL is served from memory, whatever time the
// caller would allow.
func (c *Cache) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.timeout)
}

// Replace implements cache.ExportReplace: it makes MSAL's memory hold the
// partition h.PartitionKey at its current version, alongside the partitions
// this client used recently. A partition MSAL already holds at the current
// version costs nothing. A store failure is not returned: MSAL is left with
// what it holds.
func (c *Cache) Replace(ctx context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	v, err := c.view(u)
	if err != nil {
		return err
	}
	key := h.PartitionKey
	if key == "" {
		// Not a partition (MSAL's Accounts and RemoveAccount on a
		// confidential client): MSAL keeps the partitions it holds.
		return nil
	}
	now := c.cfg.now()
	if c.coherent {
		if touch, ok := v.current(key, now, c.touchEvery(key)); ok {
			c.st.memHits.Add(1)
			if touch {
				c.touch(ctx, key, c.storeKey(key), v)
			}
			return nil
		}
	}
	skey := c.storeKey(key)
	w := c.watch(skey)
	if c.coherent {
		if ver, rec, ok := c.l1.get(skey); ok {
			c.st.l1Hits.Add(1)
			if c.present(v, u, key, skey, ver, rec, w, now) {
				c.touch(ctx, key, skey, v)
			}
			return nil
		}
	}
	if p := c.pendingFor(key); p != nil {
		// Written by this process while the store was out: MSAL holds
		// that until the write-back.
		content := record{gen: p.baseGen, snap: p.ours}
		if p.remove {
			content = record{removed: true}
		}
		v.set(u, key, skey, 0, content, true, watch{}, now, 0, c.unmarshaled)
		return nil
	}
	lctx, done := ctx, func() {}
	if c.isDown() {
		// The store is out: MSAL keeps what it holds. A partition it does
		// not hold (a user who signed in elsewhere) is worth asking the
		// store for: it may be back.
		if v.hasEntries(key) {
			return nil
		}
		var ok bool
		if lctx, done, ok = c.probe(ctx); !ok {
			return nil
		}
	}
	value, ver, ok := c.loadValue(lctx, skey)
	done()
	if !ok {
		return nil
	}
	if touch, ok := v.holds(key, ver, w, now, c.touchEvery(key)); ok {
		// The version MSAL holds: nothing to decode or replace.
		c.st.memHits.Add(1)
		if touch {
			c.touch(ctx, key, skey, v)
		}
		return nil
	}
	rec := c.decode(value, skey, v.memoOf(key))
	if value != nil && !rec.removed {
		c.st.storeHits.Add(1)
	}
	if c.coherent && !rec.removed {
		c.l1.put(skey, ver, rec, w.stamp)
	}
	if c.present(v, u, key, skey, ver, rec, w, now) && ver != 0 {
		c.touch(ctx, key, skey, v)
	}
	return nil
}

// probe decides whether a Replace may ask the store while it is out, and
// returns the ctx to ask it with. One Replace at a time asks (its load is
// the probe, within probeMax; done ends it), and none for probeEvery after
// a probe failed: meanwhile the background probe, more frequent, finds the
// store back. A Replace that comes while another probes waits for the
// outcome, and asks only if the store is back. So a store that is out, even
// one that accepts calls but never answers, costs a call a short wait now
// and then, not every call the timeout.
func (c *Cache) probe(ctx context.Context) (pctx context.Context, done func(), ok bool) {
	c.mu.Lock()
	if !c.down {
		c.mu.Unlock()
		return ctx, func() {}, true
	}
	if c.probing == nil {
		if time.Since(c.probed) < probeEvery {
			c.mu.Unlock()
			return nil, nil, false
		}
		ch := make(chan struct{})
		c.probing = ch
		c.mu.Unlock()
		pctx, cancel := context.WithTimeout(ctx, probeMax)
		return pctx, func() {
			cancel()
			c.mu.Lock()
			c.probing = nil
			if c.down {
				c.probed = time.Now()
			}
			c.mu.Unlock()
			close(ch)
		}, true
	}
	ch := c.probing
	c.mu.Unlock()
	t := time.NewTimer(probeJoin)
	defer t.Stop()
	select {
	case <-ch:
		return ctx, func() {}, !c.isDown()
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, nil, false
}

// present makes MSAL's memory hold rec (the store's version ver) for key,
// and reports whether the partition's expiry is due to be renewed. w was
// taken before rec was read.
func (c *Cache) present(v *view, u cache.Unmarshaler, key, skey string, ver Version, rec record, w watch, now time.Time) bool {
	return v.set(u, key, skey, ver, rec, false, w, now, c.touchEvery(key), c.unmarshaled)
}

// unmarshaled counts a replacement of MSAL's memory.
func (c *Cache) unmarshaled(err error) {
	c.st.unmarshals.Add(1)
	if err != nil {
		// MSAL Go's on-behalf-of store rejects every Unmarshal; it keeps its
		// own memory, which is all it can use.
		c.log.Debug("distributed: MSAL did not take the partitions; it keeps its own memory", "err", err)
	}
}

// loadValue reads skey from the store; ok is false when the store failed.
func (c *Cache) loadValue(ctx context.Context, skey string) ([]byte, Version, bool) {
	cctx, cancel := c.timeout(ctx)
	defer cancel()
	c.st.storeReads.Add(1)
	since := c.failures.Load()
	value, ver, err := c.store.Load(cctx, skey)
	if err != nil {
		c.failed(ctx, err)
		return nil, 0, false
	}
	c.recovered(since)
	return value, ver, true
}

// decode reads a stored value (nil: none); a value that does not decrypt
// or parse is a miss.
func (c *Cache) decode(value []byte, skey string, memo map[string]string) record {
	if value == nil {
		c.st.misses.Add(1)
		return record{snap: msaljson.Empty}
	}
	rec, err := decodeRecord(value, skey, c.keys, memo)
	if err != nil {
		c.st.misses.Add(1)
		c.st.rejected.Add(1)
		c.log.Warn("distributed: a stored partition does not decrypt or parse; treated as empty", "key", skey, "err", err)
		return record{snap: msaljson.Empty}
	}
	if rec.removed {
		c.st.misses.Add(1)
	}
	return rec
}

// touchEvery is how often a partition's expiry is renewed while it is used.
func (c *Cache) touchEvery(key string) time.Duration {
	if msaljson.IsAppPartition(key) {
		return 0 // app partitions expire with their tokens: never renewed by reads
	}
	return c.cfg.ttl / 4
}

func (c *Cache) touch(ctx context.Context, key, skey string, v *view) {
	if msaljson.IsAppPartition(key) || c.isDown() {
		return
	}
	cctx, cancel := c.timeout(ctx)
	defer cancel()
	since := c.failures.Load()
	if err := c.store.Touch(cctx, skey, c.cfg.ttl); err != nil {
		c.failed(ctx, err)
		v.untouched(key)
		return
	}
	c.recovered(since)
}

// ttl is the expiry of a partition written with content s: the sliding TTL,
// or for app tokens the life of the longest-lived access token, if shorter.
func (c *Cache) ttl(key string, s *msaljson.Snapshot) time.Duration {
	if !msaljson.IsAppPartition(key) {
		return c.cfg.ttl
	}
	var last int64
	for _, entry := range s.Sections["AccessToken"] {
		var e struct {
			ExpiresOn json.RawMessage `json:"expires_on"`
		}
		if json.Unmarshal([]byte(entry), &e) != nil {
			continue
		}
		raw := string(e.ExpiresOn)
		if uq, err := strconv.Unquote(raw); err == nil {
			raw = uq
		}
		if t, err := strconv.ParseInt(raw, 10, 64); err == nil && t > last {
			last = t
		}
	}
	d := time.Unix(last, 0).Sub(c.cfg.now())
	return min(max(d, time.Second), c.cfg.ttl)
}

// Export implements cache.ExportReplace: it writes the partition
// h.PartitionKey, computed from each entry of MSAL's memory, if MSAL
// changed it, merged with what other writers stored since. With the empty
// key (MSAL's RemoveAccount) it writes every partition MSAL holds that
// changed. While the store is out, the change is kept and written when it
// returns; Export then returns nil.
func (c *Cache) Export(ctx context.Context, m cache.Marshaler, h cache.ExportHints) error {
	v, err := c.view(m)
	if err != nil {
		return err
	}
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	jobs, err := v.changes(data, h.PartitionKey, c.cfg.now())
	if err != nil {
		return fmt.Errorf("distributed: MSAL's cache: %w", err)
	}
	for _, j := range jobs {
		j.skey = c.storeKey(j.key)
		c.write(ctx, v, j)
	}
	return nil
}

// write stores a change made by MSAL (or kept during an outage), merged
// with what the store holds.
func (c *Cache) write(ctx context.Context, v *view, w *pendingWrite) {
	if w.suspect {
		c.st.dropped.Add(1)
		c.log.Info("distributed: a write was dropped: its partition was removed while MSAL may have been refreshing it", "key", w.skey)
		v.stale(w.key)
		return
	}
	if c.isDown() {
		c.keep(w)
		return
	}
	switch r := c.writeStore(ctx, w); r.outcome {
	case written:
		if v != nil {
			v.written(w.key, w.ours, r.merged, r.version, r.gen, c.cfg.now())
		}
	case dropped:
		if v != nil {
			v.stale(w.key)
		}
	case failed:
		c.keep(w)
	}
}

type outcome int

const (
	written outcome = iota // stored (or nothing needed storing)
	dropped                // the partition was removed after the write's base: not stored
	failed                 // the store failed or the conflicts did not end: kept
)

type writeResult struct {
	outcome outcome
	merged  *msaljson.Snapshot
	version Version
	gen     uint64
}

// writeStore is the compare-and-set loop: load, merge, store, until the
// store takes it or the attempts run out.
func (c *Cache) writeStore(ctx context.Context, w *pendingWrite) writeResult {
	cctx, cancel := c.timeout(ctx)
	defer cancel()
	var memo map[string]string
	if w.base != nil {
		memo = w.base.Seen
	}
	for attempt := range maxAttempts {
		if attempt > 0 {
			c.st.conflicts.Add(1)
			// Jittered exponential backoff: the writers of one partition
			// spread out instead of colliding again.
			backoff := min(time.Duration(100<<attempt)*time.Microsecond, 50*time.Millisecond)
			if !sleep(cctx, time.Duration(rand.Int64N(int64(backoff)))+time.Microsecond) {
				break // out of time, not a store failure: kept below
			}
		}
		if cctx.Err() != nil {
			break // out of time before asking, not a store failure: kept below
		}
		c.st.storeReads.Add(1)
		since := c.failures.Load()
		value, prev, err := c.store.Load(cctx, w.skey)
		if err != nil {
			c.failed(ctx, err)
			return writeResult{outcome: failed}
		}
		c.recovered(since)
		theirs := record{snap: msaljson.Empty}
		if value != nil {
			if theirs, err = decodeRecord(value, w.skey, c.keys, memo); err != nil {
				c.st.rejected.Add(1)
				c.log.Warn("distributed: overwriting a stored partition that does not decrypt or parse", "key", w.skey, "err", err)
				theirs = record{snap: msaljson.Empty}
			}
		}
		var out record
		switch {
		case w.remove:
			out = record{gen: newGen(), removed: true, snap: msaljson.Empty}
		case value != nil && w.baseGen != 0 && theirs.gen != w.baseGen:
			// Removed (and maybe signed in again) since our base: our
			// change predates the removal and must not undo it.
			c.st.dropped.Add(1)
			c.log.Info("distributed: a write was dropped: its partition was removed after the write began", "key", w.skey)
			return writeResult{outcome: dropped}
		default:
			out = record{gen: theirs.gen, snap: msaljson.Merge(w.base, w.ours, theirs.snap)}
			if out.gen == 0 {
				out.gen = newGen()
			}
			if value != nil && !theirs.removed && out.snap.Equal(theirs.snap) {
				return writeResult{outcome: written, merged: theirs.snap, version: prev, gen: theirs.gen}
			}
		}
		memo = theirs.snap.Seen
		next := NewVersion()
		ttl := c.cfg.ttl
		if !out.removed {
			ttl = c.ttl(w.key, out.snap)
		}
		since = c.failures.Load()
		err = c.store.Store(cctx, w.skey, encodeRecord(out, w.skey, c.keys), prev, next, ttl)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			c.writeFailed(ctx, err)
			return writeResult{outcome: failed}
		}
		c.tookWrite(since)
		c.st.writes.Add(1)
		if c.coherent {
			// Our own write: whatever the layer held is older. The next
			// Replace reads it back (an entry put now could race a notice).
			c.l1.invalidate(w.skey)
		}
		return writeResult{outcome: written, merged: out.snap, version: next, gen: out.gen}
	}
	c.st.errors.Add(1)
	c.log.Warn("distributed: a write kept conflicting; it is kept and retried", "key", w.skey)
	return writeResult{outcome: failed}
}

func newGen() uint64 { return uint64(NewVersion()) }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// RemovePartition removes the partition key for every process: sign-out.
// MSAL's RemoveAccount cannot do it on a partitioned cache (it names no
// partition). The store keeps a tombstone for the TTL, so a write that began
// before the removal (a token refresh in flight anywhere, or a write kept
// during an outage) is dropped instead of bringing the entries back. If the
// store is unavailable, the partition is removed from this process at once,
// the removal is written when the store returns, and the error wraps
// ErrUnavailable.
func (c *Cache) RemovePartition(ctx context.Context, key string) error {
	if key == "" {
		return errors.New("distributed: RemovePartition: empty partition key")
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.mu.Unlock()
	w := &pendingWrite{key: key, skey: c.storeKey(key), remove: true}
	c.forget(w)
	if c.isDown() {
		c.keep(w)
		return ErrUnavailable
	}
	if r := c.writeStore(ctx, w); r.outcome != written {
		c.keep(w)
		return ErrUnavailable
	}
	c.forget(w) // a Replace during the write may have loaded the old value
	return nil
}

// forget drops a removed partition from this process: the layer, the
// writes kept for it, and what MSAL holds (at the next Replace of it).
func (c *Cache) forget(w *pendingWrite) {
	c.mu.Lock()
	delete(c.pending, w.key)
	c.mu.Unlock()
	if c.l1 != nil {
		c.l1.invalidate(w.skey)
	}
	c.views.Range(func(_, v any) bool {
		v.(*view).stale(w.key)
		return true
	})
}

// keep holds a write for the store's return, merged with one kept before.
func (c *Cache) keep(w *pendingWrite) {
	c.mu.Lock()
	if old, ok := c.pending[w.key]; ok && !old.remove && !w.remove {
		// Both changes, against the older base.
		w = &pendingWrite{key: w.key, skey: w.skey, base: old.base, baseGen: old.baseGen, ours: msaljson.Merge(w.base, w.ours, old.ours)}
	} else if ok && old.remove && !w.remove {
		// Signed out, then signed in again during the outage: the new
		// tokens go after the removal.
		w = &pendingWrite{key: w.key, skey: w.skey, base: msaljson.Empty, ours: msaljson.Merge(w.base, w.ours, msaljson.Empty)}
	}
	c.pending[w.key] = w
	c.mu.Unlock()
	c.poke()
}

func (c *Cache) pendingFor(key string) *pendingWrite {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[key]
}

func (c *Cache) isDown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
}

// failed records a store failure; the first one of an outage is logged. A
// call that failed because its caller gave up does not count.
func (c *Cache) failed(ctx context.Context, err error) {
	if ctx.Err() != nil && !errors.Is(err, ErrClosed) {
		return
	}
	c.st.errors.Add(1)
	c.mu.Lock()
	c.failures.Add(1)
	c.down = true
	log := !c.logged
	c.logged = true
	if log {
		c.downAt = time.Now()
	}
	c.mu.Unlock()
	if log {
		c.log.Warn("distributed: the store is unavailable; serving tokens from process memory and keeping writes until it returns", "err", err)
		c.poke()
	}
}

// writeFailed records a failed write: see recover.
func (c *Cache) writeFailed(ctx context.Context, err error) {
	if ctx.Err() == nil {
		c.mu.Lock()
		c.refused = true
		c.mu.Unlock()
	}
	c.failed(ctx, err)
}

// recovered records a successful read; tookWrite a successful write; since
// is c.failures read before the call was made. The end of an outage is
// logged and everything learned from the store before is verified again.
// After a write failed, or while writes are kept, a read does not end the
// outage (the store is used again for reads): a store may answer reads and
// refuse writes (a READONLY Redis, a tandem whose database is down); the
// outage ends when the store takes a write. A call during which a failure
// was recorded changes nothing: it may have been answered before the store
// failed (a slow answer that arrives after another caller saw the store
// go), so it is no news that the store is back.
func (c *Cache) recovered(since uint64) { c.recover(false, since) }

func (c *Cache) tookWrite(since uint64) { c.recover(true, since) }

func (c *Cache) recover(wrote bool, since uint64) {
	c.mu.Lock()
	if c.failures.Load() != since {
		first := !c.used
		c.used = true
		c.mu.Unlock()
		if first && c.marks {
			c.markDue.Store(true)
			c.poke()
		}
		return
	}
	c.down = false
	if wrote {
		c.refused = false
	}
	n := len(c.pending)
	ended := c.logged && (wrote || (n == 0 && !c.refused))
	if ended {
		c.logged = false
	}
	first := !c.used
	c.used = true
	c.mu.Unlock()
	if c.marks && (ended || first) {
		// First use, or the end of an outage: the write-back checks the
		// store's marker.
		c.markDue.Store(true)
		if first {
			c.poke()
		}
	}
	if ended {
		c.log.Info("distributed: the store is available again; writing back the writes kept", "pending", n)
		if c.l1 != nil {
			c.notice("")
		}
		c.poke()
	}
}

func (c *Cache) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeBack runs until Close: while the store is out or writes are kept, it
// probes the store and writes them back. After a turn that failed it waits
// (jittered, growing up to retryMax) and is not woken meanwhile: a store
// that answers reads and refuses writes would otherwise wake it at once.
func (c *Cache) writeBack() {
	defer close(c.done)
	wait := retryMin
	t := time.NewTimer(time.Hour)
	t.Stop()
	backoff := false
	for {
		wake := c.wake
		if backoff {
			wake = nil
		}
		select {
		case <-c.quit:
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		if c.recheck.Swap(false) {
			c.verify(context.Background())
		} else if c.markDue.Swap(false) {
			c.checkMarker(context.Background())
		}
		if c.flush(context.Background()) {
			wait, backoff = retryMin, false
			continue
		}
		t.Reset(wait/2 + rand.N(wait/2))
		wait, backoff = min(2*wait, retryMax), true
	}
}

// flush writes the kept writes back. It reports whether nothing is left.
func (c *Cache) flush(ctx context.Context) bool {
	c.mu.Lock()
	down, work := c.down || c.logged, make([]*pendingWrite, 0, len(c.pending))
	for _, w := range c.pending {
		work = append(work, w)
	}
	c.mu.Unlock()
	if len(work) == 0 {
		if !down {
			return true
		}
		// Probe with a read of a key no partition uses.
		_, _, ok := c.loadValue(ctx, c.cfg.prefix+"probe")
		return ok
	}
	for _, w := range work {
		r := c.writeStore(ctx, w)
		if r.outcome == failed {
			return false
		}
		c.mu.Lock()
		if c.pending[w.key] == w {
			delete(c.pending, w.key)
		}
		c.mu.Unlock()
		// Every client re-reads the partition at its next Replace; what
		// they write meanwhile is based on the generation just written.
		c.views.Range(func(_, v any) bool {
			v.(*view).writtenBack(w.key, r)
			return true
		})
	}
	c.mu.Lock()
	left, down := len(c.pending), c.down || c.logged
	c.mu.Unlock()
	if left == 0 && down {
		_, _, ok := c.loadValue(ctx, c.cfg.prefix+"probe")
		return ok
	}
	return left == 0
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := Stats{
		L1Hits:        c.st.l1Hits.Load(),
		MemoryHits:    c.st.memHits.Load(),
		StoreReads:    c.st.storeReads.Load(),
		Misses:        c.st.misses.Load(),
		Writes:        c.st.writes.Load(),
		Conflicts:     c.st.conflicts.Load(),
		Errors:        c.st.errors.Load(),
		Invalidations: c.st.invalidations.Load(),
		Unmarshals:    c.st.unmarshals.Load(),
		Dropped:       c.st.dropped.Load(),
		Rejected:      c.st.rejected.Load(),
		StoreHits:     c.st.storeHits.Load(),
		Emptied:       c.st.emptied.Load(),
	}
	if c.l1 != nil {
		s.Bytes = c.l1.size()
	}
	c.mu.Lock()
	s.Pending = len(c.pending)
	s.StoreDown = c.down || c.logged
	c.mu.Unlock()
	return s
}

// Close stops the write-back, tries once more (within the timeout) to write
// what was kept during an outage, and reports what could not be written.
// It does not close the store. A second Close returns nil and does
// nothing; other calls after Close return ErrClosed (which wraps
// net.ErrClosed).
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.isClosed.Store(true)
	c.mu.Unlock()
	close(c.quit)
	<-c.done
	if err := c.metrics.close(); err != nil {
		c.log.Debug("distributed: unregistering the metrics", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.timeout)
	defer cancel()
	if !c.flush(ctx) {
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n > 0 {
			return fmt.Errorf("distributed: Close: %d partition writes could not be stored: %w", n, ErrUnavailable)
		}
	}
	return nil
}
