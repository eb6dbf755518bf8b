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

// TestIdleClientsAreDropped: the state kept for clients unused for viewIdle
// is dropped as new clients come (a few at each), so with a client per
// request the views stay within about a third more than the clients of the
// last viewIdle; a client still in use keeps its state.
func TestIdleClientsAreDropped(t *testing.T) {
	clock := newTestClock()
	c := newCache(t, NewMemoryStore(), withClock(clock.now))
	ctx := context.Background()
	replace := func(m *manager) {
		if err := c.Replace(ctx, m, cache.ReplaceHints{PartitionKey: "uid.tid"}); err != nil {
			t.Fatal(err)
		}
	}
	kept := &manager{}
	replace(kept)
	keptView, _ := c.views.Load(kept)
	const live = 1000
	step := viewIdle / live
	for i := range 10 * live {
		clock.advance(step)
		replace(&manager{})
		if i%100 == 0 {
			replace(kept) // in use all along
		}
	}
	c.mu.Lock()
	n := len(c.swept)
	c.mu.Unlock()
	if n > live*3/2 {
		t.Errorf("%d views for %d clients used within %v", n, live, viewIdle)
	}
	if v, _ := c.views.Load(kept); v != keptView {
		t.Error("the state of a client in use was dropped")
	}
	count := 0
	c.views.Range(func(any, any) bool { count++; return true })
	if count != n {
		t.Errorf("%d views in the map, %d in the sweep's list", count, n)
	}
}
