package distributed

import (
	"time"

	"github.com/msalcache/msalcache/internal/msaljson"
)

// This file is every way a write and a sign-out are ordered: a sign-out is
// undone only by a write whose request began after it (a sign-in after
// it).
//
// MSAL Go passes the caller's ctx to Replace and Export. A silent call
// Replaces the partition at its start and, if it must refresh, again right
// before its Export, after the identity provider answered (up to 30 s
// later); a sign-in (AcquireTokenByAuthCode) Replaces it only right before
// its Export. So a request is known by ctx.Done(), one channel per net/http
// request (shared by the contexts derived from it), and a view logs, per
// partition, which requests read it and when (readLog). A ctx whose Done is
// nil (context.Background) has no identity: its reads are pooled, and a
// write through it is judged conservatively (as begun at the earliest such
// read within inFlight).
//
// Two rules use what the log says:
//
//   - In the view (view.changes), with no clock: a write whose request read
//     the partition alive, into a partition the view now knows removed (it
//     read the tombstone, or a removal kept during an outage), is a
//     refresh that was in flight across the sign-out: dropped. A write
//     whose request never read it alive (a sign-in after the sign-out) is
//     stored.
//   - In the store (order, at each compare-and-set), for the writes the
//     view could not judge (kept during an outage, or the view had not
//     seen the tombstone yet): by time, against the store's record. A
//     tombstone holds when the partition was removed; a live record when
//     its generation began and the removal it follows. A write that began
//     after that removal is stored; one that began before is dropped. A
//     refresh (a request that read the partition alive before its last
//     read) never starts a new generation over a tombstone, whatever the
//     clocks say: only a sign-in does. A removal kept during an outage
//     does not remove a generation that began after it.
//
// App-token partitions (a daemon's) have no drop rule: removing one only
// makes the next call get a new token, and a token in flight is as good as
// a new one.

// inFlight bounds how long an MSAL call that read a partition may take to
// write what it got: MSAL Go gives each HTTP request 30 s when the caller's
// ctx has no deadline.
const inFlight = 30*time.Second + 5*time.Second

// logSlots is how many requests reading one partition at once a readLog
// tells apart; more are pooled with the anonymous ones.
const logSlots = 8

// maxKept bounds the writes kept for one partition during an outage.
const maxKept = 8

// A readLog is what a view knows of the reads of one user partition by the
// requests that may still write it. It outlives the partition's place in
// the working set (an eviction during a refresh must not forget that the
// refresh read it alive), and is dropped once unused for inFlight. It is
// guarded by its view's lock.
type readLog struct {
	reqs [logSlots]reqRead
	// The span of alive reads by anonymous requests, and by requests that
	// no longer fit in reqs.
	anonFirst, anonLast time.Time
	used                time.Time // the last read
}

// reqRead is one request's reads of a partition.
type reqRead struct {
	done        <-chan struct{} // the request (nil: a free slot)
	first, last time.Time       // its first and last read
	aliveAt     time.Time       // its last read that found the partition alive (zero: none)
	// It found the partition alive at a read before its last one: it read
	// the partition before its token request (a silent call's refresh),
	// which a sign-in never does (it reads it only right before its
	// Export).
	refresh bool
}

// A reader is a request that reads a partition (done: its ctx.Done()), and
// when its read began (before any store call: what it read is at least
// that old).
type reader struct {
	done <-chan struct{}
	at   time.Time
}

// read records that rd read the partition, alive or not. It does not
// allocate: it runs on every silent hit.
func (l *readLog) read(rd reader, alive bool) {
	done, now := rd.done, rd.at
	if now.After(l.used) {
		l.used = now
	}
	if done == nil {
		if alive {
			l.pool(now, now, now)
		}
		return
	}
	for i := range l.reqs {
		r := &l.reqs[i]
		if r.done != done {
			continue
		}
		if now.Sub(r.last) >= inFlight {
			// A ctx that outlives calls (a worker's): a read this old
			// belongs to an earlier call.
			*r = reqRead{done: done, first: now}
		}
		// Reads are logged when they end: a slow one may come last.
		if now.Before(r.first) {
			r.first = now
		}
		if now.After(r.last) {
			r.last = now
		}
		if !r.aliveAt.IsZero() {
			r.refresh = true
		}
		if alive && now.After(r.aliveAt) {
			r.aliveAt = now
		}
		return
	}
	slot, oldest := -1, 0
	for i := range l.reqs {
		r := &l.reqs[i]
		if r.done == nil || now.Sub(r.last) >= inFlight || ended(r.done) {
			slot = i
			break
		}
		if r.last.Before(l.reqs[oldest].last) {
			oldest = i
		}
	}
	if slot < 0 {
		// Every slot is a request still running: the oldest is pooled.
		slot = oldest
		if r := l.reqs[slot]; now.Sub(r.aliveAt) < inFlight {
			l.pool(r.first, r.aliveAt, now)
		}
	}
	l.reqs[slot] = reqRead{done: done, first: now, last: now}
	if alive {
		l.reqs[slot].aliveAt = now
	}
}

// pool adds alive reads from first to last to the anonymous span.
func (l *readLog) pool(first, last, now time.Time) {
	if now.Sub(l.anonLast) >= inFlight {
		l.anonFirst = first
	} else if first.Before(l.anonFirst) {
		l.anonFirst = first
	}
	if last.After(l.anonLast) {
		l.anonLast = last
	}
}

// A requestReads is what a readLog tells of one request's reads of its
// partition (see readLog.request).
type requestReads struct {
	began   time.Time // its first read (at most inFlight ago)
	alive   bool      // it read the partition alive
	refresh bool      // it read it alive before its last read: a refresh, not a sign-in
}

// request returns what the log tells of the request done's reads. For an
// anonymous request, or one the log does not know, it answers
// conservatively: begun at the earliest alive read of the pool within
// inFlight, alive, and a refresh, if there is one; else begun now, a
// request that read nothing alive.
func (l *readLog) request(done <-chan struct{}, now time.Time) requestReads {
	horizon := now.Add(-inFlight)
	if done != nil {
		for _, r := range l.reqs {
			if r.done == done && r.last.After(horizon) {
				alive := r.aliveAt.After(horizon)
				return requestReads{began: later(r.first, horizon), alive: alive, refresh: alive && r.refresh}
			}
		}
	}
	if l.anonLast.After(horizon) {
		return requestReads{began: later(l.anonFirst, horizon), alive: true, refresh: true}
	}
	return requestReads{began: now}
}

// ceilMilli is t rounded up to the millisecond, as a tombstone stores it:
// a write that began before the removal never seems to begin after it.
func ceilMilli(t time.Time) time.Time {
	f := time.UnixMilli(t.UnixMilli())
	if f.Before(t) {
		f = f.Add(time.Millisecond)
	}
	return f
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// ended reports whether a request's ctx is done: a request that ended
// writes nothing more.
func ended(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// A verdict is what order decided for a write.
type verdict int

const (
	storeIt   verdict = iota // store the record order returned
	yielded                  // a kept removal gave way to a newer generation: store the record (that generation, now following it)
	unchanged                // the store already says it: nothing to store
	dropIt                   // the write is ordered before a removal (or a removal before a sign-in): dropped
)

// order decides what a write (or a removal) w makes of the store's record
// theirs (exists false: the store holds none), by the rules of this file.
// newGen makes a new generation.
func order(w *pendingWrite, theirs record, exists bool) (record, verdict) {
	app := msaljson.IsAppPartition(w.key)
	if w.remove {
		t := w.began
		switch {
		case exists && theirs.removed && !t.After(theirs.at):
			return theirs, unchanged // removed since, later: that tombstone stands
		case exists && !theirs.removed && theirs.at.After(t):
			if w.kept && !app {
				// Signed in again after this sign-out (kept during an
				// outage): the newer sign-in stands, and follows the
				// sign-out: what began before it is dropped from now on.
				if a := ceilMilli(t); a.After(theirs.after) {
					out := theirs
					out.after = a
					return out, yielded
				}
				return theirs, dropIt
			}
			// Called now: whatever the store holds is signed out,
			// whichever clock stamped it.
			t = theirs.at.Add(time.Millisecond)
		}
		gen := w.gen
		if gen == 0 {
			gen = newGen()
		}
		return record{gen: gen, removed: true, at: ceilMilli(t), snap: msaljson.Empty}, storeIt
	}
	switch {
	case !exists:
		return record{gen: newGen(), at: w.began, snap: msaljson.Merge(w.base, w.ours, msaljson.Empty)}, storeIt
	case theirs.removed && !app && !w.refresh && w.baseGen != 0 && w.baseGen == theirs.gen:
		// Based on this very tombstone (its request read it, or it was
		// kept after this removal in the same queue), and not a refresh:
		// a sign-in after the sign-out, whatever the clocks say (a
		// sign-in within the millisecond of the sign-out is after it).
		return record{gen: newGen(), at: later(w.began, theirs.at), after: theirs.at, snap: fresh(w.base, w.ours)}, storeIt
	case theirs.removed:
		if !app && !w.began.After(theirs.at) {
			return theirs, dropIt // begun before the sign-out: a refresh in flight, or a write kept during an outage
		}
		if !app && w.refresh {
			// A refresh of tokens read before the sign-out, by a replica
			// that did not know of it (cut off from the store): whatever
			// the clocks say, only a sign-in starts a new generation.
			return theirs, dropIt
		}
		// A new generation after the removal: what MSAL held from before
		// it is not brought back.
		return record{gen: newGen(), at: w.began, after: theirs.at, snap: fresh(w.base, w.ours)}, storeIt
	case !app && !w.began.After(theirs.after):
		return theirs, dropIt // begun before the removal this generation follows
	case !app && w.refresh && w.began.Before(theirs.at):
		// A refresh begun before this generation: of tokens read from an
		// older one, by a replica that did not see the sign-out between.
		return theirs, dropIt
	}
	out := record{gen: theirs.gen, at: theirs.at, after: theirs.after, snap: msaljson.Merge(w.base, w.ours, theirs.snap)}
	if !app && w.began.Before(out.at) {
		// The generation holds what began this early now: a sign-out kept
		// since then removes it (see the removal's rule above).
		out.at = w.began
	}
	if out.snap.Equal(theirs.snap) {
		return theirs, unchanged
	}
	return out, storeIt
}

// noSecret are the sections of MSAL's cache that hold no token: an
// account's description and the app's metadata.
var noSecret = []string{"Account", "AppMetadata"}

// fresh is the content of a new generation written by a write based on
// base: only what the write changed (what MSAL held from before the
// removal, untouched, stays removed), and the entries that hold no secret,
// which a sign-in writes again unchanged and MSAL needs.
func fresh(base, ours *msaljson.Snapshot) *msaljson.Snapshot {
	if base == nil {
		base = msaljson.Empty
	}
	trimmed := &msaljson.Snapshot{Scalars: base.Scalars, Sections: map[string]map[string]string{}}
	for name, section := range base.Sections {
		trimmed.Sections[name] = section
	}
	for _, name := range noSecret {
		delete(trimmed.Sections, name)
	}
	return msaljson.Merge(trimmed, ours, msaljson.Empty)
}

// keptWrites are the writes of one partition kept during an outage, in the
// order they were made, written back in that order: at most one removal,
// first, then writes. Guarded by the Cache's lock.
type keptWrites []*pendingWrite

// add returns q with w after its writes. A removal supersedes every write
// and removal kept before it (each is ordered before it: the removal
// stands whatever they do). Past maxKept, the two newest writes become one,
// begun when the first of them began (the oldest may be being written
// back).
func (q keptWrites) add(w *pendingWrite) keptWrites {
	w.kept = true
	if w.remove {
		return keptWrites{w}
	}
	q = append(q, w)
	if len(q) <= maxKept {
		return q
	}
	n := len(q)
	a, b := q[n-2], q[n-1]
	both := &pendingWrite{
		key: a.key, skey: a.skey, base: a.base, baseGen: a.baseGen,
		ours: msaljson.Merge(b.base, b.ours, a.ours), began: a.began, kept: true,
		refresh: a.refresh || b.refresh, // a refresh in it must not start a generation
	}
	if b.began.Before(a.began) {
		both.began = b.began
	}
	q[n-2] = both
	return q[:n-1]
}
