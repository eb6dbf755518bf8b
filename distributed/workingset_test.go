package distributed

import (
	"context"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// slowLoads is a store whose loads of key take by (on the test clock).
type slowLoads struct {
	innerStore
	key   string
	clock *testClock
	by    time.Duration
}

func (s *slowLoads) Load(ctx context.Context, key string) ([]byte, Version, error) {
	if key == s.key {
		s.clock.advance(s.by)
	}
	return s.innerStore.Load(ctx, key)
}

func (s *slowLoads) Notify(f func(string)) { s.innerStore.(Notifier).Notify(f) }

// TestASlowLoadIsUsedWhenHandedToMSAL: a partition counts as used from when
// Replace hands it to MSAL, not from when its load began: after a load
// slower than the grace period (possible with a timeout above it), another
// goroutine's Replace does not evict it before its reader reads it.
func TestASlowLoadIsUsedWhenHandedToMSAL(t *testing.T) {
	clock := newTestClock()
	s := NewMemoryStore()
	writer := newCache(t, s)
	write(t, writer, &manager{}, "uid0.tid", "0")
	write(t, writer, &manager{}, "uid1.tid", "1")
	slow := &slowLoads{innerStore: s, key: writer.storeKey("uid0.tid"), clock: clock, by: defaultViewGrace + time.Second}
	c := newCache(t, slow, WithTimeout(10*time.Second), withView(1, defaultViewGrace), withClock(clock.now))
	m := &manager{}
	ctx := context.Background()
	c.Replace(ctx, m, cache.ReplaceHints{PartitionKey: "uid0.tid"}) // its reader reads it after this returns ...
	c.Replace(ctx, m, cache.ReplaceHints{PartitionKey: "uid1.tid"}) // ... but another goroutine's Replace came first
	if !m.has("uid0.tid", "0") {
		t.Error("a partition was evicted right after a slow load handed it to MSAL")
	}
	if !m.has("uid1.tid", "1") {
		t.Error("the second partition is missing")
	}
}
