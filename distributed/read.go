package distributed

import (
	"context"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/msaljson"
)

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
	// What this request reads is at least as old as now: a load answered
	// after a sign-out may hold what the store held before it.
	rd := reader{ctx.Done(), now}
	if c.npending.Load() > 0 {
		// A write kept during an outage (or after a write that ran out of
		// time) is newer than anything the store or the layer holds: MSAL
		// holds it until the write-back. Checked first, so that no older
		// copy hides it; free while nothing is kept.
		if p := c.pendingFor(key); p != nil {
			content := record{gen: p.baseGen, snap: p.ours}
			if p.remove {
				// The writes made after it are based on its generation:
				// they are known to follow it (see order).
				content = record{removed: true, gen: p.gen}
			}
			v.set(u, key, c.storeKey(key), 0, content, true, watch{}, rd, now, 0, c.unmarshaled)
			return nil
		}
	}
	if c.coherent {
		if touch, ok := v.current(key, rd, now, c.touchEvery(key)); ok {
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
			if c.present(v, u, key, skey, ver, rec, w, rd, now) {
				c.touch(ctx, key, skey, v)
			}
			return nil
		}
	}
	lctx, done := ctx, func() {}
	if c.isDown() {
		// The store is out: MSAL keeps what it holds, and reads it now (so
		// the working set keeps it: a served user is a used one). A
		// partition it does not hold (a user who signed in elsewhere) is
		// worth asking the store for: it may be back.
		if v.served(key, rd, now) {
			return nil
		}
		var ok bool
		if lctx, done, ok = c.probe(ctx); !ok {
			return nil
		}
	}
	value, ver, ok := c.loadValue(lctx, skey)
	done()
	// MSAL reads the partition after this returns: it is used from now,
	// not from when the load began (a load may outlast the grace period).
	now = c.cfg.now()
	if !ok {
		v.served(key, rd, now) // MSAL reads what it holds
		return nil
	}
	if touch, ok := v.holds(key, ver, w, rd, now, c.touchEvery(key)); ok {
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
	if c.present(v, u, key, skey, ver, rec, w, rd, now) && ver != 0 {
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
// read by rd, and reports whether the partition's expiry is
// due to be renewed. w was taken before rec was read.
func (c *Cache) present(v *view, u cache.Unmarshaler, key, skey string, ver Version, rec record, w watch, rd reader, now time.Time) bool {
	return v.set(u, key, skey, ver, rec, false, w, rd, now, c.touchEvery(key), c.unmarshaled)
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
// or parse, or that this Cache cannot read (see unreadable), is a miss.
func (c *Cache) decode(value []byte, skey string, memo map[string]string) record {
	if value == nil {
		c.st.misses.Add(1)
		return record{snap: msaljson.Empty}
	}
	rec, err := decodeRecord(value, skey, c.keys, memo)
	if err != nil {
		c.st.misses.Add(1)
		c.rejected(skey, err)
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
