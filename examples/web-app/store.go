package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/pgstore"
	"github.com/msalcache/msalcache/distributed/redisstore"
	"github.com/msalcache/msalcache/internal/appkey"
)

// recordPrefix namespaces the web app's own records (sessions, used sign-in
// states) in the store, beside the token cache's partitions.
const recordPrefix = "msalcache-web-app:"

// tokenCache is the distributed token cache and the store under it.
type tokenCache struct {
	store      distributed.Store
	cache      *distributed.Cache
	kind       string // "memory", "redis", "postgres" or "redis+postgres"
	ownedStore bool   // Close closes the store
	meter      *sdkmetric.MeterProvider
	metrics    http.Handler // /metrics: the cache's metrics in Prometheus text
}

// openTokenCache opens the store the flags name (or uses shared, a store of
// the caller's) and the distributed cache on it, encrypted with a key
// derived from the app's keys.
func openTokenCache(o *storeOptions, appKeys [][]byte, log *slog.Logger, shared distributed.Store) (*tokenCache, error) {
	store := shared
	switch {
	case shared != nil:
	case o.store == "redis":
		s, err := redisstore.Open(o.redisURL, redisstore.WithLogger(log))
		if err != nil {
			return nil, err
		}
		store = s
	case o.store == "postgres":
		s, err := pgstore.Open(o.postgresURL, pgstore.WithLogger(log))
		if err != nil {
			return nil, err
		}
		store = s
	case o.store == "redis+postgres":
		r, err := redisstore.Open(o.redisURL, redisstore.WithLogger(log))
		if err != nil {
			return nil, err
		}
		p, err := pgstore.Open(o.postgresURL, pgstore.WithLogger(log))
		if err != nil {
			r.Close()
			return nil, err
		}
		store = distributed.Tiered(r, p) // closes both
	default:
		store = distributed.NewMemoryStore()
	}
	owned := shared == nil
	mp, metrics, err := newMetrics()
	if err != nil {
		if owned {
			store.Close()
		}
		return nil, err
	}
	opts := []distributed.Option{
		distributed.WithMeterProvider(mp),
		distributed.WithEncryptionKeys(appkey.Derive(appKeys, purposeTokens)...),
		distributed.WithLogger(log),
		distributed.WithTimeout(o.storeTimeout()),
	}
	if o.cacheTTL > 0 {
		opts = append(opts, distributed.WithTTL(o.cacheTTL))
	}
	c, err := distributed.New(store, opts...)
	if err != nil {
		mp.Shutdown(context.Background())
		if owned {
			store.Close()
		}
		return nil, err
	}
	return &tokenCache{store: store, cache: c, kind: o.store, ownedStore: owned, meter: mp, metrics: metrics}, nil
}

// Close closes the cache, then the store if it opened it, then the metrics.
func (t *tokenCache) Close() error {
	err := t.cache.Close()
	if t.ownedStore {
		err = errors.Join(err, t.store.Close())
	}
	return errors.Join(err, t.meter.Shutdown(context.Background()))
}

// records keeps the web app's sessions and used sign-in states in the
// store, sealed, under hashed keys: a replica that did not create a session
// still finds it, and sees when it ends.
//
// While the store cannot be reached, a session this replica has seen is
// served from its last copy in memory, as the token cache serves the
// partitions it holds: no other replica can end it meanwhile, since ending
// one needs the store too. Each store call is bounded by timeout (the
// lookup of a remembered session by rememberedTimeout, if shorter), and
// while the store is known to be down a remembered session is looked up in
// the store only by one request per recheck period (the others are served
// from memory at once), so pages stay fast during an outage.
type records struct {
	store   distributed.Store
	seal    *sealer
	timeout time.Duration

	mu    sync.Mutex // guards what follows; never held across a store call
	seen  map[string]sessionRecord
	down  bool      // the last store call failed
	asked time.Time // when a session lookup last asked the store
}

const (
	// recheck is how often, while the store is down, a lookup of a
	// remembered session asks it.
	recheck = 200 * time.Millisecond
	// rememberedTimeout bounds the lookup of a remembered session, which
	// falls back to the copy in memory.
	rememberedTimeout = 100 * time.Millisecond
)

// maxSeen bounds the sessions kept in memory for an outage.
const maxSeen = 10000

func newRecords(store distributed.Store, seal *sealer, timeout time.Duration) *records {
	return &records{store: store, seal: seal, timeout: timeout, seen: map[string]sessionRecord{}}
}

// call runs one store call bounded by the timeout and records whether the
// store answered (a call its caller gave up on tells nothing).
func (r *records) call(ctx context.Context, f func(context.Context) error) error {
	return r.callWithin(ctx, r.timeout, f)
}

// callWithin is call bounded by d.
func (r *records) callWithin(ctx context.Context, d time.Duration, f func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := f(cctx)
	if err == nil || errors.Is(err, distributed.ErrConflict) || ctx.Err() == nil {
		r.mu.Lock()
		r.down = err != nil && !errors.Is(err, distributed.ErrConflict)
		r.mu.Unlock()
	}
	return err
}

// skipStore reports whether a lookup of a session held in memory is served
// from memory without asking the store: it is down and another lookup
// asked it less than recheck ago.
func (r *records) skipStore(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down && now.Sub(r.asked) < recheck {
		return true
	}
	r.asked = now
	return false
}

func (r *records) remember(key string, rec sessionRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[key]; !ok && len(r.seen) >= maxSeen {
		for k := range r.seen { // drop one at random
			delete(r.seen, k)
			break
		}
	}
	r.seen[key] = rec
}

func (r *records) remembered(key string) (sessionRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.seen[key]
	return rec, ok
}

// errReplayed is returned by useState for a state that was already used.
var errReplayed = errors.New("this sign-in response was already used")

// errNoSession is returned by session for a session that does not exist, has
// ended or has expired.
var errNoSession = errors.New("no such session")

func recordKey(kind, id string) string {
	h := sha256.Sum256([]byte(kind + "\x00" + id))
	return recordPrefix + kind + ":" + hex.EncodeToString(h[:])
}

// useState marks a sign-in state as used, once: the second call for the same
// state, on any replica, returns errReplayed.
func (r *records) useState(ctx context.Context, state string, ttl time.Duration) error {
	err := r.call(ctx, func(ctx context.Context) error {
		return r.store.Store(ctx, recordKey("state", state), []byte("used"), 0, distributed.NewVersion(), ttl)
	})
	if errors.Is(err, distributed.ErrConflict) {
		return errReplayed
	}
	return err
}

// sessionRecord is what the store holds for a session.
type sessionRecord struct {
	Account  string `json:"account"` // MSAL's home account ID: the user's partition key
	Username string `json:"username"`
	Ended    bool   `json:"ended,omitempty"`
}

// newSession stores a new session for account and returns its ID.
func (r *records) newSession(ctx context.Context, rec sessionRecord, ttl time.Duration) (string, error) {
	sid := randomString(32)
	key := recordKey("session", sid)
	sealed, err := r.seal.seal(key, rec)
	if err != nil {
		return "", err
	}
	err = r.call(ctx, func(ctx context.Context) error {
		return r.store.Store(ctx, key, []byte(sealed), 0, distributed.NewVersion(), ttl)
	})
	if err != nil {
		return "", fmt.Errorf("storing the session: %w", err)
	}
	r.remember(key, rec)
	return sid, nil
}

// session returns the live session sid, or errNoSession.
func (r *records) session(ctx context.Context, sid string) (sessionRecord, distributed.Version, error) {
	key := recordKey("session", sid)
	rec, known := r.remembered(key)
	known = known && !rec.Ended
	if known && r.skipStore(time.Now()) {
		return rec, 0, nil
	}
	var raw []byte
	var v distributed.Version
	d := r.timeout
	if known {
		// The copy in memory will do if the store is slow.
		d = min(d, rememberedTimeout)
	}
	err := r.callWithin(ctx, d, func(ctx context.Context) (err error) {
		raw, v, err = r.store.Load(ctx, key)
		return err
	})
	if err != nil {
		if known && ctx.Err() == nil {
			return rec, 0, nil
		}
		return sessionRecord{}, 0, fmt.Errorf("loading the session: %w", err)
	}
	rec = sessionRecord{}
	if raw == nil || r.seal.open(key, string(raw), &rec) != nil || rec.Ended {
		return sessionRecord{}, 0, errNoSession
	}
	r.remember(key, rec)
	return rec, v, nil
}

// endSession marks the session sid ended, for every replica. The record
// stays until ttl so that the session cannot be brought back.
func (r *records) endSession(ctx context.Context, sid string, ttl time.Duration) error {
	key := recordKey("session", sid)
	for {
		var raw []byte
		var v distributed.Version
		err := r.call(ctx, func(ctx context.Context) (err error) {
			raw, v, err = r.store.Load(ctx, key)
			return err
		})
		if err != nil {
			return fmt.Errorf("loading the session: %w", err)
		}
		var rec sessionRecord
		if raw == nil || r.seal.open(key, string(raw), &rec) != nil || rec.Ended {
			r.remember(key, sessionRecord{Ended: true})
			return nil
		}
		rec.Ended = true
		sealed, err := r.seal.seal(key, rec)
		if err != nil {
			return err
		}
		err = r.call(ctx, func(ctx context.Context) error {
			return r.store.Store(ctx, key, []byte(sealed), v, distributed.NewVersion(), ttl)
		})
		if err == nil {
			r.remember(key, rec)
		}
		if !errors.Is(err, distributed.ErrConflict) {
			return err
		}
		// Another replica changed it (ended it too): look again.
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
