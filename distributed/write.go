package distributed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/msaljson"
)

// A pendingWrite is a change of a partition to store: the three-way merge
// inputs (base, ours) or a removal, and when it began (see order.go).
type pendingWrite struct {
	key, skey string
	base      *msaljson.Snapshot
	baseGen   uint64
	ours      *msaljson.Snapshot
	remove    bool
	began     time.Time // a write: when its request began; a removal: when RemovePartition was called
	gen       uint64    // a removal: its tombstone's generation, chosen when RemovePartition is called
	refresh   bool      // its request read the partition alive before its token request (see readLog)
	kept      bool      // kept during an outage (see keptWrites)
	drop      bool      // the view knows it would undo a sign-out (see view.changes)
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
	end, err := c.beginWrite()
	if err != nil {
		return err
	}
	defer end()
	data, err := m.Marshal()
	if err != nil {
		return err
	}
	jobs, err := v.changes(data, h.PartitionKey, ctx.Done(), c.cfg.now())
	if err != nil {
		return fmt.Errorf("distributed: MSAL's cache: %w", err)
	}
	var errs []error
	for _, j := range jobs {
		j.skey = c.storeKey(j.key)
		if err := c.write(ctx, v, j); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// write stores a change made by MSAL, merged with what the store holds, or
// keeps it for the write-back. It fails only when the change could be
// neither stored nor kept (after Close).
func (c *Cache) write(ctx context.Context, v *view, w *pendingWrite) error {
	if w.drop {
		c.st.dropped.Add(1)
		c.log.Info("distributed: a write was dropped: its partition was removed while MSAL was refreshing it", "key", w.skey)
		v.stale(w.key)
		return nil
	}
	if c.isDown() || (c.npending.Load() > 0 && c.pendingFor(w.key) != nil) {
		// Out, or writes of this partition are kept: this one goes
		// behind them, in its order.
		return c.keep(w)
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
	case withheld:
		if v != nil {
			v.stale(w.key)
		}
		return errWithheld
	case failed:
		return c.keep(w)
	}
	return nil
}

type outcome int

const (
	written  outcome = iota // stored (or nothing needed storing)
	dropped                 // the partition was removed after the write's base: not stored
	failed                  // the store failed or the conflicts did not end: kept
	withheld                // the stored partition is unreadable to this Cache (see unreadable): not stored, not kept
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
			if theirs, err = decodeRecord(value, w.skey, c.keys, memo); err != nil && !w.remove && unreadable(err) {
				// Never overwritten: its tokens or its sign-out are for
				// the replicas that can read it. Not kept either: the
				// write is based on nothing this Cache could read.
				c.withhold(w.skey, err)
				return writeResult{outcome: withheld}
			} else if err != nil {
				c.st.rejected.Add(1)
				c.log.Warn("distributed: overwriting a stored partition that does not decrypt or parse", "key", w.skey, "err", err)
				theirs = record{snap: msaljson.Empty}
			}
		}
		out, v := order(w, theirs, value != nil)
		switch v {
		case unchanged:
			return writeResult{outcome: written, merged: theirs.snap, version: prev, gen: theirs.gen}
		case yielded:
			c.st.dropped.Add(1)
			c.log.Info("distributed: a sign-out kept during an outage gave way to a sign-in after it", "key", w.skey)
		case dropIt:
			c.st.dropped.Add(1)
			if w.remove {
				c.log.Info("distributed: a sign-out kept during an outage was dropped: the user signed in again after it", "key", w.skey)
			} else {
				c.log.Info("distributed: a write was dropped: its partition was removed after the write began", "key", w.skey)
			}
			return writeResult{outcome: dropped}
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
// partition). The store keeps a tombstone for the TTL, stamped with the
// time of the call: a write whose request began before it (a token refresh
// in flight anywhere, a write kept during an outage) is dropped instead of
// bringing the entries back, and a sign-in after it is stored (see the
// package doc). If the store is unavailable, the partition is removed from
// this process at once, and the removal is kept and written, in its order,
// when the store returns; RemovePartition then returns nil, as Export does
// for a write it keeps (Close reports what it could not write).
func (c *Cache) RemovePartition(ctx context.Context, key string) error {
	if key == "" {
		return errors.New("distributed: RemovePartition: empty partition key")
	}
	end, err := c.beginWrite()
	if err != nil {
		return err
	}
	defer end()
	w := &pendingWrite{key: key, skey: c.storeKey(key), remove: true, began: c.cfg.now(), gen: newGen()}
	c.forget(w)
	if c.isDown() {
		return c.keep(w)
	}
	c.mu.Lock()
	// The writes kept for it are ordered before it: it supersedes them.
	delete(c.pending, key)
	c.npending.Store(int64(len(c.pending)))
	c.mu.Unlock()
	if r := c.writeStore(ctx, w); r.outcome == failed {
		if err := c.keep(w); err != nil {
			return err
		}
	}
	c.forget(w) // a Replace during the write may have loaded the old value
	return nil
}

// forget drops a removed partition from this process: the layer and what
// MSAL holds (at the next Replace of it). No client's view needs to be
// told: invalidating the key in the layer makes every view's copy of it
// stale (its watch), and without the layer every Replace asks the store.
func (c *Cache) forget(w *pendingWrite) {
	if c.l1 != nil {
		c.l1.invalidate(w.skey)
	}
}

// errNotKept is returned for a write that the store did not take after
// Close's last flush: nothing would write it back.
var errNotKept = fmt.Errorf("distributed: the write was not stored, and the Cache is closed: %w (%w)", ErrUnavailable, ErrClosed)

// keep holds a write for the store's return, after those kept before for
// its partition (see keptWrites). After Close's last flush it keeps
// nothing and returns errNotKept.
func (c *Cache) keep(w *pendingWrite) error {
	c.mu.Lock()
	if c.sealed {
		c.mu.Unlock()
		c.log.Warn("distributed: a write was not stored: the store did not take it and the Cache is closed", "key", w.skey)
		return errNotKept
	}
	c.pending[w.key] = c.pending[w.key].add(w)
	c.npending.Store(int64(len(c.pending)))
	c.mu.Unlock()
	c.poke()
	return nil
}

// pendingFor returns the last write kept for key (nil: none): what MSAL
// holds of it until the write-back.
func (c *Cache) pendingFor(key string) *pendingWrite {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.pending[key]
	if len(q) == 0 {
		return nil
	}
	return q[len(q)-1]
}
