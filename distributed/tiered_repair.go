package distributed

import (
	"context"
	"errors"
	"time"
)

// errStillThere is the outcome of an eviction whose copy did not expire
// within the polls.
var errStillThere = errors.New("distributed: an evicted copy is still in the first layer")

// A syncResult is what a repair of one key found: second's value, and
// whether first was seen to hold the same.
type syncResult struct {
	value   []byte
	version Version
	err     error // second failed: nothing is known
	agreed  bool  // after first's last change, second still held what first holds
	fail    error // first failed (or a copy did not go): it may hold a stale copy
}

// sync makes first hold what second holds, and returns that. fver is the
// version first holds if known; otherwise first is asked. Each round reads
// second and, if first holds something else, replaces first's copy by a
// compare-and-set on what first holds (or evicts it when second holds
// nothing); it ends when a read of second that follows first's last change
// agrees with first. So a copy it writes is never left stale by a writer of
// second that came between its read and its write: that writer's own write
// to first, from the base second held, either came first (then the
// compare-and-set here fails) or comes later (and replaces the copy).
func (t *tiered) sync(ctx context.Context, key string, fver Version, known bool, ttl time.Duration) syncResult {
	if !known {
		fctx, cancel := firstContext(ctx)
		_, v, err := t.first.Load(fctx, key)
		cancel()
		if err != nil {
			value, v, serr := t.second.Load(ctx, key)
			return syncResult{value: value, version: v, err: serr, fail: err}
		}
		fver = v
	}
	var r syncResult
	for range syncRounds {
		value, v, err := t.second.Load(ctx, key)
		if err != nil {
			return syncResult{err: err}
		}
		r = syncResult{value: value, version: v}
		if v == fver {
			r.agreed = true
			return r
		}
		var ferr error
		if v == 0 {
			// Expired (or never written) in second: the copy goes too.
			if ferr = t.evict(ctx, key, fver); ferr == nil {
				fver = 0
				continue
			}
		} else {
			fctx, cancel := firstContext(ctx)
			ferr = t.first.Store(fctx, key, value, fver, v, ttl)
			cancel()
			if ferr == nil {
				fver = v
				continue
			}
		}
		if !errors.Is(ferr, ErrConflict) && !errors.Is(ferr, errStillThere) {
			r.fail = ferr
			return r
		}
		// Someone changed first meanwhile: see what it holds now.
		fctx, cancel := firstContext(ctx)
		_, fver, ferr = t.first.Load(fctx, key)
		cancel()
		if ferr != nil {
			r.fail = ferr
			return r
		}
	}
	return r // still moving: the key stays to be repaired
}

// evict makes first's copy of key (version fver) expire now, and waits
// briefly until it is gone. It removes whatever first holds then: removing
// a copy is always safe, the next Load reads second.
func (t *tiered) evict(ctx context.Context, key string, fver Version) error {
	fctx, cancel := firstContext(ctx)
	defer cancel()
	if err := t.first.Touch(fctx, key, evictTTL); err != nil {
		return err
	}
	for range evictPolls {
		if !sleep(fctx, 2*evictTTL) {
			return fctx.Err()
		}
		_, v, err := t.first.Load(fctx, key)
		if err != nil {
			return err
		}
		if v != fver {
			return nil
		}
	}
	return errStillThere
}

// settled records the outcome of a repair of key begun when its mark was
// mark: agreed clears the mark (unless a newer one was set meanwhile);
// otherwise the key stays, or becomes, to be repaired.
func (t *tiered) settled(ctx context.Context, key string, mark uint64, r syncResult) {
	switch {
	case r.agreed:
		t.clearDirty(key, mark)
	case r.fail != nil:
		if !errors.Is(r.fail, errStillThere) {
			t.firstFailed(ctx, r.fail)
		}
		t.markDirty(key)
	default:
		t.markDirty(key)
	}
}

// state reports whether first is out, and whether key's copy in first may
// be stale.
func (t *tiered) state(key string) (down, dirty bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, dirty = t.dirty[key]
	return t.firstDown, dirty
}

// markOf returns the mark of key: 0 when its copy is not known to be stale.
func (t *tiered) markOf(key string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dirty[key]
}

// markDirty records that key's copy in first may be stale: Load reads
// second for it and repairs it, and so does the background repair.
func (t *tiered) markDirty(key string) {
	t.mu.Lock()
	t.marks++
	t.dirty[key] = t.marks
	t.mu.Unlock()
	t.poke()
}

// clearDirty forgets key's mark if it is still mark.
func (t *tiered) clearDirty(key string, mark uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.dirty[key]; ok && m == mark {
		delete(t.dirty, key)
	}
}

// owe records a touch that second did not take.
func (t *tiered) owe(key string, ttl time.Duration) {
	t.mu.Lock()
	t.owed[key] = ttl
	t.mu.Unlock()
	t.poke()
}

// payOwed retries the touches second did not take; it stops at the first
// failure.
func (t *tiered) payOwed() {
	t.mu.Lock()
	owed := make(map[string]time.Duration, len(t.owed))
	for k, ttl := range t.owed {
		owed[k] = ttl
	}
	t.mu.Unlock()
	for key, ttl := range owed {
		ctx, cancel := context.WithTimeout(context.Background(), repairTimeout)
		err := t.second.Touch(ctx, key, ttl)
		cancel()
		if err != nil {
			return
		}
		t.mu.Lock()
		if t.owed[key] == ttl {
			delete(t.owed, key)
		}
		t.mu.Unlock()
	}
}

// firstFailed records that a call to first failed, unless the caller gave
// up: until the background probe finds first back, calls go to second.
func (t *tiered) firstFailed(ctx context.Context, err error) {
	if ctx.Err() != nil || errors.Is(err, ErrClosed) {
		return
	}
	t.mu.Lock()
	t.firstDown = true
	t.mu.Unlock()
	t.poke()
}

func (t *tiered) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// repairLoop runs until Close: while first is out or copies are to be
// repaired, it probes first and repairs them.
func (t *tiered) repairLoop() {
	defer close(t.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-t.quit:
			timer.Stop()
			return
		case <-t.wake:
		case <-timer.C:
		}
		if !t.repair() {
			timer.Reset(repairEvery)
		}
	}
}

// repair pays the touches owed to second, probes first if it is out, then
// repairs the keys marked. It reports whether nothing is left to do.
func (t *tiered) repair() bool {
	t.payOwed()
	t.mu.Lock()
	down := t.firstDown
	work := make(map[string]uint64, len(t.dirty))
	for k, m := range t.dirty {
		work[k] = m
	}
	t.mu.Unlock()
	if down {
		ctx, cancel := context.WithTimeout(context.Background(), repairTimeout)
		_, _, err := t.first.Load(ctx, probeKey)
		cancel()
		if err != nil {
			return false
		}
		t.mu.Lock()
		t.firstDown = false
		t.mu.Unlock()
	}
	for key, mark := range work {
		select {
		case <-t.quit:
			return true
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), repairTimeout)
		r := t.sync(ctx, key, 0, false, copyTTL)
		cancel()
		switch {
		case r.agreed:
			t.clearDirty(key, mark)
		case r.fail != nil && !errors.Is(r.fail, errStillThere):
			t.firstFailed(context.Background(), r.fail)
			return false
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.dirty) == 0 && !t.firstDown && len(t.owed) == 0
}
