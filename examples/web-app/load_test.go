//go:build !windows

// The load benchmark runs a real redis-server, which Wine does not have.

package main

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/redistest"
)

// BenchmarkPages is the web app under load: many signed-in users, each
// request the /me page on replica A or B in turn (a silent token from the
// shared cache and a call of the downstream API). It reports the page
// latency (p50, p99), the pages that failed, and the token requests made
// (none: every token comes from the cache).
//
//	go test -run '^$' -bench Pages ./examples/web-app
func BenchmarkPages(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchmarkPages(b, "") })
	b.Run("redis", func(b *testing.B) {
		redistest.Require(b)
		benchmarkPages(b, redistest.Start(b).URL())
	})
}

func benchmarkPages(b *testing.B, redisURL string) {
	const users = 200
	s := newSite(b, redisURL)
	browsers := make([]*browser, users)
	for i := range browsers {
		browsers[i] = s.newBrowser(b)
		s.signIn(b, browsers[i], s.replicas[i%2], fmt.Sprintf("user%03d@contoso.example", i))
	}
	before := s.idp.Requests()
	var (
		mu     sync.Mutex
		lat    []time.Duration
		next   atomic.Int64
		failed atomic.Int64
	)
	b.SetParallelism(8) // 8 request goroutines per CPU
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			n := next.Add(1)
			br, r := browsers[n%users], s.replicas[n%2]
			start := time.Now()
			resp, err := br.doErr(http.MethodGet, r.url+"/me", nil)
			mine = append(mine, time.Since(start))
			if err != nil || resp.status != http.StatusOK {
				failed.Add(1)
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	n := s.idp.Requests().Sub(before)
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(failed.Load()), "failed-pages")
	b.ReportMetric(float64(n.Token), "token-requests")
	if failed.Load() > 0 || n.Token > 0 {
		b.Errorf("%d failed pages, %d token requests (want none: every token from the cache)", failed.Load(), n.Token)
	}
}
