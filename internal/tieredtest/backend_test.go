//go:build !windows

package tieredtest

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/redisstore"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// dialTimeout bounds the connections of the tests' clients: generous, the
// machine may be loaded.
const dialTimeout = 5 * time.Second

// A backend is one test's deployment of the two layers: a redis-server and
// a second layer. open returns a new tandem over it: one replica's
// connections to both.
type backend struct {
	name   string
	redis  *redistest.Server
	second func(t testing.TB) distributed.Store // a new client of the test's second layer
	calls  *calls                               // what the second layer's clients were asked
	// inspect is a client of the second layer for the test's checks.
	inspect distributed.Store
	// statements, if not nil, counts the statements the server executed
	// on the backend's table (PostgreSQL's own count).
	statements func() int64
}

// failing makes the replicas opened from now on share one client of the
// second layer, which the returned Failing takes down and brings back.
func (b *backend) failing(t testing.TB) *dcachetest.Failing {
	f := dcachetest.NewFailing(b.second(t))
	t.Cleanup(func() { f.Close() })
	b.second = func(testing.TB) distributed.Store { return &counted{inner: f, calls: b.calls, keep: true} }
	return f
}

// shareSecond makes the replicas opened from now on share one client of the
// second layer (new Caches in a running process): pgstore.Open needs the
// server up.
func (b *backend) shareSecond(t testing.TB) {
	s := b.second(t)
	t.Cleanup(func() { s.Close() })
	b.second = func(testing.TB) distributed.Store { return &counted{inner: s, calls: b.calls, keep: true} }
}

// open returns a new tandem on b, closed with t.
func (b *backend) open(t testing.TB) distributed.Store {
	t.Helper()
	r, err := redisstore.Open(b.redis.URL(), redisstore.WithDialTimeout(dialTimeout))
	if err != nil {
		t.Fatal(err)
	}
	s := distributed.Tiered(r, b.second(t))
	t.Cleanup(func() { s.Close() })
	return s
}

// redisOnly returns a new client of b's Redis alone (the store of before the
// tandem), closed with t.
func (b *backend) redisOnly(t testing.TB) distributed.Store {
	t.Helper()
	r, err := redisstore.Open(b.redis.URL(), redisstore.WithDialTimeout(dialTimeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// redisCommands is how many commands b's Redis executed that a Store sends.
func (b *backend) redisCommands() int64 {
	var n int64
	for _, c := range []string{"get", "evalsha", "eval", "pttl", "pexpire", "persist"} {
		n += b.redis.Calls(c)
	}
	return n
}

// memoryBackend is a redis-server (args: its options) and a memory store as
// the second layer, shared by the test's replicas.
func memoryBackend(t testing.TB, args ...string) *backend {
	b := &backend{name: "memory", redis: startRedis(t, args...), calls: &calls{}}
	mem := distributed.NewMemoryStore()
	t.Cleanup(func() { mem.Close() })
	b.second = func(testing.TB) distributed.Store { return &counted{inner: mem, calls: b.calls, keep: true} }
	b.inspect = mem
	return b
}

// startRedis starts the redis-server of a backend.
func startRedis(t testing.TB, args ...string) *redistest.Server { return redistest.Start(t, args...) }

// stores is dcachetest's factory over one backend per behaviour test.
func stores(newBackend func(t testing.TB) *backend) dcachetest.NewStore {
	var mu sync.Mutex
	backends := map[string]*backend{}
	backendOf := func(name string, t testing.TB) *backend {
		mu.Lock()
		defer mu.Unlock() // newBackend may end the test (t.Fatal)
		b, ok := backends[name]
		if !ok {
			b = newBackend(t)
			backends[name] = b
		}
		return b
	}
	return func(t testing.TB) distributed.Store {
		t.Helper()
		// The behaviour test is the first two levels of the name
		// (TestX/SharedClient); deeper subtests share its data.
		name := strings.Join(strings.SplitN(t.Name(), "/", 3)[:min(2, strings.Count(t.Name(), "/")+1)], "/")
		return backendOf(name, t).open(t)
	}
}

// calls counts the calls of a second layer's clients.
type calls struct{ loads, stores, touches atomic.Int64 }

func (c *calls) total() int64 { return c.loads.Load() + c.stores.Load() + c.touches.Load() }

// counted is a client of a second layer that counts its calls; with keep,
// Close leaves the layer open (it is shared: the test closes it).
type counted struct {
	inner distributed.Store
	calls *calls
	keep  bool
}

func (c *counted) Load(ctx context.Context, key string) ([]byte, distributed.Version, error) {
	c.calls.loads.Add(1)
	return c.inner.Load(ctx, key)
}

func (c *counted) Store(ctx context.Context, key string, value []byte, prev, next distributed.Version, ttl time.Duration) error {
	c.calls.stores.Add(1)
	return c.inner.Store(ctx, key, value, prev, next, ttl)
}

func (c *counted) Touch(ctx context.Context, key string, ttl time.Duration) error {
	c.calls.touches.Add(1)
	return c.inner.Touch(ctx, key, ttl)
}

func (c *counted) Close() error {
	if c.keep {
		return nil
	}
	return c.inner.Close()
}

func (c *counted) Notify(f func(string)) { c.inner.(distributed.Notifier).Notify(f) }
