package distributed_test

import (
	"sync"
	"testing"

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
func TestOnBehalfOf(t *testing.T)   { dcachetest.OnBehalfOf(t, memoryStores()) }
func TestOutage(t *testing.T)       { dcachetest.Outage(t, memoryStores()) }
func TestExpiry(t *testing.T)       { dcachetest.Expiry(t, memoryStores()) }
func TestEncrypted(t *testing.T)    { dcachetest.Encrypted(t, memoryStores()) }
