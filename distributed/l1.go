package distributed

import (
	"container/list"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// l1 is the in-process layer: decoded partitions by store key, least
// recently used first out, bounded in bytes. It is kept coherent by the
// store's invalidation notices: an entry is dropped when its key changes
// elsewhere. A load that raced with a notice for its key is not inserted
// (see stamp), so a stale value never outlives the notice that condemned it.
type l1 struct {
	max    int64
	seed   maphash.Seed
	stamps [4096]atomic.Uint64 // notices seen, by hash bucket of the key

	mu    sync.Mutex
	bytes int64
	lru   list.List // of *l1Entry, most recent at the front
	items map[string]*list.Element
}

type l1Entry struct {
	key     string
	version Version
	rec     record
	size    int64
}

func newL1(maxBytes int64) *l1 {
	return &l1{max: maxBytes, seed: maphash.MakeSeed(), items: map[string]*list.Element{}}
}

// entrySize is what an entry is charged: its key, and its JSON three times
// (the bytes, the parsed entries, the parse memo), plus bookkeeping.
func entrySize(key string, r record) int64 {
	return int64(len(key)+3*len(r.snap.Raw)) + 128
}

func (c *l1) bucket(key string) *atomic.Uint64 {
	return &c.stamps[maphash.String(c.seed, key)%uint64(len(c.stamps))]
}

// watch returns a watch of the notices for key from now on; its stamp,
// taken before a store load, is what put checks.
func (c *l1) watch(key string) watch {
	b := c.bucket(key)
	return watch{b, b.Load()}
}

// get returns the entry for key, if any.
func (c *l1) get(key string) (Version, record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return 0, record{}, false
	}
	c.lru.MoveToFront(el)
	e := el.Value.(*l1Entry)
	return e.version, e.rec, true
}

// put stores r at version v for key, unless a notice for key's bucket came
// after stamp (of a watch) was taken. It evicts the least recently used entries to stay
// within the byte bound; a value larger than the bound is not kept.
func (c *l1) put(key string, v Version, r record, stamp uint64) {
	size := entrySize(key, r)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bucket(key).Load() != stamp {
		c.removeLocked(key)
		return
	}
	c.removeLocked(key)
	if size > c.max {
		return
	}
	for c.bytes+size > c.max {
		c.removeLocked(c.lru.Back().Value.(*l1Entry).key)
	}
	c.items[key] = c.lru.PushFront(&l1Entry{key: key, version: v, rec: r, size: size})
	c.bytes += size
}

// invalidate drops key ("" drops everything) and condemns loads in flight.
// It reports whether an entry was dropped.
func (c *l1) invalidate(key string) bool {
	if key == "" {
		for i := range c.stamps {
			c.stamps[i].Add(1)
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		n := len(c.items)
		c.items = map[string]*list.Element{}
		c.lru.Init()
		c.bytes = 0
		return n > 0
	}
	c.bucket(key).Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removeLocked(key)
}

func (c *l1) removeLocked(key string) bool {
	el, ok := c.items[key]
	if !ok {
		return false
	}
	e := c.lru.Remove(el).(*l1Entry)
	delete(c.items, key)
	c.bytes -= e.size
	return true
}

func (c *l1) size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// A watch tells whether a notice came for a key (or another key of its
// bucket) since it was taken: a lock-free check, so that a notice never
// waits for a client's lock. The zero watch is always fresh (a store
// without notices).
type watch struct {
	bucket *atomic.Uint64
	stamp  uint64
}

func (w watch) fresh() bool { return w.bucket == nil || w.bucket.Load() == w.stamp }
