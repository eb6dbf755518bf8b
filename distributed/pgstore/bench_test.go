//go:build !windows

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/pgtest"
)

// BenchmarkStore measures compare-and-set commits on one key: one writer
// that knows the current version, and 1 or 2 writers that Load, Store and
// retry on conflict. It reports the statements the server executed per
// commit.
func BenchmarkStore(b *testing.B) {
	srv := pgtest.Start(b)
	ctx := context.Background()
	s := open(b, srv.URL(), WithCleanupInterval(0))
	b.Run("known-version", func(b *testing.B) {
		var prev distributed.Version
		before := srv.Statements("")
		b.ReportAllocs()
		for b.Loop() {
			next := distributed.NewVersion()
			if err := s.Store(ctx, "known", blob, prev, next, time.Hour); err != nil {
				b.Fatal(err)
			}
			prev = next
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		b.ReportMetric(float64(srv.Statements("")-before)/float64(b.N), "statements/op")
	})
	for _, writers := range []int{1, 2} {
		b.Run(map[int]string{1: "writers-1", 2: "writers-2"}[writers], func(b *testing.B) {
			k := "contended-" + b.Name()
			var commits, conflicts atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for commits.Load() < int64(b.N) {
						_, ver, err := s.Load(ctx, k)
						if err != nil {
							b.Error(err)
							return
						}
						err = s.Store(ctx, k, blob, ver, distributed.NewVersion(), time.Hour)
						switch {
						case err == nil:
							commits.Add(1)
						case errors.Is(err, distributed.ErrConflict):
							conflicts.Add(1)
						default:
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(commits.Load())/b.Elapsed().Seconds(), "commits/s")
			b.ReportMetric(float64(conflicts.Load())/float64(commits.Load()), "conflicts/commit")
		})
	}
}

// BenchmarkLoad measures a Load of a partition-sized value: one query.
func BenchmarkLoad(b *testing.B) {
	srv := pgtest.Start(b)
	ctx := context.Background()
	s := open(b, srv.URL(), WithCleanupInterval(0))
	v := distributed.NewVersion()
	if err := s.Store(ctx, "bench", blob, 0, v, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if got, ver, err := s.Load(ctx, "bench"); err != nil || ver != v || len(got) != len(blob) {
			b.Fatalf("Load: %d bytes, version %d, %v", len(got), ver, err)
		}
	}
}

// BenchmarkNotice reports how long after the start of one Store's write
// another Store's Notify callback hears it.
func BenchmarkNotice(b *testing.B) {
	srv := pgtest.Start(b)
	n := max(b.N, 200)
	b.ResetTimer()
	delays := noticeDelays(b, srv.URL(), n)
	b.StopTimer()
	slices.Sort(delays)
	b.ReportMetric(float64(delays[len(delays)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(delays[len(delays)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(delays[len(delays)-1].Microseconds()), "max-µs")
}

// BenchmarkCleanup measures the cleanup of 100,000 expired rows while 4
// goroutines Load and Store, and reports the longest and the p99 call.
func BenchmarkCleanup(b *testing.B) {
	srv := pgtest.Start(b)
	s := open(b, srv.URL(), WithCleanupInterval(0))
	var took time.Duration
	var deleted int64
	var calls []time.Duration
	for i := 0; b.Loop(); i++ {
		f := cleanupUnderLoad(b, srv, s, fmt.Sprintf("%d:", i), 100_000)
		took += f.res.took
		deleted += f.res.deleted
		calls = append(calls, f.calls...)
	}
	slices.Sort(calls)
	b.ReportMetric(took.Seconds()/float64(b.N), "s/cleanup")
	b.ReportMetric(float64(deleted)/took.Seconds(), "rows/s")
	b.ReportMetric(float64(calls[len(calls)*99/100].Microseconds())/1000, "p99-call-ms")
	b.ReportMetric(float64(calls[len(calls)-1].Microseconds())/1000, "max-call-ms")
}
