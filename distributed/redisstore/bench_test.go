//go:build !windows

package redisstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/redis/rueidis"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// withoutClientCache makes every Load a GET: the baseline of the
// benchmarks.
func withoutClientCache() Option {
	return optionFunc(func(c *config) { c.noClientCache = true })
}

// blob is the size of a one-user MSAL partition.
var blob = bytes.Repeat([]byte("x"), 1500)

// BenchmarkLoad compares a Load served by the client-side cache (hot), a
// Load that is a GET on the server (uncached), and a bare rueidis GET of the
// same key, and reports the GET commands the server executed per Load.
func BenchmarkLoad(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	const k = "bench"
	setup := open(b, srv.URL())
	if err := setup.Store(ctx, k, blob, 0, distributed.NewVersion(), 0); err != nil {
		b.Fatal(err)
	}
	load := func(b *testing.B, s *Store) {
		if _, _, err := s.Load(ctx, k); err != nil { // warm
			b.Fatal(err)
		}
		gets := srv.Calls("get")
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if v, _, err := s.Load(ctx, k); err != nil || len(v) != len(blob) {
				b.Fatalf("Load: %d bytes, %v", len(v), err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(srv.Calls("get")-gets)/float64(b.N), "GETs/op")
	}
	b.Run("hot", func(b *testing.B) { load(b, open(b, srv.URL())) })
	b.Run("uncached", func(b *testing.B) { load(b, open(b, srv.URL(), withoutClientCache())) })
	b.Run("rueidis-GET", func(b *testing.B) {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		b.ReportAllocs()
		for b.Loop() {
			if v, err := c.Do(ctx, c.B().Get().Key(k).Build()).AsBytes(); err != nil || len(v) != 8+len(blob) {
				b.Fatalf("GET: %d bytes, %v", len(v), err)
			}
		}
	})
}

// BenchmarkStore measures compare-and-set commits: one writer that knows
// the current version, and parallel writers of one key that Load, Store
// and retry on conflict.
func BenchmarkStore(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	b.Run("sequential", func(b *testing.B) {
		s := open(b, srv.URL())
		var prev distributed.Version
		b.ReportAllocs()
		for b.Loop() {
			next := distributed.NewVersion()
			if err := s.Store(ctx, "seq", blob, prev, next, time.Hour); err != nil {
				b.Fatal(err)
			}
			prev = next
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	})
	b.Run("contended", func(b *testing.B) {
		s := open(b, srv.URL())
		var conflicts atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				for {
					_, ver, err := s.Load(ctx, "contended")
					if err != nil {
						b.Error(err)
						return
					}
					err = s.Store(ctx, "contended", blob, ver, distributed.NewVersion(), time.Hour)
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
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/commit")
	})
}

// BenchmarkInvalidation reports how long after one client's Store another
// client, loading the key from its client-side cache, sees the change.
func BenchmarkInvalidation(b *testing.B) {
	srv := redistest.Start(b)
	n := max(b.N, 200)
	b.ResetTimer()
	delays := invalidationDelays(b, srv.URL(), n)
	b.StopTimer()
	slices.Sort(delays)
	b.ReportMetric(float64(delays[len(delays)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(delays[len(delays)-1].Microseconds()), "max-µs")
}

// BenchmarkCacheSilentHit: AcquireTokenSilent of a cached token for one
// user (real MSAL Go confidential client) with no plugin, and with the
// Cache over Redis with and without its in-process layer; it reports the
// commands the server executed per call.
func BenchmarkCacheSilentHit(b *testing.B) {
	srv := redistest.Start(b)
	for _, tc := range []struct {
		name  string
		cache func(b *testing.B) cache.ExportReplace
	}{
		{"no-plugin", func(*testing.B) cache.ExportReplace { return nil }},
		{"redis-L1", func(b *testing.B) cache.ExportReplace {
			return dcachetest.NewCache(b, open(b, srv.URL()))
		}},
		{"redis-no-L1", func(b *testing.B) cache.ExportReplace {
			return dcachetest.NewCache(b, open(b, srv.URL()), distributed.WithL1(0))
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			idp := dcachetest.IDP(b)
			ctx := dcachetest.Ctx(b)
			app := dcachetest.WebApp(b, idp, tc.cache(b))
			a := dcachetest.SignIn(b, ctx, idp, app, dcachetest.User(0), dcachetest.UserScope)
			if err := dcachetest.Silent(ctx, app, a); err != nil {
				b.Fatal(err)
			}
			before := srv.Calls("get") + srv.Calls("evalsha") + srv.Calls("pexpire")
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := dcachetest.Silent(ctx, app, a); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cmds := srv.Calls("get") + srv.Calls("evalsha") + srv.Calls("pexpire") - before
			b.ReportMetric(float64(cmds)/float64(b.N), "redis-cmds/op")
		})
	}
}
