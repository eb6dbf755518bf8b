//go:build !windows

package redisstore

import (
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// failoverGoal is how soon after the master is killed the Cache must write
// to the store again: the sentinels need 1 s to call the master down (the
// deployment's down-after-milliseconds), then elect a leader and promote
// the replica.
const failoverGoal = 6 * time.Second

// TestSentinelFailover: a Cache on a Sentinel deployment, serving a web app
// (real MSAL Go confidential clients), goes on serving warm users when the
// master is killed, keeps what a user signs in with meanwhile, and writes
// to the promoted replica within failoverGoal of the kill: another process
// then finds that user's tokens.
func TestSentinelFailover(t *testing.T) {
	d := redistest.StartSentinel(t)
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	const timeout = 500 * time.Millisecond
	s := open(t, d.URL(), WithDialTimeout(time.Second))
	c := dcachetest.NewCache(t, s, distributed.WithTimeout(timeout))
	app := dcachetest.WebApp(t, idp, c)
	accounts := dcachetest.SignInAll(t, ctx, idp, app, 8)
	if errs := dcachetest.Hammer(ctx, app, accounts, 4, 10); len(errs) > 0 {
		t.Fatal(errs[0])
	}
	// Let the replica receive the writes before its master dies.
	if n, err := d.Master.Do("WAIT", "1", "5000"); err != nil || n != int64(1) {
		t.Fatalf("WAIT for the replica = %v, %v", n, err)
	}

	d.Master.Kill()
	killed := time.Now()
	if errs := dcachetest.Hammer(ctx, app, accounts, 8, 25); len(errs) > 0 {
		t.Fatalf("master killed: %d of 200 warm silent calls failed; first: %v", len(errs), errs[0])
	}
	newcomer := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(100), dcachetest.UserScope)

	// A write through the Cache (a sign-out's tombstone) is kept while the
	// store cannot take it, and written back (with the sign-in) as soon as
	// it can.
	if err := c.RemovePartition(ctx, "probe"); err != nil {
		t.Fatalf("RemovePartition during the failover: %v", err)
	}
	for st := c.Stats(); st.Pending > 0 || st.StoreDown; st = c.Stats() {
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("30s after the master was killed, the Cache still cannot write (Stats %+v)", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(killed)
	t.Logf("master killed: the Cache writes again after %v (goal %v)", took.Round(time.Millisecond), failoverGoal)
	if took > failoverGoal {
		t.Errorf("the Cache wrote again %v after the master was killed; goal %v", took, failoverGoal)
	}
	if addr, err := d.MasterAddr(); err != nil || addr != d.Replica.Addr() {
		t.Errorf("the sentinels' master is %q (%v); want the promoted replica %s", addr, err, d.Replica.Addr())
	}
	waitFor(t, "the sign-in kept during the failover is written back", func() bool {
		st := c.Stats()
		return st.Pending == 0 && !st.StoreDown
	})
	if errs := dcachetest.Hammer(ctx, app, accounts, 4, 10); len(errs) > 0 {
		t.Fatalf("after the failover: %d warm silent calls failed; first: %v", len(errs), errs[0])
	}

	// Another process, opened after the failover, finds every user on the
	// new master without asking the identity provider.
	other := dcachetest.WebApp(t, idp, dcachetest.NewCache(t, open(t, d.URL())))
	before := idp.Requests()
	for _, a := range []confidential.Account{accounts[0], accounts[7], newcomer} {
		if err := dcachetest.Silent(ctx, other, a); err != nil {
			t.Errorf("another process after the failover, %s: %v", a.PreferredUsername, err)
		}
	}
	if n := idp.Requests().Sub(before).Token; n != 0 {
		t.Errorf("another process after the failover made %d token requests, want 0", n)
	}
}

// TestSentinelStore: the Store on a Sentinel deployment reads and writes
// the master, its Notify callback hears of the lost connection when the
// master is killed, and it reads and writes the promoted replica after the
// failover.
func TestSentinelStore(t *testing.T) {
	d := redistest.StartSentinel(t)
	s := open(t, d.URL())
	flushed := make(chan struct{}, 1)
	s.Notify(func(key string) {
		if key == "" {
			select {
			case flushed <- struct{}{}:
			default:
			}
		}
	})
	const k = "sentinel"
	v1 := distributed.NewVersion()
	if err := s.Store(bg(t), k, []byte("before"), 0, v1, 0); err != nil {
		t.Fatal(err)
	}
	if _, ver, err := s.Load(bg(t), k); err != nil || ver != v1 {
		t.Fatalf("Load = %d, %v", ver, err)
	}
	if n, err := d.Master.Do("EXISTS", k); err != nil || n != int64(1) {
		t.Fatalf("the master holds the key: %v, %v; want 1", n, err)
	}
	if n, err := d.Master.Do("WAIT", "1", "5000"); err != nil || n != int64(1) {
		t.Fatalf("WAIT for the replica = %v, %v", n, err)
	}
	d.Master.Kill()
	took, v2 := recoveryTime(t, s, k, v1, time.Now())
	t.Logf("master killed: the Store writes again after %v", took.Round(time.Millisecond))
	select {
	case <-flushed:
	default:
		t.Error("the callback was not told of the lost connection")
	}
	if _, ver, err := s.Load(bg(t), k); err != nil || ver != v2 {
		t.Fatalf("after the failover, Load = %d, %v; want %d", ver, err, v2)
	}
}

// TestCacheSentinel runs the Cache's behaviour tests over a Sentinel
// deployment.
func TestCacheSentinel(t *testing.T) {
	d := redistest.StartSentinel(t)
	dcachetest.Run(t, redisStores(d.URL(), d.Master))
}
