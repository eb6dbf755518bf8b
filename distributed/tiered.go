package distributed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// How the tandem bounds and paces its calls to the first layer.
const (
	// firstShare is the share of the caller's remaining time a call to the
	// first layer may take: a first layer that hangs leaves the rest to the
	// second. Without a deadline, firstTimeout bounds it.
	firstShare   = 2
	firstTimeout = time.Second
	// copyTTL is the expiry of a copy written to the first layer on a miss:
	// Load does not learn how long the second layer keeps the key, so the
	// copy is read again from it now and then. The Cache's Touch gives
	// both layers the partition's TTL.
	copyTTL = time.Hour
	// evictTTL is how a copy that the second layer no longer holds is
	// removed from the first: a Store has no delete, so it is made to
	// expire at once.
	evictTTL = time.Millisecond
	// evictPolls bounds the wait for an evicted copy to be gone.
	evictPolls = 25
	// syncRounds bounds one repair: each round reads the second layer and
	// writes its answer to the first, until both agree.
	syncRounds = 8
	// repairEvery is how often the background repair runs while the first
	// layer is out or copies are to be repaired; repairTimeout bounds one
	// pass over a key.
	repairEvery   = 250 * time.Millisecond
	repairTimeout = 2 * time.Second
	// probeKey is read to learn whether the first layer is back.
	probeKey = "msalcache:tiered:probe"
)

// Tiered returns a Store that keeps each key in two layers: first (Redis)
// serves reads, second (a database: pgstore) holds the truth, versions and
// tombstones. Hand Tiered both stores; its Close closes both.
//
//   - Load reads first. A key first does not hold is read from second and
//     copied to first (a compare-and-set on "no value", so never over a
//     copy someone wrote meanwhile), then second is read again to make sure
//     the copy is still its value; a copy lives at most an hour unless the
//     Cache touches it. So a flush or an empty restart of first costs one
//     read of second per key: every partition and every tombstone (a
//     sign-out) is still there.
//   - Store is a compare-and-set on second; only if second took it is the
//     same version written to first, from the version the write was based
//     on. Nothing reaches first that second did not commit. If first holds
//     something else (it was flushed, or another writer was first), or the
//     write failed, first is repaired: made to hold what second holds now,
//     by a compare-and-set on whatever first holds. A conflict on second
//     repairs first before ErrConflict is returned, so a writer that read a
//     stale copy reads the truth when it retries.
//   - While first fails or does not answer (within half the caller's time),
//     every call goes to second: no failure. Keys written meanwhile are
//     remembered, read from second, and repaired in the background once
//     first answers again, before their copies are used.
//   - While second fails, keys that first holds are still loaded from it;
//     Store fails (the Cache keeps its writes and writes them back when
//     second returns), and nothing is written to first.
//   - Touch touches second, then first (so a copy never expires before
//     second's key does). A touch that first took and second did not is
//     owed to second and paid in the background, and Touch returns nil:
//     the Cache goes on reading what first holds.
//
// A copy in first is served only once this tandem checked it against
// second since the key last changed (the trust rule, see checkOf): at its first Load of the key, at its next Load after
// second told of a change of the key, and for every key once more after
// either layer told that anything may have changed (a reconnection, a
// flush, a restart of Redis, maybe from older files). So a copy left stale
// in first (a writer that ended between its two writes, a write to first
// that failed, a Redis restored from files older than second) is never
// served, by a running tandem or one started after; a check costs one read
// of second. While second fails, first's copy is served unchecked: it is
// all there is. Without notices from both layers every Load reads second.
//
// The returned Store implements Notifier when both layers do (it forwards
// the notices of both: a copy read from first is kept coherent by first's
// notices, a value read from second while first is out by second's); the
// Cache needs both to keep its in-process layer coherent. After Close, a
// second Close returns nil and other calls return an error wrapping
// ErrClosed and net.ErrClosed.
//
// The Store is safe for concurrent use; it holds no lock across a call to
// a layer. first and second must be different stores.
func Tiered(first, second Store) Store {
	if first == nil || second == nil {
		panic("distributed: Tiered needs two stores")
	}
	t := &tiered{
		first:   first,
		second:  second,
		dirty:   map[string]uint64{},
		owed:    map[string]time.Duration{},
		trusted: map[string]trust{},
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	n1, ok1 := first.(Notifier)
	n2, ok2 := second.(Notifier)
	t.notified = ok1 && ok2
	if t.notified {
		n1.Notify(t.noticeFirst)
		n2.Notify(t.noticeSecond)
	}
	go t.repairLoop()
	if t.notified {
		return &notifyingTiered{t}
	}
	return t
}

// errTieredClosed is returned by a tandem used after Close.
var errTieredClosed = fmt.Errorf("%w (%w)", ErrClosed, net.ErrClosed)

// tiered is the tandem. Its state is the first layer's health and the keys
// whose copy in the first layer may be stale; both are guarded by mu, which
// is never held across a call to a layer.
type tiered struct {
	first, second Store

	mu        sync.Mutex
	firstDown bool                     // a call to first failed; none has succeeded since
	dirty     map[string]uint64        // keys whose copy in first may be stale -> mark
	marks     uint64                   // the last mark given
	owed      map[string]time.Duration // touches second did not take -> their ttl
	trusted   map[string]trust         // keys whose copy in first was checked (see checkOf)
	tokens    uint64                   // the last check token given

	notified bool // both layers notify: a checked copy is trusted until a notice

	closed atomic.Bool
	wake   chan struct{}
	quit   chan struct{}
	done   chan struct{}
}

type notifyingTiered struct{ *tiered }

// Notify registers f with both layers. A notice of the second layer reaches
// the tandem before f: a Load that f causes checks the copy in the first.
func (t *notifyingTiered) Notify(f func(key string)) {
	t.first.(Notifier).Notify(func(key string) {
		t.noticeFirst(key)
		f(key)
	})
	t.second.(Notifier).Notify(func(key string) {
		t.noticeSecond(key)
		f(key)
	})
}

func (t *tiered) Load(ctx context.Context, key string) ([]byte, Version, error) {
	if t.closed.Load() {
		return nil, 0, errTieredClosed
	}
	down, dirty := t.state(key)
	if down {
		return t.second.Load(ctx, key)
	}
	trusted, token := t.checkOf(key)
	if dirty {
		return t.syncLoad(ctx, key, 0, false, token)
	}
	fctx, cancel := firstContext(ctx)
	value, v, err := t.first.Load(fctx, key)
	cancel()
	if err != nil {
		t.firstFailed(ctx, err)
		return t.second.Load(ctx, key)
	}
	if v != 0 && trusted {
		return value, v, nil
	}
	// A miss, or a copy not checked since the key last changed: read
	// second, and make first hold what it holds.
	svalue, sv, err := t.syncLoad(ctx, key, v, true, token)
	if err != nil && v != 0 {
		// Second failed: first's copy is all there is (a database
		// outage serves warm users). It stays unchecked.
		return value, v, nil
	}
	return svalue, sv, err
}

// syncLoad reads key from second and repairs first to hold it; known tells
// whether first is known to hold fver. If both layers then agree, the check
// token of key ends: its copy is trusted.
func (t *tiered) syncLoad(ctx context.Context, key string, fver Version, known bool, token uint64) ([]byte, Version, error) {
	mark := t.markOf(key)
	r := t.sync(ctx, key, fver, known, copyTTL)
	if r.err != nil {
		return nil, 0, r.err
	}
	t.settled(ctx, key, mark, r)
	if r.agreed {
		t.checked(key, token)
	}
	return r.value, r.version, nil
}

func (t *tiered) Store(ctx context.Context, key string, value []byte, prev, next Version, ttl time.Duration) error {
	if t.closed.Load() {
		return errTieredClosed
	}
	err := t.second.Store(ctx, key, value, prev, next, ttl)
	if errors.Is(err, ErrConflict) {
		// The writer's base is not second's: it probably read a stale
		// copy. Repair first, so that its retry reads the truth.
		if down, _ := t.state(key); !down {
			mark := t.markOf(key)
			t.settled(ctx, key, mark, t.sync(ctx, key, 0, false, copyTTL))
		}
		return ErrConflict
	}
	if err != nil {
		// Second may or may not have taken it: first's copy may be stale.
		t.markDirty(key)
		return err
	}
	// Committed. Mark the key before the write to first, so that a repair
	// running now does not clear a mark set for an older state.
	mark := t.markOf(key)
	if down, _ := t.state(key); down {
		t.markDirty(key)
		return nil
	}
	fctx, cancel := firstContext(ctx)
	ferr := t.first.Store(fctx, key, value, prev, next, ttl)
	cancel()
	switch {
	case ferr == nil:
	case errors.Is(ferr, ErrConflict):
		// first did not hold the base (flushed, or written by another
		// writer since): make it hold what second holds now.
		t.settled(ctx, key, mark, t.sync(ctx, key, 0, false, ttl))
	default:
		t.firstFailed(ctx, ferr)
		t.markDirty(key)
	}
	return nil
}

// Touch touches second, then first. If second fails and first took the touch,
// the touch of second is owed: retried in the background until second
// takes it, and Touch returns nil, so that a Cache keeps reading the
// copies first holds (a failed Touch would make it treat the whole store
// as out).
func (t *tiered) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if t.closed.Load() {
		return errTieredClosed
	}
	// Second first: the copy's new expiry then falls after second's, never
	// before. Were first touched first, its copy could expire while second
	// still holds the key; a Load in that gap copies it again with copyTTL,
	// and the tandem trusts that copy after second expired the key, until
	// second tells of the expiry (pgstore: at its next cleanup).
	err := t.second.Touch(ctx, key, ttl)
	touched := false
	if down, _ := t.state(key); !down {
		fctx, cancel := firstContext(ctx)
		ferr := t.first.Touch(fctx, key, ttl)
		cancel()
		if ferr != nil {
			t.firstFailed(ctx, ferr)
		}
		touched = ferr == nil
	}
	if err != nil && touched && ctx.Err() == nil {
		t.owe(key, ttl)
		return nil
	}
	return err
}

// Close stops the background repair and closes both layers.
func (t *tiered) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(t.quit)
	<-t.done
	err1, err2 := t.first.Close(), t.second.Close()
	if errors.Is(err1, ErrClosed) {
		err1 = nil // closed by its opener already
	}
	if errors.Is(err2, ErrClosed) {
		err2 = nil
	}
	return errors.Join(err1, err2)
}

// firstContext bounds a call to the first layer to a share of the caller's
// time, so that a first layer that does not answer leaves time for the
// second.
func firstContext(ctx context.Context) (context.Context, context.CancelFunc) {
	d := firstTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)/firstShare)
	}
	return context.WithTimeout(ctx, d)
}
