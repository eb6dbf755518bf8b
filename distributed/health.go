package distributed

import (
	"context"
	"time"
)

// Health is what a Cache knows of its store, for a readiness probe or a
// status page.
type Health struct {
	// StoreUp is false during an outage: from a failed store call until
	// one succeeds (or, while writes are kept, until the store takes a
	// write: a store that answers reads and refuses writes is still out).
	// While it is false, MSAL is served from
	// process memory, writes are kept (Pending), and the store is probed in
	// the background until it answers.
	StoreUp bool
	// DownSince is when the outage began (the first failed call); zero
	// while StoreUp.
	DownSince time.Time
	// Pending is the number of partition writes kept in this process for
	// the store's return.
	Pending int
	// Closed is true once Close was called.
	Closed bool
}

// Health reports the Cache's view of its store without asking it: it is
// the outcome of the store calls the Cache made (those of MSAL's calls that
// reached the store, the write-back's, and its probes every 250 ms while
// the store is out). A store that implements Notifier and tells the Cache
// that its connection was lost or re-established (redisstore does) is
// asked at once, in the background, so an outage shows here within the
// store's timeout even when no call reaches it. A store that fails
// silently between calls shows as up until a call fails. Health takes a
// lock held only briefly; it is safe for concurrent use.
func (c *Cache) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := Health{StoreUp: !c.logged, Pending: len(c.pending), Closed: c.closed}
	if c.logged {
		h.DownSince = c.downAt
	}
	return h
}

// verify asks the store, on the write-back goroutine, after it said its
// connection was lost or re-established: a failure starts an outage (and
// the write-back's probes), a success ends one.
func (c *Cache) verify(ctx context.Context) {
	c.loadValue(ctx, c.cfg.prefix+"probe")
}
