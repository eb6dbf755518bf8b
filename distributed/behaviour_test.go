package distributed_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
)

// memoryStores returns a factory whose stores of one test share one memory
// store, as the connections of several processes share one Redis.
func memoryStores() dcachetest.NewStore {
	var mu sync.Mutex
	shared := map[testing.TB]distributed.Store{}
	return func(t testing.TB) distributed.Store {
		mu.Lock()
		defer mu.Unlock()
		s, ok := shared[t]
		if !ok {
			s = distributed.NewMemoryStore()
			shared[t] = s
			t.Cleanup(func() { s.Close() })
		}
		return s
	}
}

func TestSharedClient(t *testing.T)          { dcachetest.SharedClient(t, memoryStores()) }
func TestDaemon(t *testing.T)                { dcachetest.Daemon(t, memoryStores()) }
func TestIsolation(t *testing.T)             { dcachetest.Isolation(t, memoryStores()) }
func TestLostUpdates(t *testing.T)           { dcachetest.LostUpdates(t, memoryStores()) }
func TestHotPath(t *testing.T)               { dcachetest.HotPath(t, memoryStores()) }
func TestSignOut(t *testing.T)               { dcachetest.SignOut(t, memoryStores()) }
func TestRotation(t *testing.T)              { dcachetest.Rotation(t, memoryStores()) }
func TestOnBehalfOf(t *testing.T)            { dcachetest.OnBehalfOf(t, memoryStores()) }
func TestOutage(t *testing.T)                { dcachetest.Outage(t, memoryStores()) }
func TestReturn(t *testing.T)                { dcachetest.Return(t, memoryStores()) }
func TestExpiry(t *testing.T)                { dcachetest.Expiry(t, memoryStores()) }
func TestEncrypted(t *testing.T)             { dcachetest.Encrypted(t, memoryStores()) }
func TestKeyless(t *testing.T)               { dcachetest.Keyless(t, memoryStores()) }
func TestSignInAgain(t *testing.T)           { dcachetest.SignInAgain(t, memoryStores()) }
func TestOutageOrder(t *testing.T)           { dcachetest.OutageOrder(t, memoryStores(), 20) }
func TestAppSignOut(t *testing.T)            { dcachetest.AppSignOut(t, memoryStores()) }
func TestSignOutInDuringOutage(t *testing.T) { dcachetest.SignOutInDuringOutage(t, memoryStores()) }
func TestRefreshWhileCutOff(t *testing.T)    { dcachetest.RefreshWhileCutOff(t, memoryStores()) }

// A refresh in flight across a sign-out, and the same while the working set
// churns (a small one: the refreshing user's partition is evicted).
func TestRefreshAcrossSignOut(t *testing.T) {
	t.Run("still", func(t *testing.T) { dcachetest.RefreshAcrossSignOut(t, memoryStores(), false) })
	t.Run("churn", func(t *testing.T) {
		dcachetest.RefreshAcrossSignOut(t, memoryStores(), true, distributed.WithViewForTests(2, 10*time.Millisecond))
	})
}

// A sign-out while the write-back has taken a sign-in kept during an
// outage and not yet written it: the user stays signed out.
func TestRemoveDuringWriteBack(t *testing.T) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	f := dcachetest.NewFailing(distributed.NewMemoryStore())
	var c *distributed.Cache
	var target atomic.Value // the partition key whose write-back waits for a sign-out
	c = dcachetest.NewCache(t, f, distributed.WithTimeout(time.Second), distributed.WithFlushHookForTests(func(key string) {
		if key == target.Load() {
			target.Store("")
			rctx, cancel := dcachetest.Request(ctx)
			defer cancel()
			if err := c.RemovePartition(rctx, key); err != nil {
				t.Errorf("RemovePartition: %v", err)
			}
		}
	}))
	app := dcachetest.WebApp(t, idp, c)
	for i := range 5 {
		f.Set(true, false)
		rctx, cancel := dcachetest.Request(ctx)
		a := dcachetest.SignIn(t, rctx, idp, app, dcachetest.User(i), dcachetest.UserScope)
		cancel()
		target.Store(a.HomeAccountID)
		f.Set(false, false)
		deadline := time.Now().Add(time.Minute)
		for st := c.Stats(); st.Pending != 0 || st.StoreDown || target.Load() != ""; st = c.Stats() {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: not written back: %+v", i, st)
			}
			time.Sleep(5 * time.Millisecond)
		}
		reader := dcachetest.NewCache(t, f)
		if s := dcachetest.Partition(t, ctx, reader, a.HomeAccountID); len(s.Sections["RefreshToken"]) > 0 {
			t.Errorf("run %d: the sign-in written back after the sign-out brought the user back", i)
		}
		rctx, cancel = dcachetest.Request(ctx)
		if err := dcachetest.Silent(rctx, app, a); err == nil {
			t.Errorf("run %d: the replica still serves the user who signed out", i)
		}
		cancel()
	}
}

func TestRollingRotation(t *testing.T) { dcachetest.RollingRotation(t, memoryStores()) }

// Close writes back what an outage kept if the store is back, says so if
// not, and makes later calls fail with ErrClosed.
func TestClose(t *testing.T) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	f := dcachetest.NewFailing(distributed.NewMemoryStore())
	for i, back := range []bool{false, true} {
		c, err := distributed.New(f, distributed.WithTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		app := dcachetest.WebApp(t, idp, c)
		f.Set(true, false)
		a := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(i), dcachetest.UserScope)
		f.Set(!back, false)
		err = c.Close()
		if back != (err == nil) {
			t.Errorf("store back %v: Close = %v", back, err)
		}
		if err := dcachetest.Silent(ctx, app, a); !errors.Is(err, distributed.ErrClosed) {
			t.Errorf("a silent call after Close: %v, want ErrClosed", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		f.Set(false, false)
		reader := dcachetest.NewCache(t, f)
		stored := len(dcachetest.Partition(t, ctx, reader, a.HomeAccountID).Sections["RefreshToken"]) > 0
		if stored != back {
			t.Errorf("store back at Close %v: the sign-in kept during the outage is stored: %v", back, stored)
		}
	}
}
