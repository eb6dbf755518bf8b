package pgstore

import (
	"context"
	"math/rand/v2"
	"time"
)

// cleanupLoop runs a cleanup every interval (with jitter, so that
// instances started together do not all try at once) until ctx ends.
func (s *Store) cleanupLoop(ctx context.Context) {
	failing := false
	for {
		wait := s.cfg.cleanupInterval/2 + rand.N(s.cfg.cleanupInterval)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		res, err := s.cleanup(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				s.log.Warn("pgstore: the cleanup of expired rows failed; trying again at the next interval", "err", err)
			}
			failing = true
		default:
			failing = false
			s.log.Debug("pgstore: cleanup of expired rows", "deleted", res.deleted, "ran", res.ran, "took", res.took)
		}
	}
}

// A cleanupResult says what one cleanup did.
type cleanupResult struct {
	ran     bool // false: another instance held the lock
	deleted int64
	took    time.Duration
}

// cleanup deletes every expired row, in batches of cfg.cleanupBatch rows,
// one statement (one short transaction) each, skipping rows that a writer
// holds locked. It runs only if no other instance cleans the table: it
// holds a session advisory lock (released if the connection dies) for the
// whole cleanup, and returns at once when another session holds it.
func (s *Store) cleanup(ctx context.Context) (cleanupResult, error) {
	start := time.Now()
	var res cleanupResult
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return res, s.wrap("cleanup", err)
	}
	defer conn.Release()
	if err := conn.QueryRow(ctx, s.q.tryLock, s.lockID).Scan(&res.ran); err != nil {
		return res, s.wrap("cleanup", err)
	}
	if !res.ran {
		return res, nil
	}
	if s.lockHeld != nil {
		s.lockHeld(true)
	}
	defer func() {
		if s.lockHeld != nil {
			s.lockHeld(false)
		}
		uctx, cancel := context.WithTimeout(context.Background(), s.cfg.dialTimeout)
		defer cancel()
		if _, err := conn.Exec(uctx, s.q.unlock, s.lockID); err != nil {
			// The lock must not stay with a pooled connection: close
			// it, which releases the lock on the server.
			_ = conn.Conn().Close(uctx)
		}
	}()
	for {
		var n int64
		if err := conn.QueryRow(ctx, s.q.deleteExpired, s.cfg.cleanupBatch).Scan(&n); err != nil {
			res.took = time.Since(start)
			return res, s.wrap("cleanup", err)
		}
		res.deleted += n
		if n < s.cfg.cleanupBatch {
			res.took = time.Since(start)
			return res, nil
		}
	}
}
