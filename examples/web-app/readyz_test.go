//go:build !windows

// Not under Wine: no redis-server there.

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/redistest"
)

// getReadyz returns /readyz's status code and body.
func getReadyz(t *testing.T, url string) (int, readiness) {
	t.Helper()
	resp, err := http.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	return resp.StatusCode, r
}

func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// sample is the value of the first sample of metric name in a Prometheus
// text body ("" if there is none).
func sample(body, name string) string {
	for line := range strings.Lines(body) {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (!strings.HasPrefix(rest, "{") && !strings.HasPrefix(rest, " ")) {
			continue
		}
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			return strings.TrimSpace(rest[i+1:])
		}
	}
	return ""
}

// TestReadiness runs two `web-app serve` processes on a real redis-server,
// kills it and restarts it: /healthz stays 200, /readyz says "degraded"
// (store down, sign-ins refused, pages served) within a bound with no page
// requested, and "ready" again when Redis returns; /metrics serves the
// cache's metrics in Prometheus text, the store down meanwhile.
func TestReadiness(t *testing.T) {
	redistest.Require(t)
	redis := redistest.Start(t)
	rp := startReplicas(t, redis)
	for _, u := range rp.urls {
		code, r := getReadyz(t, u)
		if code != http.StatusOK || r.Status != "ready" || r.Store != "up" || r.StoreKind != "redis" || !r.SignIns || !r.Pages {
			t.Errorf("/readyz on %s with Redis up: %d %+v", u, code, r)
		}
		code, body := getText(t, u+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics on %s: %d", u, code)
		}
		for _, want := range []string{
			`msalcache_distributed_hits_total{layer="memory"`, `msalcache_distributed_hits_total{layer="l1"`,
			`msalcache_distributed_hits_total{layer="store"`, "msalcache_distributed_misses_total",
			"msalcache_distributed_writes_total", "msalcache_distributed_conflicts_total",
			"msalcache_distributed_store_errors_total", "msalcache_distributed_pending_writes",
			"msalcache_distributed_l1_size_bytes", "# TYPE msalcache_distributed_store_down gauge",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics on %s has no %s:\n%s", u, want, body)
			}
		}
	}

	redis.Kill()
	killed := time.Now()
	for _, u := range rp.urls {
		waitFor(t, 10*time.Second, "/readyz on "+u+" to say the store is down", func() bool {
			code, r := getReadyz(t, u)
			return code == http.StatusOK && r.Status == "degraded" && r.Store == "down" && r.DownSince != "" && !r.SignIns && r.Pages
		})
		t.Logf("/readyz on %s said degraded %v after the kill", u, time.Since(killed).Round(time.Millisecond))
		if code, _ := getText(t, u+"/healthz"); code != http.StatusOK {
			t.Errorf("/healthz on %s with Redis down: %d", u, code)
		}
		if _, body := getText(t, u+"/metrics"); sample(body, "msalcache_distributed_store_down") != "1" {
			t.Errorf("/metrics on %s with Redis down: msalcache_distributed_store_down is %q, want 1", u, sample(body, "msalcache_distributed_store_down"))
		}
	}

	redis.Restart()
	restarted := time.Now()
	for _, u := range rp.urls {
		waitFor(t, 10*time.Second, "/readyz on "+u+" to say ready again", func() bool {
			code, r := getReadyz(t, u)
			return code == http.StatusOK && r.Status == "ready" && r.Store == "up" && r.DownSince == ""
		})
		t.Logf("/readyz on %s said ready %v after the restart", u, time.Since(restarted).Round(time.Millisecond))
		if _, body := getText(t, u+"/metrics"); sample(body, "msalcache_distributed_store_down") != "0" {
			t.Errorf("/metrics on %s after the restart: msalcache_distributed_store_down is %q, want 0", u, sample(body, "msalcache_distributed_store_down"))
		}
	}
}
