package distributed_test

import (
	"errors"
	"sync"
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

func TestSharedClient(t *testing.T) { dcachetest.SharedClient(t, memoryStores()) }
func TestDaemon(t *testing.T)       { dcachetest.Daemon(t, memoryStores()) }
func TestIsolation(t *testing.T)    { dcachetest.Isolation(t, memoryStores()) }
func TestLostUpdates(t *testing.T)  { dcachetest.LostUpdates(t, memoryStores()) }
func TestHotPath(t *testing.T)      { dcachetest.HotPath(t, memoryStores()) }
func TestSignOut(t *testing.T)      { dcachetest.SignOut(t, memoryStores()) }
func TestRotation(t *testing.T)     { dcachetest.Rotation(t, memoryStores()) }
func TestOnBehalfOf(t *testing.T)   { dcachetest.OnBehalfOf(t, memoryStores()) }
func TestOutage(t *testing.T)       { dcachetest.Outage(t, memoryStores()) }
func TestReturn(t *testing.T)       { dcachetest.Return(t, memoryStores()) }
func TestExpiry(t *testing.T)       { dcachetest.Expiry(t, memoryStores()) }
func TestEncrypted(t *testing.T)    { dcachetest.Encrypted(t, memoryStores()) }
func TestKeyless(t *testing.T)      { dcachetest.Keyless(t, memoryStores()) }

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
