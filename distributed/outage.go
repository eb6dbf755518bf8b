package distributed

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

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
			c.verify(c.bg)
		} else if c.markDue.Swap(false) {
			c.checkMarker(c.bg)
		}
		if c.flush(c.bg) {
			wait, backoff = retryMin, false
			continue
		}
		t.Reset(wait/2 + rand.N(wait/2))
		wait, backoff = min(2*wait, retryMax), true
	}
}

// flush writes the kept writes back, each partition's in the order they
// were made. It reports whether nothing is left.
func (c *Cache) flush(ctx context.Context) bool {
	c.mu.Lock()
	down, keys := c.down || c.logged, make([]string, 0, len(c.pending))
	for key := range c.pending {
		keys = append(keys, key)
	}
	c.mu.Unlock()
	if len(keys) == 0 {
		if !down {
			return true
		}
		// Probe with a read of a key no partition uses.
		_, _, ok := c.loadValue(ctx, c.cfg.prefix+"probe")
		return ok
	}
	for _, key := range keys {
		for w := c.firstKept(key); w != nil; w = c.firstKept(key) {
			if c.cfg.flushHook != nil {
				c.cfg.flushHook(w.key)
			}
			r := c.writeStore(ctx, w)
			if r.outcome == failed {
				return false
			}
			c.mu.Lock()
			// A removal kept or written meanwhile replaced the queue.
			if q := c.pending[key]; len(q) > 0 && q[0] == w {
				if len(q) == 1 {
					delete(c.pending, key)
					c.npending.Store(int64(len(c.pending)))
				} else {
					c.pending[key] = q[1:]
				}
			}
			c.mu.Unlock()
			// No client's view needs to be told: a write that changed the
			// store invalidated the key in the layer (so every view's copy
			// of it is stale), a client that was handed the kept write reads
			// the partition again (that copy was never the store's), and
			// without the layer every Replace asks the store.
		}
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

// firstKept returns the oldest write kept for key (nil: none).
func (c *Cache) firstKept(key string) *pendingWrite {
	c.mu.Lock()
	defer c.mu.Unlock()
	if q := c.pending[key]; len(q) > 0 {
		return q[0]
	}
	return nil
}
