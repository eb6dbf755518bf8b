package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/msalcache/msalcache/distributed"
)

// clientCacheTTL bounds how long a value stays in the client-side cache
// without being read from the server again. Server-assisted invalidation
// keeps the cache coherent; this is only a safety net.
const clientCacheTTL = time.Minute

// casScript writes ARGV[2] (version and value) at KEYS[1] if the version
// stored there, the first 8 bytes, is ARGV[1]; a missing key, or one
// holding fewer than 8 bytes, has version zero. ARGV[3] is the expiry in
// milliseconds, "0" for none. It returns 1 when it wrote, 0 on a conflict.
const casScript = `
local cur = redis.call('GETRANGE', KEYS[1], 0, 7)
if #cur < 8 then cur = string.rep('\0', 8) end
if cur ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then
	redis.call('SET', KEYS[1], ARGV[2])
else
	redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
`

var casSHA = func() string {
	sum := sha1.Sum([]byte(casScript))
	return hex.EncodeToString(sum[:])
}()

// A Store is a distributed.Store and distributed.Notifier on Redis
// (standalone or Redis Cluster). Open makes one.
//
// Each key holds one Redis string: the 8-byte big-endian version followed
// by the value, so that a value and its version are always read together
// and one client-side cached GET serves both. Store is a compare-and-set in
// a Lua script, so it works on Redis Cluster (one key per call). Load goes
// through the client-side cache (RESP3 client tracking): a key read before
// and not changed since costs no round trip, and the server's invalidation
// of a key both drops the cached copy and reaches the Notify callback.
//
// A Store is safe for concurrent use by multiple goroutines.
type Store struct {
	client rueidis.Client
	log    *slog.Logger
	closed atomic.Bool

	mu        sync.Mutex                         // serializes Notify
	listeners atomic.Pointer[[]func(key string)] // replaced, never changed
}

// Open connects to the Redis server or cluster at url and returns a Store.
// The URL forms:
//
//	redis://[user:password@]host[:port][/db]   a standalone server (db 0 by default)
//	rediss://...                               the same over TLS
//	redis://h1:p1?addr=h2:p2&addr=h3:p3        Redis Cluster: the seed nodes
//
// The port defaults to 6379. A single address may also be a cluster node;
// Open detects it. The seeds are tried in turn, each within the dial
// timeout (WithDialTimeout): Open fails, without hanging, when the URL is
// malformed or no seed answers. The server must speak RESP3 (Redis 6 or
// later).
func Open(url string, opts ...Option) (*Store, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tgt, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	s := &Store{log: cfg.log}
	opt := rueidis.ClientOption{
		InitAddress: tgt.addrs,
		Username:    tgt.user,
		Password:    tgt.password,
		SelectDB:    tgt.db,
		Dialer: net.Dialer{
			Timeout: cfg.dialTimeout,
			// rueidis PINGs a connection that received nothing during
			// the last KeepAlive, and drops it when the PING is not
			// answered within ConnWriteTimeout: a silent peer is found
			// within 2*KeepAlive + ConnWriteTimeout, under the health
			// timeout.
			KeepAlive: cfg.health / 5,
		},
		ConnWriteTimeout:  cfg.health / 2,
		CacheSizeEachConn: cfg.cacheBytes,
		DisableCache:      cfg.noClientCache,
		// One connection per node: the write of Store and its barrier
		// (see Store) travel on the connection whose cache holds the key.
		PipelineMultiplex: -1,
		OnInvalidations:   s.invalidated,
		RetryDelay:        retryDelay,
	}
	if tgt.tls {
		opt.TLSConfig = tlsConfig(cfg.tls, tgt.host)
	} else if cfg.tls != nil {
		return nil, errors.New("redisstore: WithTLSConfig needs a rediss:// URL")
	}
	// One seed at a time: given several, rueidis dials them all and closes
	// the connections that lost the race after NewClient returns, and each
	// close would reach Notify's listeners as a dropped cache. The cluster's
	// other nodes are found from the first seed that answers.
	var errs []error
	for _, addr := range tgt.addrs {
		opt.InitAddress = []string{addr}
		client, err := rueidis.NewClient(opt)
		if err == nil {
			s.client = client
			return s, nil
		}
		if errors.Is(err, rueidis.ErrNoCache) {
			return nil, fmt.Errorf("redisstore: %s does not support RESP3 client-side caching: Redis 6 or later is needed", addr)
		}
		if len(tgt.addrs) > 1 {
			err = fmt.Errorf("%s: %w", addr, err)
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("redisstore: connecting to %s: %w", tgt.redacted, errors.Join(errs...))
}

// retryDelay is how long rueidis waits before it sends a read again after
// a network error or a cluster redirection, or -1 to give up. rueidis
// retries forever by default, which a ctx without deadline would not stop.
func retryDelay(attempts int, _ rueidis.Completed, _ error) time.Duration {
	switch attempts {
	case 1:
		return 20 * time.Millisecond
	case 2:
		return 200 * time.Millisecond
	case 3:
		return time.Second
	}
	return -1
}

// Load returns the value stored at key and its version, or (nil, 0, nil)
// when there is none. A key loaded before is served from the client-side
// cache, with no round trip, until the server invalidates it.
func (s *Store) Load(ctx context.Context, key string) ([]byte, distributed.Version, error) {
	if err := s.check(key); err != nil {
		return nil, 0, err
	}
	raw, err := s.client.DoCache(ctx, s.client.B().Get().Key(key).Cache(), clientCacheTTL).ToString()
	if rueidis.IsRedisNil(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, s.wrap("load", err)
	}
	if len(raw) < 8 {
		return nil, 0, nil // not written by a Store: no value
	}
	var v distributed.Version
	for i := range 8 {
		v = v<<8 | distributed.Version(raw[i])
	}
	if v == 0 {
		return nil, 0, nil
	}
	return []byte(raw[8:]), v, nil
}

// Store writes value at key as version next if the key holds version prev,
// and returns distributed.ErrConflict, changing nothing, if it does not. A
// ttl of zero means no expiry. An error other than ErrConflict (a lost
// connection) leaves it unknown whether the write happened; a retry based
// on a new Load settles it.
//
// When Store returns, the client-side cache of this Store no longer holds
// the key's previous value: a Load that follows sees the write.
func (s *Store) Store(ctx context.Context, key string, value []byte, prev, next distributed.Version, ttl time.Duration) error {
	if err := s.check(key); err != nil {
		return err
	}
	if next == 0 || next == prev {
		return errors.New("redisstore: Store: the next version must be new and not zero")
	}
	if ttl < 0 {
		return fmt.Errorf("redisstore: Store: negative ttl %v", ttl)
	}
	var prevBytes [8]byte
	binary.BigEndian.PutUint64(prevBytes[:], uint64(prev))
	blob := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(blob, uint64(next))
	copy(blob[8:], value)
	args := []string{string(prevBytes[:]), rueidis.BinaryString(blob), strconv.FormatInt(millis(ttl), 10)}

	// The PTTL that follows the script on the same connection is a
	// barrier: the server sends this connection's invalidation of the key
	// (it tracks keys read through the client-side cache) before the PTTL
	// reply, so when both replies are in, the cached old value is gone.
	barrier := s.client.B().Pttl().Key(key).Build()
	res := s.client.DoMulti(ctx, s.client.B().Evalsha().Sha1(casSHA).Numkeys(1).Key(key).Arg(args...).Build(), barrier)
	n, err := res[0].AsInt64()
	if rerr, ok := rueidis.IsRedisErr(err); ok && rerr.IsNoScript() {
		// First use on this server (or it restarted): send the script.
		barrier = s.client.B().Pttl().Key(key).Build()
		res = s.client.DoMulti(ctx, s.client.B().Eval().Script(casScript).Numkeys(1).Key(key).Arg(args...).Build(), barrier)
		n, err = res[0].AsInt64()
	}
	if err != nil {
		return s.wrap("store", err)
	}
	if n == 0 {
		return distributed.ErrConflict
	}
	return nil
}

// Touch sets the expiry of key to ttl (zero: none) if the key exists. The
// server counts this as a change of the key: every client that caches the
// key is sent an invalidation (and the Notify callback called), though
// the value and version stay the same.
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.check(key); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("redisstore: Touch: negative ttl %v", ttl)
	}
	cmd := s.client.B().Persist().Key(key).Build()
	if ttl > 0 {
		cmd = s.client.B().Pexpire().Key(key).Milliseconds(millis(ttl)).Build()
	}
	if err := s.client.Do(ctx, cmd).Error(); err != nil {
		return s.wrap("touch", err)
	}
	return nil
}

// Notify registers f, called with the key of every value that changed on
// the server (another writer, this Store's own writes, Touch, expiry,
// deletion) after this Store loaded it, and with "" when the connection to
// a server is lost or closed or a database is flushed: the client-side
// cache was dropped then, and values loaded afterwards are tracked again on
// the new connection. f runs on the reading goroutine of a connection (one
// per server: those of a cluster's nodes may call it at the same time); it
// must return quickly and not call the Store. Each call adds a listener (one per
// Cache sharing the Store); every listener hears every key.
func (s *Store) Notify(f func(key string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fs []func(string)
	if old := s.listeners.Load(); old != nil {
		fs = append(fs, *old...)
	}
	fs = append(fs, f)
	s.listeners.Store(&fs)
}

// invalidated is rueidis's OnInvalidations callback: keys is nil when the
// whole cache of a connection was dropped.
func (s *Store) invalidated(keys []rueidis.RedisMessage) {
	if s.closed.Load() {
		return
	}
	if keys == nil {
		s.log.Debug("redisstore: client-side cache dropped (connection lost or closed, or database flushed)")
	}
	fs := s.listeners.Load()
	if fs == nil {
		return
	}
	if keys == nil {
		for _, f := range *fs {
			f("")
		}
		return
	}
	for _, k := range keys {
		if key, err := k.ToString(); err == nil {
			for _, f := range *fs {
				f(key)
			}
		}
	}
}

// Close closes the connections. Calls after Close return
// distributed.ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return distributed.ErrClosed
	}
	s.client.Close()
	return nil
}

func (s *Store) check(key string) error {
	if s.closed.Load() {
		return distributed.ErrClosed
	}
	if key == "" {
		return errors.New("redisstore: empty key")
	}
	return nil
}

func (s *Store) wrap(op string, err error) error {
	if errors.Is(err, rueidis.ErrClosing) && s.closed.Load() {
		return distributed.ErrClosed
	}
	return fmt.Errorf("redisstore: %s: %w", op, err)
}

// millis is d in whole milliseconds, rounded up so that a positive
// duration never becomes "no expiry".
func millis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
