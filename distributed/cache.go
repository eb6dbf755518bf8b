package distributed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/msalcache/msalcache/internal/recordfmt"
	"github.com/msalcache/msalcache/internal/seal"
)

// ErrUnavailable means the store cannot be reached. A store may wrap it
// (redisstore does while its server is down); Close's error wraps it when
// writes kept during an outage (sign-ins, refreshed tokens, sign-outs)
// could not be written. RemovePartition does not return it: a sign-out the
// store cannot take is kept, like any write.
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
	viewsPerNew  = 4                      // views the sweep looks at per new view
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
	causes   causes   // of stored values this Cache cannot read, logged (see rejected)

	views sync.Map // cache.Unmarshaler or cache.Marshaler (the MSAL manager) -> *view

	mu      sync.Mutex
	pending map[string]keptWrites // by partition key, during an outage
	down    bool                  // the store failed and has not answered since
	logged  bool                  // the outage was logged and its end was not
	refused bool                  // a write failed, and none was taken since
	downAt  time.Time             // when logged became true
	used    bool                  // a store call succeeded once
	probing chan struct{}         // closed when the Replace probing the store is done; nil: none
	probed  time.Time             // when a Replace's probe last failed
	closed  bool
	swept   []viewEntry   // every view, in the order the sweep visits them
	sweepAt int           // the next view the sweep looks at
	writing int           // Export and RemovePartition calls in progress (see beginWrite)
	idle    chan struct{} // closed when writing drops to 0; nil unless Close waits for it
	sealed  bool          // Close's last flush took the kept writes: none can be kept any more

	isClosed atomic.Bool   // closed, for the hot path
	npending atomic.Int64  // len(pending), for the hot path; written under mu
	recheck  atomic.Bool   // the store's connection was lost or renewed: the write-back asks it (see verify)
	markDue  atomic.Bool   // the write-back checks the store's marker (see checkMarker)
	failures atomic.Uint64 // store failures recorded so far (see recover)
	marker   marker        // the store's marker as last seen; only the write-back goroutine
	marks    bool          // the store may lose its data: the marker is kept (not the memory store)

	wake   chan struct{}
	quit   chan struct{}
	done   chan struct{}
	bg     context.Context // the write-back's store calls; Close cancels it
	stopBG context.CancelFunc
}

type counters struct {
	l1Hits, memHits, storeReads, misses, writes, conflicts atomic.Int64
	errors, invalidations, unmarshals, dropped, rejected   atomic.Int64
	storeHits, emptied, withheld                           atomic.Int64
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
	Dropped       int64 // writes dropped because their partition was removed after they began (and sign-outs kept during an outage, dropped because the user signed in again after them)
	Rejected      int64 // stored blobs that did not decrypt or parse (each one also a miss)
	Withheld      int64 // writes not made: the stored partition is sealed with a key this Cache lacks, or in a newer format (see Key rotation)
	Emptied       int64 // times the store was found to have lost its data (see the package doc)
	Bytes         int64 // bytes held by the in-process layer now
	Pending       int   // writes kept for the store's return
	StoreDown     bool  // the last store call failed and none has succeeded since, or writes are kept and none was taken since (an outage)
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
		pending: map[string]keptWrites{},
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	c.bg, c.stopBG = context.WithCancel(context.Background())
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
	c.sweepViewsLocked()
	v := newView(c.cfg.viewMax, c.cfg.viewGrace)
	c.views.Store(m, v)
	c.swept = append(c.swept, viewEntry{m, v})
	return v, nil
}

// A viewEntry is a view and the MSAL manager it is for.
type viewEntry struct {
	m any
	v *view
}

// sweepViewsLocked drops views that have not been used for a while: those
// of clients that were made per request or per user and are gone. It looks
// at viewsPerNew views, going round, so a new client costs the same however
// many views there are, and a view idle for viewIdle is dropped within a
// round (as many new views as a quarter of the views), so there are at
// most about a third more views than clients used within viewIdle.
func (c *Cache) sweepViewsLocked() {
	if len(c.swept) < viewsToSweep {
		return
	}
	old := c.cfg.now().Add(-viewIdle)
	for range viewsPerNew {
		if c.sweepAt >= len(c.swept) {
			c.sweepAt = 0
		}
		e := c.swept[c.sweepAt]
		if !e.v.idleSince(old) {
			c.sweepAt++
			continue
		}
		c.views.Delete(e.m)
		last := len(c.swept) - 1
		c.swept[c.sweepAt] = c.swept[last]
		c.swept[last] = viewEntry{}
		c.swept = c.swept[:last]
	}
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
		Withheld:      c.st.withheld.Load(),
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

// Close stops the write-back, waits for the writes in progress (Export,
// RemovePartition) to end, tries once more to write what was kept during an
// outage, and reports what could not be written. Each of the two waits is
// bounded by the timeout (WithTimeout), so Close returns within about twice
// the timeout. A write still in progress after the first wait that the
// store does not take is not kept: its Export or RemovePartition returns an
// error wrapping ErrClosed and ErrUnavailable. Close does not close the
// store. A second Close returns nil and does nothing; other calls after
// Close return ErrClosed (which wraps net.ErrClosed).
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.isClosed.Store(true)
	if c.writing > 0 {
		c.idle = make(chan struct{})
	}
	idle := c.idle
	c.mu.Unlock()
	// The write-back stops at once: its store calls end with its ctx.
	c.stopBG()
	close(c.quit)
	wait, cancel := context.WithTimeout(context.Background(), c.cfg.timeout)
	defer cancel()
	if idle != nil {
		// Each store call of a write in progress is bounded by the
		// timeout: what the write keeps is written below.
		select {
		case <-idle:
		case <-wait.Done():
			c.log.Warn("distributed: Close: writes still in progress after the timeout; those the store does not take are reported to their callers")
		}
	}
	select {
	case <-c.done:
	case <-wait.Done():
		c.log.Warn("distributed: Close: the write-back did not stop within the timeout")
	}
	if err := c.metrics.close(); err != nil {
		c.log.Debug("distributed: unregistering the metrics", "err", err)
	}
	ctx, cancelFlush := context.WithTimeout(context.Background(), c.cfg.timeout)
	defer cancelFlush()
	c.mu.Lock()
	c.sealed = true // keep refuses from now on: nothing would write it
	c.mu.Unlock()
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

// beginWrite counts an Export or RemovePartition in progress, for Close to
// wait for; the caller calls end when it is done. It fails after Close.
func (c *Cache) beginWrite() (end func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	c.writing++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.writing--
		if c.writing == 0 && c.idle != nil {
			close(c.idle)
			c.idle = nil
		}
	}, nil
}
