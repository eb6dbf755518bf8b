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
	jobs, err := v.changes(data, h.PartitionKey, c.cfg.now())
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
	if w.suspect {
		c.st.dropped.Add(1)
		c.log.Info("distributed: a write was dropped: its partition was removed while MSAL may have been refreshing it", "key", w.skey)
		v.stale(w.key)
		return nil
	}
	if c.isDown() {
		return c.keep(w)
	}
	switch r := c.writeStore(ctx, w); r.outcome {
	case written:
		if v != nil {
			v.written(w.key, w.ours, r.merged, r.version, r.gen, c.cfg.now())
		}
	case dropped, withheld:
		if v != nil {
			v.stale(w.key)
		}
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
		var out record
		switch {
		case w.remove:
			out = record{gen: newGen(), removed: true, at: c.cfg.now(), snap: msaljson.Empty}
		case value != nil && w.baseGen != 0 && theirs.gen != w.baseGen:
			// Removed (and maybe signed in again) since our base: our
			// change predates the removal and must not undo it.
			c.st.dropped.Add(1)
			c.log.Info("distributed: a write was dropped: its partition was removed after the write began", "key", w.skey)
			return writeResult{outcome: dropped}
		default:
			out = record{gen: theirs.gen, at: theirs.at, after: theirs.after, snap: msaljson.Merge(w.base, w.ours, theirs.snap)}
			if theirs.removed {
				// A new generation after the removal.
				out.at, out.after = c.cfg.now(), theirs.at
			}
			if out.gen == 0 {
				out.gen, out.at = newGen(), c.cfg.now()
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
	end, err := c.beginWrite()
	if err != nil {
		return err
	}
	defer end()
	w := &pendingWrite{key: key, skey: c.storeKey(key), remove: true}
	c.forget(w)
	if c.isDown() {
		if err := c.keep(w); err != nil {
			return err
		}
		return ErrUnavailable
	}
	if r := c.writeStore(ctx, w); r.outcome != written {
		if err := c.keep(w); err != nil {
			return err
		}
		return ErrUnavailable
	}
	c.forget(w) // a Replace during the write may have loaded the old value
	return nil
}

// forget drops a removed partition from this process: the layer, the
// writes kept for it, and what MSAL holds (at the next Replace of it). No
// client's view needs to be told: invalidating the key in the layer makes
// every view's copy of it stale (its watch), and without the layer every
// Replace asks the store.
func (c *Cache) forget(w *pendingWrite) {
	c.mu.Lock()
	delete(c.pending, w.key)
	c.npending.Store(int64(len(c.pending)))
	c.mu.Unlock()
	if c.l1 != nil {
		c.l1.invalidate(w.skey)
	}
}

// errNotKept is returned for a write that the store did not take after
// Close's last flush: nothing would write it back.
var errNotKept = fmt.Errorf("distributed: the write was not stored, and the Cache is closed: %w (%w)", ErrUnavailable, ErrClosed)

// keep holds a write for the store's return, merged with one kept before.
// After Close's last flush it keeps nothing and returns errNotKept.
func (c *Cache) keep(w *pendingWrite) error {
	c.mu.Lock()
	if c.sealed {
		c.mu.Unlock()
		c.log.Warn("distributed: a write was not stored: the store did not take it and the Cache is closed", "key", w.skey)
		return errNotKept
	}
	if old, ok := c.pending[w.key]; ok && !old.remove && !w.remove {
		// Both changes, against the older base.
		w = &pendingWrite{key: w.key, skey: w.skey, base: old.base, baseGen: old.baseGen, ours: msaljson.Merge(w.base, w.ours, old.ours)}
	} else if ok && old.remove && !w.remove {
		// Signed out, then signed in again during the outage: the new
		// tokens go after the removal.
		w = &pendingWrite{key: w.key, skey: w.skey, base: msaljson.Empty, ours: msaljson.Merge(w.base, w.ours, msaljson.Empty)}
	}
	c.pending[w.key] = w
	c.npending.Store(int64(len(c.pending)))
	c.mu.Unlock()
	c.poke()
	return nil
}

func (c *Cache) pendingFor(key string) *pendingWrite {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[key]
}
