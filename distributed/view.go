package distributed

import (
	"slices"
	"sync"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/msaljson"
)

// A view is what a Cache knows of one MSAL client's memory.
//
// MSAL Go v1.10 calls Replace under a read lock and reads its memory after
// releasing it, so goroutines sharing a client call Replace for different
// partitions at once, and each reads after the others' Replace calls. If
// Replace swapped MSAL's memory for one partition, a goroutine would read
// another user's partition, or nothing. So MSAL's memory is a working set:
// the union of the partitions this client used recently. Replace(P) adds P
// (and replaces MSAL's memory only if that changes it), and a partition is
// dropped from the set only when the set is over its size and the partition
// was not used for a grace period, far longer than a read takes: a
// concurrent reader always finds its partition. Which partition an entry
// belongs to is computed from the entry, so the union never leaks into what
// is stored.
//
// A view's lock is held while MSAL's memory is replaced (an in-memory
// operation), so that what the view records is what MSAL holds; it is never
// held across a store call.
type view struct {
	mu       sync.Mutex
	parts    map[string]*part  // by partition key
	intact   bool              // MSAL's memory is the union of parts
	refuses  bool              // MSAL rejected the last Unmarshal (its on-behalf-of store always does)
	retryAt  time.Time         // when refusing: the next Unmarshal may be tried from then
	retry    time.Duration     // when refusing: the wait before retryAt (see unmarshalRetry)
	memo     map[string]string // msaljson's memo of the last parse of MSAL's memory
	owners   msaljson.Owners
	reads    map[string]*readLog // by user partition key: who read it (see order.go); outlives parts
	pruned   time.Time           // when reads was last pruned
	lastUsed time.Time
	max      int
	grace    time.Duration
}

type part struct {
	skey    string
	version Version // the store's version of snap, when synced
	gen     uint64
	snap    *msaljson.Snapshot // what MSAL holds for the partition
	exact   bool               // snap is the store's value at version
	synced  bool               // exact, and no notice came between the read and now (see watch)
	watch   watch              // the notices that condemn it
	used    time.Time
	touched time.Time // the store's expiry of it was last renewed
	removed bool      // the store holds a tombstone, or a removal is kept
	log     *readLog  // the partition's reads (nil: an app partition); also in view.reads
}

// How long a view whose Unmarshal failed waits before it tries again:
// doubling from the first to the second. MSAL Go's on-behalf-of store
// rejects every Unmarshal (it then keeps its own memory); any other client
// rejects one only by accident, and is given its working set again soon.
const (
	unmarshalRetryMin = 100 * time.Millisecond
	unmarshalRetryMax = time.Minute
)

func newView(max int, grace time.Duration) *view {
	return &view{parts: map[string]*part{}, reads: map[string]*readLog{}, max: max, grace: grace}
}

// logOf returns the read log of key, made if need be; nil for an app
// partition (no drop rule applies to it). v.mu must be held.
func (v *view) logOf(key string) *readLog {
	if msaljson.IsAppPartition(key) {
		return nil
	}
	l := v.reads[key]
	if l == nil {
		l = &readLog{}
		v.reads[key] = l
	}
	return l
}

// pruneLocked drops, at most once per inFlight, the read logs of
// partitions that are out of the working set and were not read for
// inFlight: no request that read them can still write. v.mu must be held.
func (v *view) pruneLocked(now time.Time) {
	if now.Sub(v.pruned) < inFlight {
		return
	}
	v.pruned = now
	for k, l := range v.reads {
		if v.parts[k] == nil && now.Sub(l.used) > inFlight {
			delete(v.reads, k)
		}
	}
}

// current reports whether MSAL holds key at the store's current version (as
// far as the store's notices tell), and whether its expiry is due to be
// renewed.
func (v *view) current(key string, rd reader, now time.Time, touchEvery time.Duration) (touch, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p := v.parts[key]
	if p == nil || !p.synced || !p.watch.fresh() || !v.settled(now) {
		return false, false
	}
	return v.use(p, rd, now, touchEvery), true
}

// holds reports whether MSAL holds key exactly as the store's version ver,
// and whether its expiry is due to be renewed. w is as for set.
func (v *view) holds(key string, ver Version, w watch, rd reader, now time.Time, touchEvery time.Duration) (touch, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p := v.parts[key]
	if p == nil || !p.exact || p.version != ver || !v.settled(now) {
		return false, false
	}
	p.watch, p.synced = w, w.fresh()
	return v.use(p, rd, now, touchEvery), true
}

// settled reports whether nothing needs to be given to MSAL: its memory is
// the union of the working set, or it refuses it and it is not yet time
// to try again.
func (v *view) settled(now time.Time) bool { return v.intact || v.waiting(now) }

// waiting reports whether MSAL refused the working set and it is not yet
// time to try again.
func (v *view) waiting(now time.Time) bool { return v.refuses && now.Before(v.retryAt) }

// unmarshaled records the outcome of an Unmarshal tried at now: a failure
// sets the time of the next try, further each time (see unmarshalRetryMin).
func (v *view) unmarshaled(err error, now time.Time) {
	v.intact, v.refuses = err == nil, err != nil
	if err == nil {
		v.retry = 0
		return
	}
	v.retry = min(max(2*v.retry, unmarshalRetryMin), unmarshalRetryMax)
	v.retryAt = now.Add(v.retry)
}

// use records that MSAL reads p at now, for rd, and reports whether p's
// expiry is due to be renewed (see renewDue).
func (v *view) use(p *part, rd reader, now time.Time, touchEvery time.Duration) (touch bool) {
	p.used, v.lastUsed = now, now
	if p.log != nil {
		p.log.read(rd, !p.removed)
	}
	return p.renewDue(now, touchEvery)
}

// renewDue reports whether p's expiry is due to be renewed (last renewed
// touchEvery ago or more) and, if so, counts it as renewed at now: the
// caller renews it.
func (p *part) renewDue(now time.Time, touchEvery time.Duration) bool {
	if touchEvery > 0 && now.Sub(p.touched) >= touchEvery {
		p.touched = now
		return true
	}
	return false
}

// set makes MSAL's memory hold rec (the store's version ver) for key, with
// the other partitions of the working set, replacing MSAL's memory only if
// that changes it. w watches the notices for the key since before rec was
// read. It returns whether the expiry is due
// to be renewed and whether MSAL's memory was replaced.
func (v *view) set(u cache.Unmarshaler, key, skey string, ver Version, rec record, pending bool, w watch, rd reader, now time.Time, touchEvery time.Duration, onUnmarshal func(error)) (touch bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	content := rec.snap
	if rec.removed || content == nil {
		content = msaljson.Empty
	}
	old := v.parts[key]
	exact := !pending
	p := &part{skey: skey, version: ver, gen: rec.gen, snap: content, exact: exact, synced: exact && w.fresh(), watch: w, used: now}
	p.removed = rec.removed
	p.log = v.logOf(key)
	if p.log != nil {
		p.log.read(rd, !p.removed)
	}
	v.pruneLocked(now)
	changed := !v.intact
	if old != nil {
		p.touched = old.touched
		changed = changed || (old.snap != content && !old.snap.Equal(content))
	} else {
		changed = changed || !content.Equal(msaljson.Empty)
	}
	touch = p.renewDue(now, touchEvery)
	v.parts[key] = p
	v.lastUsed = now
	if v.evict(key, now) {
		changed = true
	}
	if changed && !v.waiting(now) {
		union := make([]*msaljson.Snapshot, 0, len(v.parts))
		for _, q := range v.parts {
			union = append(union, q.snap)
		}
		err := u.Unmarshal(msaljson.Union(union...).Raw)
		v.unmarshaled(err, now)
		onUnmarshal(err)
	}
	return touch
}

// evict drops the least recently used partitions, other than keep and those
// used within the grace period, while the set is over its size. It reports
// whether one that held entries was dropped.
func (v *view) evict(keep string, now time.Time) bool {
	if len(v.parts) <= v.max {
		return false
	}
	type aged struct {
		key  string
		used time.Time
	}
	var old []aged
	for k, p := range v.parts {
		if k != keep && now.Sub(p.used) > v.grace {
			old = append(old, aged{k, p.used})
		}
	}
	slices.SortFunc(old, func(a, b aged) int { return a.used.Compare(b.used) })
	dropped := false
	for _, a := range old {
		if len(v.parts) <= v.max {
			break
		}
		p := v.parts[a.key]
		delete(v.parts, a.key)
		dropped = dropped || !p.snap.Equal(msaljson.Empty)
	}
	return dropped
}

// changes returns the partitions (key, or with "" every partition of the
// view) whose entries in MSAL's memory (data) differ from what the view
// recorded, as writes to make for the request req; the view records
// MSAL's new content. Each write carries when its request began (see
// readLog.request). A write the view knows to undo a sign-out (its request
// read the partition alive, and the view now knows it removed: a refresh
// in flight across the sign-out) is returned marked drop.
func (v *view) changes(data []byte, key string, req <-chan struct{}, now time.Time) ([]*pendingWrite, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	mem, err := msaljson.Parse(data, v.memo)
	if err != nil {
		return nil, err
	}
	v.memo = mem.Seen
	v.lastUsed = now
	keys := []string{key}
	if key == "" {
		keys = keys[:0]
		for k := range v.parts {
			keys = append(keys, k)
		}
	}
	var jobs []*pendingWrite
	for _, k := range keys {
		ours := mem.Partition(k, &v.owners)
		base, gen := msaljson.Empty, uint64(0)
		p := v.parts[k]
		if p != nil {
			base, gen = p.snap, p.gen
		}
		if ours.Equal(base) {
			continue
		}
		w := &pendingWrite{key: k, base: base, baseGen: gen, ours: ours, began: now}
		np := &part{snap: ours, gen: gen, used: now, log: v.logOf(k)}
		alive := false
		if np.log != nil {
			r := np.log.request(req, now)
			w.began, w.refresh, alive = r.began, r.refresh, r.alive
		}
		if p != nil {
			np.skey, np.version, np.touched = p.skey, p.version, p.touched
			if p.removed && alive {
				// Read alive by this request, removed since: MSAL holds
				// what it got, until the next Replace reads the removal.
				w.drop = true
				np.removed = true
			}
		}
		jobs = append(jobs, w)
		v.parts[k] = np
	}
	return jobs, nil
}

// written records that the store took MSAL's content ours for key as
// merged, at version ver and generation gen. The next Replace reads it back
// once (a notice could be racing), and replaces MSAL's memory only if the
// merge brought in other writers' entries.
func (v *view) written(key string, ours, merged *msaljson.Snapshot, ver Version, gen uint64, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	p := v.parts[key]
	if p == nil || p.snap != ours {
		return // replaced since
	}
	p.version, p.gen, p.synced, p.touched = ver, gen, false, now
	p.exact = merged == ours || merged.Equal(ours)
}

// stale marks key as to be read again at its next Replace.
func (v *view) stale(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p := v.parts[key]; p != nil {
		p.synced = false
	}
}

// served records that MSAL reads what it holds for key at now, without the
// store (which is out): the partition is used, as when it is served at the
// store's version, so the working set keeps it for the grace period. It
// reports whether MSAL holds entries of key (a removed or empty partition
// has none).
func (v *view) served(key string, rd reader, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	p := v.parts[key]
	if p == nil {
		if l := v.logOf(key); l != nil {
			l.read(rd, false) // read, and not found
		}
		return false
	}
	v.use(p, rd, now, 0)
	if p.removed {
		return false
	}
	for name, section := range p.snap.Sections {
		if name != "AppMetadata" && len(section) > 0 {
			return true
		}
	}
	return false
}

// untouched makes the next use of key renew its expiry.
func (v *view) untouched(key string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p := v.parts[key]; p != nil {
		p.touched = time.Time{}
	}
}

func (v *view) idleSince(t time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lastUsed.Before(t)
}

// memoOf returns the parse memo of what MSAL holds for key: most of a new
// version of a partition repeats the old one.
func (v *view) memoOf(key string) map[string]string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if p := v.parts[key]; p != nil {
		return p.snap.Seen
	}
	return nil
}
