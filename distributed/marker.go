package distributed

import (
	"context"
	"errors"

	"github.com/msalcache/msalcache/internal/recordfmt"
)

// The store's marker tells a Cache whether the store lost its data while
// it was out of sight (a Redis restarted without persistence, a flush): the
// Cache writes it at its first use of the store, with no expiry, and reads
// it when the store says its connection was lost or re-established and when
// an outage ends. A marker gone, or written again by another process (its
// version changed), means the store came back empty: every partition and
// every sign-out's tombstone went with it. The marker is one key under the
// key prefix (so apps sharing a store with different prefixes have their
// own; in a Redis Cluster it lives on one node); the hot path never reads
// it. A store that evicts keys under memory pressure may evict it too, and
// then it is reported as emptied, which is true of what it evicted.
//
// A marker is the Cache's knowledge of that key. Only the write-back
// goroutine reads or changes ver.
type marker struct {
	ver Version // the version last seen or written; 0: not known yet
}

// markerValue is what the marker holds: nothing secret, a note for whoever
// finds it.
var markerValue = []byte("msalcache: present while this store keeps the token cache's data; do not delete")

// markerKey is the store key of the marker.
func (c *Cache) markerKey() string { return recordfmt.MarkerKey(c.cfg.prefix) }

// checkMarker reads the store's marker, on the write-back goroutine, and
// reports a store that came back empty (see markerName). It writes the
// marker when the store has none. A store call that fails starts an outage
// (the write-back's probes then find the store back, and the marker is
// checked again).
func (c *Cache) checkMarker(ctx context.Context) {
	key := c.markerKey()
	// Not loadValue: the marker is no partition read (Stats.StoreReads).
	lctx, cancel := c.timeout(ctx)
	since := c.failures.Load()
	_, ver, err := c.store.Load(lctx, key)
	cancel()
	if err != nil {
		c.failed(ctx, err)
		return
	}
	c.recovered(since)
	switch {
	case ver == c.marker.ver && ver != 0:
		c.log.Debug("distributed: the store still holds its marker", "key", key)
		return
	case ver != 0:
		// Written by another process: after an empty restart if this
		// process had seen another version.
		if c.marker.ver != 0 {
			c.emptied(key)
		}
		c.marker.ver = ver
		return
	}
	if c.marker.ver != 0 {
		c.emptied(key)
		c.marker.ver = 0
	}
	cctx, cancel := c.timeout(ctx)
	defer cancel()
	next := NewVersion()
	since = c.failures.Load()
	switch err := c.store.Store(cctx, key, markerValue, 0, next, 0); {
	case err == nil:
		c.tookWrite(since)
		c.marker.ver = next
		c.log.Debug("distributed: the store's marker written", "key", key)
	case errors.Is(err, ErrConflict):
		// Another process wrote it first: read it back.
		c.markDue.Store(true)
		c.poke()
	default:
		// As a partition write refused: a store that answers reads and
		// refuses writes is still out (see recovered).
		c.writeFailed(ctx, err)
	}
}

// emptied reports a store that came back without its data, once per time.
func (c *Cache) emptied(key string) {
	c.st.emptied.Add(1)
	c.log.Warn("distributed: the store came back empty: it lost every partition and sign-out "+
		"(a restart without persistence, a flush or an eviction), so users must sign in again and daemons "+
		"fetch new tokens; keep the data with Redis persistence (appendonly yes), replicas "+
		"(Sentinel, a Cluster with replicas), or a database in tandem (distributed.Tiered with pgstore)",
		"marker", key)
}
