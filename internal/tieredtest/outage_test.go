//go:build !windows

package tieredtest

import (
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/recordfmt"
)

const outageTimeout = 500 * time.Millisecond

// hotPath: silent calls for a partition MSAL holds at the current version
// cost no Redis command and no call to the second layer.
func hotPath(t *testing.T, b *backend) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	app := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, b.open(t)))
	a := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(0), dcachetest.UserScope)
	if err := dcachetest.Silent(ctx, app, a); err != nil {
		t.Fatal(err)
	}
	var sql int64
	if b.statements != nil {
		sql = b.statements()
	}
	redis, second := b.redisCommands(), b.calls.total()
	const calls = 2000
	for range calls {
		if err := dcachetest.Silent(ctx, app, a); err != nil {
			t.Fatal(err)
		}
	}
	r, s := b.redisCommands()-redis, b.calls.total()-second
	t.Logf("%d silent hits on Tiered(redis, %s): %d Redis commands, %d calls to the second layer", calls, b.name, r, s)
	if r != 0 || s != 0 {
		t.Errorf("%d silent hits cost %d Redis commands and %d calls to the second layer; want 0 and 0", calls, r, s)
	}
	if b.statements != nil {
		n := b.statements() - sql
		t.Logf("PostgreSQL executed %d statements on the table during them (pg_stat_statements)", n)
		if n != 0 {
			t.Errorf("%d silent hits cost %d SQL statements, want 0", calls, n)
		}
		if b.statements() == 0 {
			t.Error("pg_stat_statements counted none of the sign-in's statements: the count is blind")
		}
	}
}

// versions returns the version Redis holds for a partition and the one the
// second layer holds.
func versions(t *testing.T, b *backend, redis distributed.Store, homeAccountID string) (first, second distributed.Version) {
	t.Helper()
	key := recordfmt.StoreKey(distributed.DefaultKeyPrefix, homeAccountID)
	ctx := dcachetest.Ctx(t)
	_, first, err := redis.Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	// The test's client may hold connections the server dropped in an
	// outage: a load on one fails once.
	for range 10 {
		if _, second, err = b.inspect.Load(ctx, key); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	return first, second
}

// redisKilled kills the redis-server (which has persistence) under two
// replicas: no call fails, a sign-out and a sign-in during the outage reach
// the second layer at once (nothing is kept for later), and once Redis is
// back with its data of before, the copies it holds of what changed are
// repaired: the signed-out user stays signed out everywhere.
func redisKilled(t *testing.T, b *backend) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	caches := []*distributed.Cache{
		dcachetest.NewCache(t, b.open(t), distributed.WithTimeout(outageTimeout)),
		dcachetest.NewCache(t, b.open(t), distributed.WithTimeout(outageTimeout)),
	}
	replicas := []confidential.Client{dcachetest.WebApp(t, idp, caches[0]), dcachetest.WebApp(t, idp, caches[1])}
	accounts := dcachetest.SignInOn(t, ctx, idp, func(i int) confidential.Client { return replicas[i%2] }, 8)
	leaver, stayers := accounts[0], accounts[1:]
	for _, app := range replicas {
		if errs := dcachetest.Hammer(ctx, app, accounts, 2, 10); len(errs) > 0 {
			t.Fatal(errs[0])
		}
	}

	b.redis.Kill()
	for i, app := range replicas {
		if errs := dcachetest.Hammer(ctx, app, stayers, 4, 25); len(errs) > 0 {
			t.Fatalf("replica %d, Redis killed: %d of 100 silent calls failed; first: %v", i, len(errs), errs[0])
		}
	}
	if err := caches[0].RemovePartition(ctx, leaver.HomeAccountID); err != nil {
		t.Fatalf("sign-out with Redis killed: %v", err)
	}
	newcomer := dcachetest.SignIn(t, ctx, idp, replicas[1], dcachetest.User(100), dcachetest.UserScope)
	for i, c := range caches {
		if st := c.Stats(); st.Pending != 0 || st.StoreDown {
			t.Errorf("replica %d with Redis killed: %+v; want nothing kept, the store up", i, st)
		}
	}
	// (A replica started now would need redisstore.Open to work while
	// Redis is down.)
	for name, app := range map[string]confidential.Client{"replica 0": replicas[0], "replica 1": replicas[1]} {
		if errs := dcachetest.Hammer(ctx, app, append(stayers[:len(stayers):len(stayers)], newcomer), 2, 20); len(errs) > 0 {
			t.Errorf("%s, Redis killed: %d of 40 calls failed; first: %v", name, len(errs), errs[0])
		}
		if dcachetest.Silent(ctx, app, leaver) == nil {
			t.Errorf("%s, Redis killed: serves the user who signed out", name)
		}
	}

	b.redis.Restart()
	restarted := time.Now()
	// Redis came back with the partition of before the sign-out: the
	// tandem that wrote the sign-out repairs it.
	redis := b.redisOnly(t)
	deadline := restarted.Add(30 * time.Second)
	for {
		first, second := versions(t, b, redis, leaver.HomeAccountID)
		if first == second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the restart Redis holds version %d of the signed-out partition, the second layer %d", first, second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the stale copy of the signed-out partition was repaired %v after Redis restarted", time.Since(restarted).Round(time.Millisecond))
	before := idp.Requests()
	fresh := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, b.open(t)))
	for name, app := range map[string]confidential.Client{"replica 0": replicas[0], "replica 1": replicas[1], "a new replica": fresh} {
		for _, a := range append(stayers[:len(stayers):len(stayers)], newcomer) {
			if err := dcachetest.Silent(ctx, app, a); err != nil {
				t.Errorf("%s after the restart, %s: %v", name, a.PreferredUsername, err)
			}
		}
		if dcachetest.Silent(ctx, app, leaver) == nil {
			t.Errorf("%s after the restart serves the user who signed out during the outage", name)
		}
	}
	if n := idp.Requests().Sub(before).Token; n != 0 {
		t.Errorf("after the restart: %d token requests, want 0", n)
	}
}

// secondDown takes the second layer down (down) under two replicas: warm
// users are served (a new replica too, from Redis), a sign-in is kept by
// the Cache and reaches neither layer until the second returns (up), then
// it is written back and served everywhere.
func secondDown(t *testing.T, b *backend, down, up func()) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	logs := &dcachetest.Logs{}
	c := dcachetest.NewCache(t, b.open(t), distributed.WithTimeout(outageTimeout), distributed.WithLogger(slog.New(logs)))
	app := dcachetest.WebApp(t, idp, c)
	other := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, b.open(t), distributed.WithTimeout(outageTimeout)))
	accounts := dcachetest.SignInAll(t, ctx, idp, app, 8)
	if errs := dcachetest.Hammer(ctx, other, accounts, 2, 10); len(errs) > 0 {
		t.Fatal(errs[0])
	}

	down()
	fresh := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, b.open(t), distributed.WithTimeout(outageTimeout)))
	for name, a := range map[string]confidential.Client{"replica 0": app, "replica 1": other, "a new replica": fresh} {
		if errs := dcachetest.Hammer(ctx, a, accounts, 4, 25); len(errs) > 0 {
			t.Errorf("%s, second layer down: %d of 100 silent calls failed; first: %v", name, len(errs), errs[0])
		}
	}
	newcomer := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(100), dcachetest.UserScope)
	if err := dcachetest.Silent(ctx, app, newcomer); err != nil {
		t.Fatalf("the user who signed in with the second layer down: %v", err)
	}
	// A warm user's new token: a write to a partition Redis holds, so the
	// write-back's loads succeed and its writes fail.
	if _, err := app.AcquireTokenSilent(ctx, dcachetest.APIScope, confidential.WithSilentAccount(accounts[1])); err != nil {
		t.Fatalf("a warm user's token for another API with the second layer down: %v", err)
	}
	if n := c.Stats().Pending; n != 2 {
		t.Errorf("%d writes kept with the second layer down, want 2", n)
	}
	// The write-back does not spin on a tandem that answers reads (Redis)
	// and refuses writes: it backs off, and the outage is logged once.
	const span = 3 * time.Second
	stores, cpu := b.calls.stores.Load(), processCPU()
	time.Sleep(span)
	stores, cpu = b.calls.stores.Load()-stores, processCPU()-cpu
	t.Logf("%v with the second layer down and 2 writes kept: %d writes tried on it, %v CPU, %d 'unavailable', %d 'available again'",
		span, stores, cpu.Round(time.Millisecond), logs.Count(slog.LevelWarn, "unavailable"), logs.Count(slog.LevelInfo, "available again"))
	if stores > 70 { // the write-back's period is at least 50 ms
		t.Errorf("%d writes tried on the second layer in %v: the write-back does not back off", stores, span)
	}
	if n := logs.Count(slog.LevelInfo, "available again"); n != 0 {
		t.Errorf("%d 'available again' with the second layer down, want 0", n)
	}
	redis := b.redisOnly(t)
	key := recordfmt.StoreKey(distributed.DefaultKeyPrefix, newcomer.HomeAccountID)
	if _, v, err := redis.Load(ctx, key); err != nil || v != 0 {
		t.Errorf("Redis holds version %d (%v) of a partition the second layer did not commit", v, err)
	}

	up()
	deadline := time.Now().Add(30 * time.Second)
	for st := c.Stats(); st.Pending != 0 || st.StoreDown; st = c.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("30s after the second layer returned: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := idp.Requests()
	late := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, b.open(t)))
	if err := dcachetest.Silent(ctx, late, newcomer); err != nil {
		t.Errorf("a new replica after the second layer returned, the user who signed in meanwhile: %v", err)
	}
	if n := idp.Requests().Sub(before).Token; n != 0 {
		t.Errorf("%d token requests, want 0", n)
	}
	if w, a := logs.Count(slog.LevelWarn, "unavailable"), logs.Count(slog.LevelInfo, "available again"); w != 1 || a != 1 {
		t.Errorf("one outage of the second layer logged %d 'unavailable' and %d 'available again', want 1 and 1", w, a)
	}
	first, second := versions(t, b, redis, newcomer.HomeAccountID)
	if second == 0 || (first != 0 && first != second) {
		t.Errorf("after the write-back: Redis holds version %d, the second layer %d", first, second)
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
