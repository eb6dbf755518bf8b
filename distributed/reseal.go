package distributed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/msalcache/msalcache/internal/recordfmt"
	"github.com/msalcache/msalcache/internal/seal"
)

// A ResealRun says which part of a store one call of Reseal visits.
type ResealRun struct {
	// Cursor is where to start: "" for the beginning, or the Cursor of a
	// previous run's result to continue it.
	Cursor string
	// Limit bounds the keys this run visits: it stops at the end of the
	// first batch that reaches it (0: no bound, the whole store).
	Limit int
	// Batch is how many keys each Scan asks for (0: 100).
	Batch int
	// DryRun counts without writing: OldKey is then how many partitions
	// dropping the old keys would sign out.
	DryRun bool
}

// A ResealResult counts what a run of Reseal found. Every key visited is
// counted once in exactly one of Resealed, Current, OldKey, NoKey and Gone.
type ResealResult struct {
	Visited   int // keys listed under the prefix
	Resealed  int // rewritten by this run, sealed with the first key
	Current   int // already sealed with the first key (by a Cache, or by a concurrent rewrite)
	OldKey    int // still sealed with another of the keys: DryRun, or kept conflicting
	NoKey     int // open with none of the keys (sealed with a key not given, tampered, in a newer format, or not a partition): left as they are
	Gone      int // removed or expired between the listing and the load
	Tombstone int // of Resealed, Current and OldKey: sign-out tombstones (kept as tombstones)
	Conflicts int // rewrites refused by compare-and-set (another writer was first), then loaded again
	// Cursor continues the scan in a later run; "" when this run reached
	// the end of the store.
	Cursor string
}

// defaultResealBatch is the Scan batch size when ResealRun.Batch is 0.
const defaultResealBatch = 100

// Reseal seals again with the first key of WithEncryptionKeys every
// partition of store (under WithKeyPrefix) that is sealed with one of the
// other keys, so that the old keys can then be dropped without signing
// anyone out. It needs a store that implements Scanner; opts are the
// Caches' (WithEncryptionKeys is required; WithKeyPrefix, WithTTL,
// WithTimeout and WithLogger are used, the others ignored).
//
// The safe sequence (the package doc's Key rotation): deploy
// WithEncryptionKeys(old, new) on every replica, then WithEncryptionKeys(new,
// old) on every replica; run Reseal until its Cursor is ""; run it again
// with DryRun (OldKey and NoKey must be 0, or be partitions you accept to
// lose); then deploy WithEncryptionKeys(new). A replica that still has only
// [old] cannot read what Reseal rewrote (it reads it as empty and does not
// write over it).
//
// A rewrite changes only the seal: the same record (generation, tombstone
// flag, MSAL cache JSON, byte for byte), under a new version, with the
// expiry set to WithTTL (as a Cache's write or read would). It is a
// compare-and-set on the version loaded, so it is safe beside live
// replicas: when another writer was first, the key is loaded again and
// classified afresh (a Cache's write seals with the first key already: then
// it is Current). A sign-out that happens during the run is kept: the
// tombstone is rewritten as a tombstone, or the rewrite conflicts with it.
// A value that does not open is never written.
//
// Reseal is bounded by ctx, each store call by WithTimeout, and the run by
// ResealRun.Limit. On an error it returns what it counted so far, and a
// Cursor from which a later run repeats at most the batch that failed
// (rewriting is idempotent: what is current is left alone).
func Reseal(ctx context.Context, store Store, run ResealRun, opts ...Option) (ResealResult, error) {
	res := ResealResult{Cursor: run.Cursor}
	sc, ok := store.(Scanner)
	if !ok {
		return res, fmt.Errorf("distributed: Reseal: %T cannot list its keys (it does not implement Scanner)", store)
	}
	cfg := config{prefix: DefaultKeyPrefix, ttl: DefaultTTL, l1: DefaultL1, timeout: DefaultTimeout, viewMax: defaultViewMax}
	for _, o := range opts {
		o.apply(&cfg)
	}
	keys, err := cfg.validate()
	if err != nil {
		return res, err
	}
	if keys == nil {
		return res, errors.New("distributed: Reseal: WithEncryptionKeys is required (the first key seals, the others are the old ones)")
	}
	if run.Limit < 0 || run.Batch < 0 {
		return res, fmt.Errorf("distributed: Reseal: negative limit %d or batch %d", run.Limit, run.Batch)
	}
	batch := run.Batch
	if batch == 0 {
		batch = defaultResealBatch
	}
	r := resealer{store: store, keys: keys, cfg: cfg, dryRun: run.DryRun, log: cfg.logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for {
		if run.Limit > 0 && res.Visited >= run.Limit {
			return res, nil
		}
		cctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		batchKeys, next, err := sc.Scan(cctx, cfg.prefix, res.Cursor, batch)
		cancel()
		if err != nil {
			return res, fmt.Errorf("distributed: Reseal: scan: %w", err)
		}
		for _, skey := range batchKeys {
			if skey == recordfmt.MarkerKey(cfg.prefix) {
				continue // the Cache's marker (it tells a store that lost its data), no partition
			}
			if err := r.visit(ctx, skey, &res); err != nil {
				// res.Cursor is still this batch's: a later run repeats it.
				return res, err
			}
		}
		res.Cursor = next
		if next == "" {
			return res, nil
		}
	}
}

// resealer holds what one Reseal call needs to visit a key.
type resealer struct {
	store  Store
	keys   *seal.Keys
	cfg    config
	dryRun bool
	log    *slog.Logger
}

// maxResealAttempts bounds how often one key is loaded again after a
// conflict; a key that keeps changing is being written by Caches, which
// seal with the first key, so it is left to them (counted OldKey if it
// still is).
const maxResealAttempts = 5

// visit classifies the key skey and, unless dry-running, rewrites it with
// the first key if another one sealed it.
func (r *resealer) visit(ctx context.Context, skey string, res *ResealResult) error {
	res.Visited++
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, r.cfg.timeout)
		value, ver, err := r.store.Load(cctx, skey)
		cancel()
		if err != nil {
			res.Visited--
			return fmt.Errorf("distributed: Reseal: load %s: %w", skey, err)
		}
		if value == nil {
			res.Gone++
			return nil
		}
		h, js, err := recordfmt.Open(value, skey, r.keys)
		if err != nil {
			// Never written: whoever holds its key may still need it.
			res.NoKey++
			r.log.Warn("distributed: Reseal: a stored partition opens with none of the keys; left as it is", "key", skey, "err", err)
			return nil
		}
		if r.keys.SealedWithFirst(value) {
			res.Current++
			countTombstone(h, res)
			return nil
		}
		if r.dryRun || attempt > maxResealAttempts {
			res.OldKey++
			countTombstone(h, res)
			return nil
		}
		cctx, cancel = context.WithTimeout(ctx, r.cfg.timeout)
		err = r.store.Store(cctx, skey, recordfmt.Seal(h, js, skey, r.keys), ver, NewVersion(), r.cfg.ttl)
		cancel()
		switch {
		case errors.Is(err, ErrConflict):
			res.Conflicts++ // another writer was first: load again
		case err != nil:
			res.Visited--
			return fmt.Errorf("distributed: Reseal: store %s: %w", skey, err)
		default:
			res.Resealed++
			countTombstone(h, res)
			return nil
		}
	}
}

func countTombstone(h recordfmt.Header, res *ResealResult) {
	if h.Removed {
		res.Tombstone++
	}
}
