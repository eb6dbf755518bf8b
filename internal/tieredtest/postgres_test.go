//go:build !windows

package tieredtest

import (
	"fmt"
	"hash/fnv"
	"testing"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/pgstore"
	"github.com/msalcache/msalcache/distributed/storetest"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/pgtest"
)

// The tandem of the issue: a real redis-server over a real PostgreSQL.

// postgres starts one PostgreSQL server for the test t and returns the
// factory of backends on it: a redis-server each, and a table each, so that
// every backend starts empty.
func postgres(t testing.TB) (*pgtest.Server, func(t testing.TB, args ...string) *backend) {
	pg := pgtest.Start(t)
	return pg, func(t testing.TB, args ...string) *backend {
		h := fnv.New64a()
		h.Write([]byte(t.Name()))
		name := fmt.Sprintf("tiered_%016x", h.Sum64())
		table := pgstore.WithTable(name)
		b := &backend{name: "postgres", redis: nil, calls: &calls{}}
		b.statements = func() int64 {
			// Load, the compare-and-sets and Touch (pg_stat_statements).
			return pg.Statements("SELECT value, version FROM "+name) + pg.Statements("UPDATE "+name+" SET") +
				pg.Statements("INSERT INTO "+name+" ")
		}
		openPG := func(t testing.TB) *pgstore.Store {
			t.Helper()
			s, err := pgstore.Open(pg.URL(), table, pgstore.WithDialTimeout(dialTimeout))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		b.inspect = openPG(t)
		t.Cleanup(func() { b.inspect.Close() })
		b.redis = startRedis(t, args...)
		b.second = func(t testing.TB) distributed.Store { return &counted{inner: openPG(t), calls: b.calls} }
		return b
	}
}

func TestConformanceRedisPostgres(t *testing.T) {
	_, newBackend := postgres(t)
	storetest.Run(t, func(t *testing.T) func() distributed.Store {
		b := newBackend(t)
		return func() distributed.Store { return b.open(t) }
	})
}

func TestCacheRedisPostgres(t *testing.T) {
	_, newBackend := postgres(t)
	dcachetest.Run(t, stores(func(t testing.TB) *backend { return newBackend(t) }))
}

// TestHeadline is the headline test: Tiered(redis, postgres).
func TestHeadline(t *testing.T) {
	_, newBackend := postgres(t)
	headlineTest(t, newBackend)
}

func TestHotPathRedisPostgres(t *testing.T) {
	_, newBackend := postgres(t)
	hotPath(t, newBackend(t))
}

func TestRedisKilledRedisPostgres(t *testing.T) {
	_, newBackend := postgres(t)
	redisKilled(t, newBackend(t, "--appendonly", "yes", "--appendfsync", "always"))
}

func TestPostgresKilled(t *testing.T) {
	pg, newBackend := postgres(t)
	b := newBackend(t)
	b.shareSecond(t)
	secondDown(t, b, pg.Kill, pg.Restart)
}
