//go:build !windows

package redisstore

import (
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// TestCacheReadOnlyServer: a redis-server that answers reads and refuses
// writes (READONLY: the old master after a failover; made so here with
// REPLICAOF) under a Cache with one write kept. Warm users are served, the
// write-back backs off instead of spinning (few EVALSHA, little CPU), the
// outage is logged once and its end once, after the server takes writes
// again and the kept write is written back.
func TestCacheReadOnlyServer(t *testing.T) {
	srv := redistest.Start(t)
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	logs := &dcachetest.Logs{}
	c := dcachetest.NewCache(t, open(t, srv.URL()), distributed.WithLogger(slog.New(logs)))
	app := dcachetest.WebApp(t, idp, c)
	accounts := dcachetest.SignInAll(t, ctx, idp, app, 4)

	if _, err := srv.Do("REPLICAOF", "127.0.0.1", "1"); err != nil {
		t.Fatalf("REPLICAOF: %v", err)
	}
	newcomer := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(100), dcachetest.UserScope)
	if st := c.Stats(); st.Pending != 1 || !st.StoreDown {
		t.Fatalf("a sign-in with the server read-only: %+v; want 1 write kept, store down", st)
	}
	const span = 3 * time.Second
	evalsha, cpu := srv.Calls("evalsha"), processCPU()
	time.Sleep(span)
	evalsha, cpu = srv.Calls("evalsha")-evalsha, processCPU()-cpu
	t.Logf("%v read-only with 1 write kept: %d EVALSHA, %v CPU, %d warnings, %d 'available again'",
		span, evalsha, cpu.Round(time.Millisecond), logs.Count(slog.LevelWarn, "unavailable"), logs.Count(slog.LevelInfo, "available again"))
	if evalsha > 70 { // the write-back's period is at least 50 ms
		t.Errorf("%d EVALSHA in %v: the write-back does not back off", evalsha, span)
	}
	if cpu > span/4 {
		t.Errorf("%v of CPU in %v with the server read-only", cpu, span)
	}
	if errs := dcachetest.Hammer(ctx, app, accounts, 4, 10); len(errs) > 0 {
		t.Fatalf("read-only server: %d warm silent calls failed; first: %v", len(errs), errs[0])
	}

	if _, err := srv.Do("REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatalf("REPLICAOF NO ONE: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for st := c.Stats(); st.Pending != 0 || st.StoreDown; st = c.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the server takes writes again: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	other := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, open(t, srv.URL())))
	before := idp.Requests()
	if err := dcachetest.Silent(ctx, other, newcomer); err != nil {
		t.Errorf("another process, the user who signed in while the server was read-only: %v", err)
	}
	if n := idp.Requests().Sub(before).Token; n != 0 {
		t.Errorf("another process made %d token requests, want 0", n)
	}
	if n := logs.Count(slog.LevelWarn, "unavailable"); n != 1 {
		t.Errorf("%d outage warnings, want 1", n)
	}
	if n := logs.Count(slog.LevelInfo, "available again"); n != 1 {
		t.Errorf("%d 'available again', want 1", n)
	}
}

// processCPU returns the CPU time (user and system) this process used so far.
func processCPU() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
