//go:build !windows

package pgstore

import (
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/pgtest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// pgStores returns dcachetest's store factory over one PostgreSQL server:
// each call opens a new Store (a "process"); each behaviour test gets a
// table of its own, so tests start empty.
func pgStores(url string, opts ...Option) dcachetest.NewStore {
	return func(t testing.TB) distributed.Store {
		t.Helper()
		// The behaviour test is the first two levels of the name
		// (TestX/SharedClient); deeper subtests share its data.
		name := strings.Join(strings.SplitN(t.Name(), "/", 3)[:min(2, strings.Count(t.Name(), "/")+1)], "/")
		return open(t, url, append([]Option{WithTable(tableFor(name))}, opts...)...)
	}
}

// tableFor returns a table name for the test named name.
func tableFor(name string) string {
	h := fnv.New64a()
	h.Write([]byte(name))
	return fmt.Sprintf("t_%016x", h.Sum64())
}

// TestCache runs the Cache's behaviour tests (real MSAL Go confidential
// clients) over PostgreSQL alone.
func TestCache(t *testing.T) {
	srv := pgtest.Start(t)
	dcachetest.Run(t, pgStores(srv.URL()))
}

// TestCacheOutage kills the real PostgreSQL server under a Cache serving a
// web app: warm users keep getting tokens, no call waits past the Cache's
// timeout, a user who signs in during the outage is kept and written back
// when the server is restarted, another process then finds every token,
// and the outage and the recovery are logged once each.
func TestCacheOutage(t *testing.T) {
	srv := pgtest.Start(t)
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
		t.Fatalf("PostgreSQL killed: %d of 200 warm silent calls failed; first: %v", len(errs), errs[0])
	}
	t.Logf("PostgreSQL killed: 200 warm silent calls in %v, 0 failed", time.Since(start).Round(time.Millisecond))
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
	waitFor(t, "the kept write is written back", func() bool {
		st := c.Stats()
		return st.Pending == 0 && !st.StoreDown
	})
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

// TestCacheReturn kills the real PostgreSQL server under two replicas;
// users sign in on replica B during the outage. Once the server is
// restarted and B has written their tokens back, replica A serves them at
// once, from concurrent calls.
func TestCacheReturn(t *testing.T) {
	srv := pgtest.Start(t)
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

// TestCacheHalfOpen: replica A reaches PostgreSQL through a path that goes
// silent (a half-open connection); replica B signs a user out meanwhile. A
// keeps serving its other user while it cannot reach the store, notices
// the dead notice connection within its health timeout, and sees the
// sign-out once the path works again.
func TestCacheHalfOpen(t *testing.T) {
	srv := pgtest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	storeA := open(t, "postgres://app@"+proxy.Addr()+"/postgres?sslmode=disable", WithDialTimeout(time.Second))
	var mu sync.Mutex
	var droppedAt time.Time
	storeA.Notify(func(key string) {
		mu.Lock()
		defer mu.Unlock()
		if key == "" && droppedAt.IsZero() {
			droppedAt = time.Now()
		}
	})
	dropped := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return droppedAt
	}
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
	for time.Since(paused) < 3*time.Second {
		if err := dcachetest.Silent(ctx, a, stayer); err != nil {
			t.Fatalf("replica A, %v into the half-open connection: %v", time.Since(paused).Round(time.Millisecond), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "the dead notice connection is noticed", func() bool { return !dropped().IsZero() })
	t.Logf("half-open connection noticed %v after the path went silent", dropped().Sub(paused).Round(time.Millisecond))

	proxy.Resume()
	resumed := time.Now()
	waitFor(t, "replica A sees the sign-out after the path works again", func() bool {
		return dcachetest.Silent(ctx, a, leaver) != nil
	})
	t.Logf("after the path came back A saw the sign-out in %v", time.Since(resumed).Round(time.Millisecond))
	if err := dcachetest.Silent(ctx, a, stayer); err != nil {
		t.Fatalf("replica A, after: %v", err)
	}
}

// waitFor polls cond, bounded.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHotPathNoSQL counts, on the server, what 2000 silent hits of a
// signed-in user send to PostgreSQL: nothing (the Cache serves them from
// memory, kept coherent by the Store's notices).
func TestHotPathNoSQL(t *testing.T) {
	srv := pgtest.Start(t)
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	app := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, open(t, srv.URL())))
	a := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(0), dcachetest.UserScope)
	if err := dcachetest.Silent(ctx, app, a); err != nil {
		t.Fatal(err)
	}
	before := srv.Statements(DefaultTable)
	for range 2000 {
		if err := dcachetest.Silent(ctx, app, a); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Statements(DefaultTable) - before; n != 0 {
		t.Errorf("2000 silent hits sent %d statements to PostgreSQL, want 0", n)
	}
}
