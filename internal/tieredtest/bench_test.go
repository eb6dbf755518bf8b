//go:build !windows

package tieredtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
)

// blob is the size of a one-user MSAL partition.
var blob = bytes.Repeat([]byte("x"), 1500)

// The benchmarks of the tandem, Tiered(redis, postgres); run them in one
// run, the ratios are what counts:
//
//	go test -run '^$' -bench . -benchtime 2000x ./internal/tieredtest

// BenchmarkSilentHit: AcquireTokenSilent of a cached token for one user
// (real MSAL Go confidential client) with no plugin, and with the Cache on
// the tandem; it reports the Redis commands and the calls to PostgreSQL
// per call.
func BenchmarkSilentHit(b *testing.B) {
	_, newBackend := postgres(b)
	for _, tandem := range []bool{false, true} {
		name := "no-plugin"
		if tandem {
			name = "tandem"
		}
		b.Run(name, func(b *testing.B) {
			be := newBackend(b)
			idp := dcachetest.IDP(b)
			ctx := dcachetest.Ctx(b)
			var c cache.ExportReplace
			if tandem {
				c = dcachetest.NewCache(b, be.open(b))
			}
			app := dcachetest.WebApp(b, idp, c)
			a := dcachetest.SignIn(b, ctx, idp, app, dcachetest.User(0), dcachetest.UserScope)
			if err := dcachetest.Silent(ctx, app, a); err != nil {
				b.Fatal(err)
			}
			redis, sql := be.redisCommands(), be.calls.total()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := dcachetest.Silent(ctx, app, a); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(be.redisCommands()-redis)/float64(b.N), "redis-cmds/op")
			b.ReportMetric(float64(be.calls.total()-sql)/float64(b.N), "pg-calls/op")
		})
	}
}

// BenchmarkLoad: a Load of a key seen for the first time by this client
// (no client-side cache), served by Redis (hit), by PostgreSQL with Redis
// empty (miss: read, copied to Redis, verified), and by PostgreSQL alone.
func BenchmarkLoad(b *testing.B) {
	_, newBackend := postgres(b)
	ctx := context.Background()
	for _, tc := range []string{"tandem-hit", "tandem-miss", "postgres-alone"} {
		b.Run(tc, func(b *testing.B) {
			be := newBackend(b)
			// b.Run calls this more than once on the same table: keys
			// of each call are new.
			run := distributed.NewVersion()
			keys := make([]string, b.N)
			for i := range keys {
				keys[i] = fmt.Sprintf("load-%d-%d", run, i)
			}
			fill(b, be.open(b), keys)
			if tc == "tandem-miss" {
				if _, err := be.redis.Do("FLUSHALL"); err != nil {
					b.Fatal(err)
				}
			}
			var s distributed.Store
			if tc == "postgres-alone" {
				s = be.second(b)
				b.Cleanup(func() { s.Close() })
			} else {
				s = be.open(b)
			}
			sql := be.calls.total()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if v, _, err := s.Load(ctx, keys[i]); err != nil || len(v) != len(blob) {
					b.Fatalf("Load: %d bytes, %v", len(v), err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(be.calls.total()-sql)/float64(b.N), "pg-calls/op")
		})
	}
}

// fill stores blob at keys through s, with a few writers.
func fill(b *testing.B, s distributed.Store, keys []string) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(keys)); i = next.Add(1) - 1 {
				if err := s.Store(ctx, keys[i], blob, 0, distributed.NewVersion(), time.Hour); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// BenchmarkStore: compare-and-set commits per second on PostgreSQL alone
// and through the tandem, with 1 and 2 writers per key (writers that Load,
// Store and retry on conflict, on clients of their own).
func BenchmarkStore(b *testing.B) {
	_, newBackend := postgres(b)
	ctx := context.Background()
	for _, store := range []string{"postgres-alone", "tandem"} {
		for _, writers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/writers=%d", store, writers), func(b *testing.B) {
				be := newBackend(b)
				clients := make([]distributed.Store, writers)
				for i := range clients {
					if store == "tandem" {
						clients[i] = be.open(b)
					} else {
						clients[i] = be.second(b)
						b.Cleanup(func() { clients[i].Close() })
					}
				}
				var commits, conflicts atomic.Int64
				b.ResetTimer()
				var wg sync.WaitGroup
				for _, s := range clients {
					wg.Go(func() {
						for commits.Add(1) <= int64(b.N) {
							for {
								_, ver, err := s.Load(ctx, "key")
								if err != nil {
									b.Error(err)
									return
								}
								err = s.Store(ctx, "key", blob, ver, distributed.NewVersion(), time.Hour)
								if err == nil {
									break
								}
								if !errors.Is(err, distributed.ErrConflict) {
									b.Error(err)
									return
								}
								conflicts.Add(1)
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
				b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/commit")
			})
		}
	}
}
