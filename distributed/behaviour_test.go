package distributed_test

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

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

// A sign-in made once the store is back, while a sign-out kept during the
// outage is not written back yet, goes behind it: after the write-back the
// store holds the sign-in's tokens and none from before the sign-out.
func TestSignInBehindAKeptSignOut(t *testing.T) {
	idp := dcachetest.IDP(t)
	ctx := dcachetest.Ctx(t)
	f := dcachetest.NewFailing(distributed.NewMemoryStore())
	var c *distributed.Cache
	var app confidential.Client
	var target atomic.Value // the partition key whose kept sign-out the sign-in overtakes
	var signedIn atomic.Value
	hookErr := make(chan error, 1)
	c = dcachetest.NewCache(t, f, distributed.WithTimeout(time.Second), distributed.WithFlushHookForTests(func(key string) {
		if key != target.Load() {
			return
		}
		target.Store("")
		// The store answers this process again (a load of a partition
		// nobody holds), and the user signs in again before the
		// write-back wrote her sign-out.
		err := c.Replace(ctx, &emptyMemory{}, cache.ReplaceHints{PartitionKey: "someone.else"})
		if err == nil {
			rctx, cancel := dcachetest.Request(ctx)
			var res confidential.AuthResult
			res, err = idp.AuthCodeLogin(rctx, app, dcachetest.WebClientID, dcachetest.RedirectURI, dcachetest.User(0), dcachetest.UserScope)
			cancel()
			signedIn.Store(res.AccessToken)
		}
		hookErr <- err
	}))
	app = dcachetest.WebApp(t, idp, c)
	a := dcachetest.SignIn(t, ctx, idp, app, dcachetest.User(0), dcachetest.UserScope)
	rctx, cancel := dcachetest.Request(ctx)
	if _, err := app.AcquireTokenSilent(rctx, []string{"api://before-sign-out/read"}, confidential.WithSilentAccount(a)); err != nil {
		t.Fatal(err)
	}
	cancel()
	f.Set(true, false)
	rctx, cancel = dcachetest.Request(ctx)
	if err := c.RemovePartition(rctx, a.HomeAccountID); err != nil {
		t.Fatalf("RemovePartition during the outage: %v", err)
	}
	cancel()
	target.Store(a.HomeAccountID)
	f.Set(false, false)
	select {
	case err := <-hookErr:
		if err != nil {
			t.Fatalf("the sign-in during the write-back: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the kept sign-out was not written back")
	}
	deadline := time.Now().Add(time.Minute)
	for st := c.Stats(); st.Pending != 0 || st.StoreDown; st = c.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("not written back: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := dcachetest.Partition(t, ctx, dcachetest.NewCache(t, f), a.HomeAccountID)
	var old, fresh int
	for _, entry := range s.Sections["AccessToken"] {
		if strings.Contains(entry, "before-sign-out") {
			old++
		}
		if strings.Contains(entry, signedIn.Load().(string)) {
			fresh++
		}
	}
	if old != 0 || fresh != 1 {
		t.Errorf("a sign-in made before a kept sign-out was written back: the store holds %d access tokens from before the sign-out (want 0) and %d from the sign-in (want 1)", old, fresh)
	}
}

// emptyMemory is an MSAL client's memory that holds nothing.
type emptyMemory struct{}

func (*emptyMemory) Unmarshal([]byte) error { return nil }

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
