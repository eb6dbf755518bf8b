//go:build !windows

package redisstore

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// redisStores returns dcachetest's store factory over one Redis deployment:
// each call opens a new connection (a "process"); the first call of each
// behaviour test empties the deployment, so tests start empty.
func redisStores(url string, nodes ...*redistest.Server) dcachetest.NewStore {
	var mu sync.Mutex
	var current string
	return func(t testing.TB) distributed.Store {
		t.Helper()
		// The behaviour test is the first two levels of the name
		// (TestX/SharedClient); deeper subtests share its data.
		name := strings.Join(strings.SplitN(t.Name(), "/", 3)[:min(2, strings.Count(t.Name(), "/")+1)], "/")
		mu.Lock()
		if name != current {
			current = name
			for _, n := range nodes {
				if _, err := n.Do("FLUSHALL"); err != nil {
					mu.Unlock()
					t.Fatalf("FLUSHALL: %v", err)
				}
			}
		}
		mu.Unlock()
		return open(t, url)
	}
}

// TestCacheStandalone runs the Cache's behaviour tests (real MSAL Go
// confidential clients) over a standalone redis-server.
func TestCacheStandalone(t *testing.T) {
	srv := redistest.Start(t)
	dcachetest.Run(t, redisStores(srv.URL(), srv))
}

// TestCacheRollingRotation runs the rolling key rotation (replicas on
// different key lists) over a standalone redis-server.
func TestCacheRollingRotation(t *testing.T) {
	srv := redistest.Start(t)
	dcachetest.RollingRotation(t, redisStores(srv.URL(), srv))
}

// TestCacheCluster runs them over a local 3-master Redis Cluster.
func TestCacheCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	dcachetest.Run(t, redisStores(c.URL(), c.Nodes...))
}

// TestCacheOutage kills the real redis-server under a Cache serving a web
// app: warm users keep getting tokens, no call waits past the Cache's
// timeout, a user who signs in during the outage is kept and written back
// when the server is restarted, another process then finds every token,
// and the outage and the recovery are logged once each.
func TestCacheOutage(t *testing.T) {
	// Persistence on: the restarted server has the data of before the kill,
	// as a production Redis would.
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	logs := &dcachetest.Logs{}
	const timeout = 500 * time.Millisecond
	c := dcachetest.NewCache(t, open(t, srv.URL(), WithDialTimeout(time.Second)),
		distributed.WithTimeout(timeout), distributed.WithLogger(slog.New(logs)))
	app := dcachetest.WebApp(t, idp, c)
	accounts := dcachetest.SignInAll(t, ctx, idp, app, 8)
	if errs := dcachetest.Hammer(ctx, app, accounts, 4, 10); len(errs) > 0 {
		t.Fatal(errs[0])
	}

	srv.Kill()
	start := time.Now()
	if errs := dcachetest.Hammer(ctx, app, accounts, 8, 25); len(errs) > 0 {
		t.Fatalf("redis-server killed: %d of 200 warm silent calls failed; first: %v", len(errs), errs[0])
	}
	t.Logf("redis-server killed: 200 warm silent calls in %v, 0 failed", time.Since(start).Round(time.Millisecond))
	// A user this process never saw: no token, and no wait past the timeout.
	cold := time.Now()
	if err := dcachetest.Silent(ctx, app, confidential.Account{HomeAccountID: "unknown.tid"}); err == nil {
		t.Error("a silent call for an unknown user succeeded")
	}
	if d := time.Since(cold); d > 4*timeout+5*time.Second {
		t.Errorf("a cold call with the server down took %v (timeout %v)", d, timeout)
	}
	newcomer := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(100), dcachetest.UserScope)
	if err := dcachetest.Silent(ctx, app, newcomer); err != nil {
		t.Fatalf("the user who signed in during the outage: %v", err)
	}
	if st := c.Stats(); st.Pending != 1 || !st.StoreDown {
		t.Fatalf("during the outage: %+v; want 1 write kept, store down", st)
	}

	srv.Restart()
	restarted := time.Now()
	deadline := restarted.Add(60 * time.Second)
	for st := c.Stats(); st.Pending != 0 || st.StoreDown; st = c.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("60s after the restart: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("the kept write was written back %v after the restart", time.Since(restarted).Round(time.Millisecond))
	if errs := dcachetest.Hammer(ctx, app, accounts, 4, 10); len(errs) > 0 {
		t.Fatalf("after the restart: %d warm silent calls failed; first: %v", len(errs), errs[0])
	}

	// Another process finds the user of before the outage and the newcomer,
	// without asking the identity provider.
	other := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, open(t, srv.URL())))
	before := idp.Requests()
	for _, a := range []confidential.Account{accounts[0], newcomer} {
		if err := dcachetest.Silent(ctx, other, a); err != nil {
			t.Errorf("another process after the restart, %s: %v", a.PreferredUsername, err)
		}
	}
	if n := idp.Requests().Sub(before).Token; n != 0 {
		t.Errorf("another process after the restart made %d token requests, want 0", n)
	}
	if n := logs.Count(slog.LevelWarn, "unavailable"); n != 1 {
		t.Errorf("%d outage warnings for one outage", n)
	}
	if n := logs.Count(slog.LevelInfo, "available again"); n != 1 {
		t.Errorf("%d recovery records for one outage", n)
	}
}

// TestCacheReturn kills the real redis-server under two replicas; users
// sign in on replica B during the outage. Once the server is restarted and
// B has written their tokens back, replica A serves them at once, from
// concurrent calls: it does not wait for its background probe to see the
// server back.
func TestCacheReturn(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	const timeout = 500 * time.Millisecond
	cacheA := dcachetest.NewCache(t, open(t, srv.URL(), WithDialTimeout(time.Second)), distributed.WithTimeout(timeout))
	a := dcachetest.WebApp(t, idp, cacheA)
	cacheB := dcachetest.NewCache(t, open(t, srv.URL(), WithDialTimeout(time.Second)), distributed.WithTimeout(timeout))
	b := dcachetest.WebApp(t, idp, cacheB)
	accounts := dcachetest.SignInAll(t, ctx, idp, b, 2)
	for _, acc := range accounts {
		if err := dcachetest.Silent(ctx, a, acc); err != nil {
			t.Fatalf("replica A, before: %v", err)
		}
	}

	srv.Kill()
	// A learns of the outage from a call for a user it does not hold, and
	// its background probe fails a few times (backing off).
	if dcachetest.Silent(ctx, a, confidential.Account{HomeAccountID: "unknown.tid"}) == nil {
		t.Fatal("a silent call for an unknown user succeeded")
	}
	waitFor(t, "replica A's probes fail a few times", func() bool { return cacheA.Stats().Errors >= 8 })
	late := make([]confidential.Account, 4)
	for i := range late {
		late[i] = dcachetest.SignIn(t, ctx, idp, b, dcachetest.User(100+i), dcachetest.UserScope)
	}
	if st := cacheB.Stats(); st.Pending != len(late) {
		t.Fatalf("replica B during the outage: %+v, want %d writes kept", st, len(late))
	}

	srv.Restart()
	restarted := time.Now()
	waitFor(t, "replica B writes back the sign-ins", func() bool {
		st := cacheB.Stats()
		return st.Pending == 0 && !st.StoreDown
	})
	writtenBack := time.Since(restarted)
	errs := make([]error, len(late))
	var wg sync.WaitGroup
	for i, acc := range late {
		wg.Go(func() { errs[i] = dcachetest.Silent(ctx, a, acc) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica A, %s (signed in on B during the outage), right after B wrote it back: %v", late[i].PreferredUsername, err)
		}
	}
	t.Logf("B wrote the sign-ins back %v after the restart; A served them %v after the restart",
		writtenBack.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	for _, acc := range accounts {
		if err := dcachetest.Silent(ctx, a, acc); err != nil {
			t.Errorf("replica A, after: %v", err)
		}
	}
}

// TestCacheRestartWithoutPersistence pins down what distributed's doc
// says of a Redis that restarts empty: the empty store is the truth, so the
// users of before must sign in again, on this process and any other; a
// user who signed in during the outage is written back and served.
func TestCacheRestartWithoutPersistence(t *testing.T) {
	srv := redistest.Start(t) // --appendonly no, --save ''
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	c := dcachetest.NewCache(t, open(t, srv.URL(), WithDialTimeout(time.Second)), distributed.WithTimeout(500*time.Millisecond))
	app := dcachetest.WebApp(t, idp, c)
	accounts := dcachetest.SignInAll(t, ctx, idp, app, 2)

	srv.Kill()
	newcomer := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(100), dcachetest.UserScope)
	for _, a := range append(accounts, newcomer) {
		if err := dcachetest.Silent(ctx, app, a); err != nil {
			t.Fatalf("with Redis down, %s: %v", a.PreferredUsername, err)
		}
	}
	srv.Restart()
	waitFor(t, "the Cache writes back the sign-in of the outage", func() bool {
		st := c.Stats()
		return st.Pending == 0 && !st.StoreDown
	})
	other := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, open(t, srv.URL())))
	for _, cl := range []struct {
		name string
		app  confidential.Client
	}{{"this process", app}, {"another process", other}} {
		for _, a := range accounts {
			if err := dcachetest.Silent(ctx, cl.app, a); err == nil {
				t.Errorf("%s serves %s, whose partition the restart lost", cl.name, a.PreferredUsername)
			}
		}
		if err := dcachetest.Silent(ctx, cl.app, newcomer); err != nil {
			t.Errorf("%s, the user who signed in during the outage: %v", cl.name, err)
		}
	}
}

// TestCacheHalfOpen: replica A reaches Redis through a path that goes
// silent (a half-open connection); replica B signs a user out meanwhile. A
// keeps serving its users while it cannot reach the store (an outage is not
// a failure), notices the dead connection within the health timeout, and
// sees the sign-out once the path works again.
func TestCacheHalfOpen(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	storeA := open(t, proxy.URL(), WithDialTimeout(time.Second))
	var droppedAt atomic.Int64
	storeA.Notify(func(key string) {
		if key == "" {
			droppedAt.CompareAndSwap(0, time.Now().UnixNano())
		}
	})
	a := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, storeA, distributed.WithTimeout(500*time.Millisecond)))
	cacheB := dcachetest.NewCache(t, open(t, srv.URL()))
	b := dcachetest.WebApp(t, idp, cacheB)
	accounts := dcachetest.SignInAll(t, ctx, idp, b, 2)
	leaver, stayer := accounts[0], accounts[1]
	for _, acc := range accounts {
		if err := dcachetest.Silent(ctx, a, acc); err != nil {
			t.Fatalf("replica A, before: %v", err)
		}
	}

	proxy.Pause()
	paused := time.Now()
	if err := cacheB.RemovePartition(ctx, leaver.HomeAccountID); err != nil {
		t.Fatal(err)
	}
	// While the path is silent, A serves the other user without failing.
	for time.Since(paused) < 3*time.Second {
		if err := dcachetest.Silent(ctx, a, stayer); err != nil {
			t.Fatalf("replica A, %v into the half-open connection: %v", time.Since(paused).Round(time.Millisecond), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "the dead connection is noticed", func() bool { return droppedAt.Load() != 0 })
	t.Logf("half-open connection noticed %v after the path went silent", time.Unix(0, droppedAt.Load()).Sub(paused).Round(time.Millisecond))
	// Until the path works again, A cannot know of the sign-out.
	servedDuring := dcachetest.Silent(ctx, a, leaver) == nil

	proxy.Resume()
	resumed := time.Now()
	waitFor(t, "replica A sees the sign-out after the path works again", func() bool {
		return dcachetest.Silent(ctx, a, leaver) != nil
	})
	t.Logf("during the half-open connection A served the signed-out user: %v; after the path came back it saw the sign-out in %v",
		servedDuring, time.Since(resumed).Round(time.Millisecond))
	if err := dcachetest.Silent(ctx, a, stayer); err != nil {
		t.Fatalf("replica A, after: %v", err)
	}
}
