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
// (standalone, Redis Cluster, or a master found through Redis Sentinel).
// Open makes one.
//
// Each key holds one Redis string: the 8-byte big-endian version followed
// by the value, so that a value and its version are always read together
// and one client-side cached GET serves both. Store is a compare-and-set in
// a Lua script, so it works on Redis Cluster (one key per call). Load goes
// through the client-side cache (RESP3 client tracking): a key read before
// and not changed since costs no round trip, and the server's invalidation
// of a key both drops the cached copy and reaches the Notify callback.
//
// A Store is safe for concurrent use by multiple goroutines. Its state is
// the client, set once when a connection attempt succeeds (client), and
// the attempts before that, guarded by mu, which is never held across one.
type Store struct {
	dialer dialer
	log    *slog.Logger
	client atomic.Pointer[rueidis.Client] // nil until connected; then never changes
	closed atomic.Bool                    // set under mu

	mu       sync.Mutex    // guards what follows, and serializes Notify and Close
	dialing  chan struct{} // closed when the attempt to connect in flight ends; nil: none
	dialErr  error         // the last attempt's error
	failedAt time.Time     // when it failed

	listeners atomic.Pointer[[]func(key string)] // replaced, never changed
}

// Open returns a Store on the Redis server, cluster or Sentinel-monitored
// master at url. The URL forms:
//
//	redis://[user:password@]host[:port][/db]     a standalone server (db 0 by default)
//	rediss://...                                 the same over TLS
//	redis://h1:p1?addr=h2:p2&addr=h3:p3          Redis Cluster: the seed nodes
//	redis://[user:password@]s1:p1?addr=s2:p2&addr=s3:p3&master_set=name[/db]
//	                                             Redis Sentinel: the sentinels' addresses
//
// The port defaults to 6379. A single address may also be a cluster node;
// Open detects it. With master_set, the addresses are those of sentinels:
// the Store asks them for the master of that name and follows it through
// failovers; user and password are the master's (the sentinels are reached
// without them).
//
// Open does not need the server up. It fails only for a malformed URL or
// option, or when the server answers and refuses the client (a wrong
// password; a server older than Redis 6, without RESP3). It tries to
// connect once, each address within the dial timeout (WithDialTimeout);
// when nothing answers, it logs a warning and returns the Store anyway:
// calls then fail with an error wrapping distributed.ErrUnavailable, and
// each one (at most one every 100 ms) tries to connect again, until one
// succeeds. A distributed.Cache above serves from process memory meanwhile.
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
	nd := net.Dialer{
		Timeout: cfg.dialTimeout,
		// rueidis PINGs a connection that received nothing during the
		// last KeepAlive, and drops it when the PING is not answered
		// within ConnWriteTimeout: a silent peer is found within
		// 2*KeepAlive + ConnWriteTimeout, under the health timeout.
		KeepAlive: cfg.health / 5,
	}
	opt := rueidis.ClientOption{
		InitAddress:       tgt.addrs,
		Username:          tgt.user,
		Password:          tgt.password,
		SelectDB:          tgt.db,
		Dialer:            nd,
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
	s.dialer = dialer{opt: opt, seeds: tgt.addrs, redacted: tgt.redacted}
	if tgt.masterSet != "" {
		s.dialer.seeds = nil
		s.dialer.opt.Sentinel = rueidis.SentinelOption{
			MasterSet:               tgt.masterSet,
			Dialer:                  nd,
			TopologyRefreshInterval: sentinelRefresh,
		}
		if tgt.tls {
			// Each sentinel is verified against its own address: its
			// name is not the URL's host.
			s.dialer.opt.Sentinel.TLSConfig = tlsConfig(cfg.tls, "")
			s.dialer.opt.TLSConfig = tlsConfig(cfg.tls, "")
		}
	}
	client, err := s.dialer.dial()
	switch {
	case err == nil:
		s.client.Store(&client)
	case errors.Is(err, errRefused):
		return nil, err
	default:
		s.dialErr, s.failedAt = err, time.Now()
		s.log.Warn("redisstore: the server does not answer yet; calls fail until it does, and try again", "err", err)
	}
	return s, nil
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
	c, err := s.check(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	raw, err := c.DoCache(ctx, c.B().Get().Key(key).Cache(), clientCacheTTL).ToString()
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
	c, err := s.check(ctx, key)
	if err != nil {
		return err
	}

	// The PTTL that follows the script on the same connection is a
	// barrier: the server sends this connection's invalidation of the key
	// (it tracks keys read through the client-side cache) before the PTTL
	// reply, so when both replies are in, the cached old value is gone.
	barrier := c.B().Pttl().Key(key).Build()
	res := c.DoMulti(ctx, c.B().Evalsha().Sha1(casSHA).Numkeys(1).Key(key).Arg(args...).Build(), barrier)
	n, err := res[0].AsInt64()
	if rerr, ok := rueidis.IsRedisErr(err); ok && rerr.IsNoScript() {
		// First use on this server (or it restarted): send the script.
		barrier = c.B().Pttl().Key(key).Build()
		res = c.DoMulti(ctx, c.B().Eval().Script(casScript).Numkeys(1).Key(key).Arg(args...).Build(), barrier)
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
	if ttl < 0 {
		return fmt.Errorf("redisstore: Touch: negative ttl %v", ttl)
	}
	c, err := s.check(ctx, key)
	if err != nil {
		return err
	}
	cmd := c.B().Persist().Key(key).Build()
	if ttl > 0 {
		cmd = c.B().Pexpire().Key(key).Milliseconds(millis(ttl)).Build()
	}
	if err := c.Do(ctx, cmd).Error(); err != nil {
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

// Close closes the connections, after the attempt to connect in flight,
// if any, has ended (within the dial timeout). A second Close returns nil
// and does nothing; other calls after Close return distributed.ErrClosed,
// which wraps net.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil
	}
	s.closed.Store(true)
	done := s.dialing
	s.mu.Unlock()
	if done != nil {
		<-done // the attempt closes the client it made
	}
	if c := s.client.Load(); c != nil {
		(*c).Close()
	}
	return nil
}

// Shared reports true: a Redis server is reached by other processes, so a
// distributed.Cache on it without encryption keys logs a warning (see
// distributed.Sharer).
func (s *Store) Shared() bool { return true }

// check returns the client for a call on key, connecting first if needed.
func (s *Store) check(ctx context.Context, key string) (rueidis.Client, error) {
	if s.closed.Load() {
		return nil, distributed.ErrClosed
	}
	if key == "" {
		return nil, errors.New("redisstore: empty key")
	}
	return s.conn(ctx)
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
