package distributed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/internal/seal"
)

// manager stands in for an MSAL client's memory where a test needs to
// control it entry by entry (the tests in internal/dcachetest use real
// MSAL clients).
type manager struct {
	mu   sync.Mutex
	data []byte
}

func (m *manager) Marshal() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.data), nil
}

func (m *manager) Unmarshal(b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = bytes.Clone(b)
	return nil
}

func (m *manager) snapshot(t testing.TB) *msaljson.Snapshot {
	t.Helper()
	b, _ := m.Marshal()
	s, err := msaljson.Parse(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// add puts an access token for home account id into m, as MSAL's Write
// would, with the app's metadata.
func (m *manager) add(t testing.TB, home, name string) {
	t.Helper()
	s := m.snapshot(t)
	var top map[string]map[string]any
	if err := json.Unmarshal(s.Raw, &top); err != nil {
		t.Fatal(err)
	}
	if top == nil {
		top = map[string]map[string]any{}
	}
	for _, sec := range []string{"AccessToken", "AppMetadata"} {
		if top[sec] == nil {
			top[sec] = map[string]any{}
		}
	}
	top["AccessToken"][home+"-"+name] = map[string]any{"home_account_id": home, "client_id": "app", "realm": "tid", "secret": "secret-" + name}
	top["AppMetadata"]["appmetadata-app"] = map[string]any{"client_id": "app"}
	b, _ := json.Marshal(top)
	m.Unmarshal(b)
}

func (m *manager) remove(t *testing.T, home, name string) {
	t.Helper()
	var top map[string]map[string]any
	b, _ := m.Marshal()
	json.Unmarshal(b, &top)
	delete(top["AccessToken"], home+"-"+name)
	b, _ = json.Marshal(top)
	m.Unmarshal(b)
}

func (m *manager) has(home, name string) bool {
	b, _ := m.Marshal()
	return bytes.Contains(b, []byte(`"secret-`+name+`"`)) && bytes.Contains(b, []byte(home))
}

func newCache(t *testing.T, s Store, opts ...Option) *Cache {
	t.Helper()
	c, err := New(s, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// write does what MSAL does when it gets a token: Replace, Write, Export.
func write(t *testing.T, c *Cache, m *manager, home, name string) {
	t.Helper()
	ctx := context.Background()
	if err := c.Replace(ctx, m, cache.ReplaceHints{PartitionKey: home}); err != nil {
		t.Fatal(err)
	}
	m.add(t, home, name)
	if err := c.Export(ctx, m, cache.ExportHints{PartitionKey: home}); err != nil {
		t.Fatal(err)
	}
}

// stored returns the entries the store holds for partition key.
func stored(t *testing.T, c *Cache, key string) *msaljson.Snapshot {
	t.Helper()
	skey := c.storeKey(key)
	v, _, err := c.store.Load(context.Background(), skey)
	if err != nil || v == nil {
		t.Fatalf("Load(%s) = %v, %v", key, v != nil, err)
	}
	r, err := decodeRecord(v, skey, c.keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.snap
}

func TestStoredPartitionHoldsOnlyItsEntries(t *testing.T) {
	s := NewMemoryStore()
	c := newCache(t, s)
	m := &manager{}
	write(t, c, m, "uid1.tid", "a")
	write(t, c, m, "uid2.tid", "b") // MSAL's memory now holds both users
	if !m.has("uid1.tid", "a") || !m.has("uid2.tid", "b") {
		t.Fatal("the working set lost a partition")
	}
	p2 := string(stored(t, c, "uid2.tid").Raw)
	if strings.Contains(p2, "uid1") || !strings.Contains(p2, "secret-b") || !strings.Contains(p2, "appmetadata") {
		t.Errorf("partition uid2 holds %s", p2)
	}
	// The store's key names nothing of the user.
	for _, key := range []string{c.storeKey("uid1.tid"), c.storeKey("x_tenant_AppTokenCache")} {
		if !strings.HasPrefix(key, DefaultKeyPrefix) || strings.Contains(key, "uid1") || strings.Contains(key, "tenant") {
			t.Errorf("store key %q", key)
		}
	}
	other := newCache(t, s, WithKeyPrefix("other:"))
	if k := other.storeKey("uid1.tid"); strings.TrimPrefix(k, "other:") == strings.TrimPrefix(c.storeKey("uid1.tid"), DefaultKeyPrefix) {
		t.Error("the hash does not depend on the prefix")
	}
}

// Caches on one store (processes) and goroutines write one partition at
// once; every entry survives.
func TestConcurrentWritersLoseNothing(t *testing.T) {
	s := NewMemoryStore()
	const caches, goroutines, each = 3, 4, 15
	var wg sync.WaitGroup
	var cs []*Cache
	for range caches {
		cs = append(cs, newCache(t, s, WithTimeout(time.Minute)))
	}
	for i, c := range cs {
		for g := range goroutines {
			wg.Go(func() {
				m := &manager{} // one MSAL client per goroutine
				for n := range each {
					write(t, c, m, "uid1.tid", fmt.Sprintf("c%dg%dn%d", i, g, n))
				}
			})
		}
	}
	wg.Wait()
	for _, c := range cs {
		waitWrittenBack(t, c)
	}
	got := stored(t, cs[0], "uid1.tid").Sections["AccessToken"]
	if len(got) != caches*goroutines*each {
		t.Errorf("%d tokens stored, want %d", len(got), caches*goroutines*each)
	}
	var conflicts int64
	for _, c := range cs {
		conflicts += c.Stats().Conflicts
	}
	t.Logf("conflicts resolved by merge: %d", conflicts)
}

// A testClock is a clock the test moves by hand, for withClock. Any
// goroutine may read it.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestRemovedPartitionIsNotResurrected(t *testing.T) {
	s := NewMemoryStore()
	clock := newTestClock()
	now := clock.now
	a, b := newCache(t, s), newCache(t, s, withClock(now))
	ma, mb := &manager{}, &manager{}
	ctx := context.Background()
	write(t, a, ma, "uid1.tid", "old")

	// b starts a token refresh (its base is the old partition) ...
	if err := b.Replace(ctx, mb, cache.ReplaceHints{PartitionKey: "uid1.tid"}); err != nil {
		t.Fatal(err)
	}
	// ... a signs the user out ...
	if err := a.RemovePartition(ctx, "uid1.tid"); err != nil {
		t.Fatal(err)
	}
	// ... and b's write arrives after.
	mb.add(t, "uid1.tid", "refreshed")
	if err := b.Export(ctx, mb, cache.ExportHints{PartitionKey: "uid1.tid"}); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, a, "uid1.tid"); !got.Equal(msaljson.Empty) {
		t.Fatalf("the removed partition came back: %s", got.Raw)
	}
	if n := b.Stats().Dropped; n != 1 {
		t.Errorf("Dropped = %d, want 1", n)
	}
	// Both processes' MSAL memory lose the user at the next Replace.
	for _, x := range []struct {
		c *Cache
		m *manager
	}{{a, ma}, {b, mb}} {
		x.c.Replace(ctx, x.m, cache.ReplaceHints{PartitionKey: "uid1.tid"})
		if x.m.has("uid1.tid", "old") || x.m.has("uid1.tid", "refreshed") {
			t.Errorf("MSAL's memory still holds the removed user: %s", x.m.data)
		}
	}
	// A write right after MSAL saw the removal may come from a refresh
	// begun before it: dropped.
	write(t, b, mb, "uid1.tid", "refresh-in-flight")
	if got := string(stored(t, a, "uid1.tid").Raw); strings.Contains(got, "secret-refresh") {
		t.Errorf("a write just after the removal was stored: %s", got)
	}
	// A new sign-in once no call can still be in flight is kept.
	clock.advance(inFlight)
	write(t, b, mb, "uid1.tid", "new")
	if got := string(stored(t, a, "uid1.tid").Raw); !strings.Contains(got, "secret-new") {
		t.Errorf("the sign-in after the removal was not stored: %s", got)
	}
}

func TestRemoveAccountThroughTheEmptyKey(t *testing.T) {
	s := NewMemoryStore()
	c := newCache(t, s)
	m := &manager{}
	ctx := context.Background()
	write(t, c, m, "uid1.tid", "a")
	write(t, c, m, "uid2.tid", "b")
	// MSAL's RemoveAccount: Replace(""), remove from memory, Export("").
	c.Replace(ctx, m, cache.ReplaceHints{})
	if !m.has("uid1.tid", "a") {
		t.Fatal("Replace of the empty key dropped MSAL's memory")
	}
	m.remove(t, "uid1.tid", "a")
	if err := c.Export(ctx, m, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, c, "uid1.tid"); got.Sections["AccessToken"] != nil {
		t.Errorf("RemoveAccount did not reach the partition: %s", got.Raw)
	}
	if got := stored(t, c, "uid2.tid"); len(got.Sections["AccessToken"]) != 1 {
		t.Errorf("RemoveAccount touched another partition: %s", got.Raw)
	}
}

func TestEncryption(t *testing.T) {
	ctx := context.Background()
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	s := NewMemoryStore()
	var logs bytes.Buffer
	old := newCache(t, s, WithEncryptionKeys(k1))
	write(t, old, &manager{}, "uid1.tid", "a")
	raw, _, _ := s.Load(ctx, old.storeKey("uid1.tid"))
	if bytes.Contains(raw, []byte("secret-a")) || bytes.Contains(raw, []byte("uid1")) {
		t.Fatal("the stored blob is readable")
	}
	// Rotation: the new key first, the old one still opens.
	rotated := newCache(t, s, WithEncryptionKeys(k2, k1))
	m := &manager{}
	rotated.Replace(ctx, m, cache.ReplaceHints{PartitionKey: "uid1.tid"})
	if !m.has("uid1.tid", "a") {
		t.Fatal("the second key does not open the old blob")
	}
	// A blob copied to another partition's key does not open: a miss and a warning.
	s.Store(ctx, old.storeKey("uid2.tid"), raw, 0, NewVersion(), 0)
	wrong := newCache(t, s, WithEncryptionKeys(k1), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	m2 := &manager{data: []byte("{}")}
	wrong.Replace(ctx, m2, cache.ReplaceHints{PartitionKey: "uid2.tid"})
	if m2.has("uid1.tid", "a") {
		t.Error("a blob moved to another key was handed to MSAL")
	}
	if st := wrong.Stats(); st.Rejected != 1 || st.Misses != 1 || !strings.Contains(logs.String(), "does not decrypt") {
		t.Errorf("stats %+v, log %q", st, logs.String())
	}
	if strings.Contains(logs.String(), "uid") || strings.Contains(logs.String(), "secret") {
		t.Errorf("the log names a user or a token: %s", logs.String())
	}
	// A key no longer configured: a miss, never MSAL's input.
	onlyNew := newCache(t, s, WithEncryptionKeys(k2))
	m3 := &manager{}
	onlyNew.Replace(ctx, m3, cache.ReplaceHints{PartitionKey: "uid1.tid"})
	if m3.has("uid1.tid", "a") {
		t.Error("a blob sealed with a key not configured was handed to MSAL")
	}
	if _, err := New(s, WithEncryptionKeys([]byte("short"))); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}

func TestL1StaysWithinItsBound(t *testing.T) {
	const bound = 8 << 10
	s := NewMemoryStore()
	writer := newCache(t, s)
	for i := range 50 {
		write(t, writer, &manager{}, fmt.Sprintf("uid%d.tid", i), strings.Repeat("x", 200))
	}
	c := newCache(t, s, WithL1(bound))
	m := &manager{}
	for round := range 3 {
		for i := range 50 {
			c.Replace(context.Background(), m, cache.ReplaceHints{PartitionKey: fmt.Sprintf("uid%d.tid", i)})
			if b := c.Stats().Bytes; b > bound || b < 0 {
				t.Fatalf("round %d partition %d: L1 holds %d bytes, bound %d", round, i, b, bound)
			}
		}
	}
	if c.Stats().Bytes == 0 {
		t.Error("the L1 kept nothing")
	}
}

func TestHotPartitionCostsNothing(t *testing.T) {
	s := NewMemoryStore()
	a, b := newCache(t, s), newCache(t, s)
	ctx := context.Background()
	write(t, a, &manager{}, "uid1.tid", "a")
	m := &manager{}
	for range 100 {
		b.Replace(ctx, m, cache.ReplaceHints{PartitionKey: "uid1.tid"})
	}
	st := b.Stats()
	if st.StoreReads != 1 || st.Unmarshals != 1 || st.MemoryHits != 99 {
		t.Errorf("100 Replace calls of one partition: %+v; want 1 read, 1 unmarshal, 99 memory hits", st)
	}
	// Another process changes it: the notice makes the next Replace read it.
	write(t, a, &manager{}, "uid1.tid", "b")
	b.Replace(ctx, m, cache.ReplaceHints{PartitionKey: "uid1.tid"})
	if !m.has("uid1.tid", "b") {
		t.Error("a change made by another Cache was not seen")
	}
}

// waitWrittenBack waits until c has no write kept for later (a write that
// ran out of time on a loaded machine is kept and written back).
func waitWrittenBack(t *testing.T, c *Cache) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for c.Stats().Pending > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("writes still kept after 30 s: %+v", c.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// touches counts Touch calls.
type touches struct {
	inner Store
	n     atomic.Int64
}

func (s *touches) Load(ctx context.Context, key string) ([]byte, Version, error) {
	return s.inner.Load(ctx, key)
}

func (s *touches) Store(ctx context.Context, key string, value []byte, prev, next Version, ttl time.Duration) error {
	return s.inner.Store(ctx, key, value, prev, next, ttl)
}

func (s *touches) Touch(ctx context.Context, key string, ttl time.Duration) error {
	s.n.Add(1)
	return s.inner.Touch(ctx, key, ttl)
}

func (s *touches) Close() error          { return s.inner.Close() }
func (s *touches) Notify(f func(string)) { s.inner.(Notifier).Notify(f) }

func TestReadsRenewTheExpiry(t *testing.T) {
	clock := newTestClock()
	now, advance := clock.now, clock.advance
	s := &touches{inner: NewMemoryStore()}
	writer := newCache(t, s.inner)
	write(t, writer, &manager{}, "uid1.tid", "a")
	write(t, writer, &manager{}, "app_tid_AppTokenCache", "b")
	c := newCache(t, s, WithTTL(time.Hour), withClock(now))
	m := &manager{}
	replace := func(key string) { c.Replace(context.Background(), m, cache.ReplaceHints{PartitionKey: key}) }
	replace("uid1.tid") // a load renews it
	if s.n.Load() != 1 {
		t.Fatalf("%d touches after the first read, want 1", s.n.Load())
	}
	for range 10 {
		replace("uid1.tid")
	}
	if s.n.Load() != 1 {
		t.Errorf("hot reads renewed the expiry %d times, want none within a quarter of the TTL", s.n.Load()-1)
	}
	advance(16 * time.Minute)
	replace("uid1.tid")
	replace("uid1.tid")
	if s.n.Load() != 2 {
		t.Errorf("%d touches after a quarter of the TTL, want 2", s.n.Load())
	}
	replace("app_tid_AppTokenCache")
	advance(time.Hour)
	replace("app_tid_AppTokenCache")
	if s.n.Load() != 2 {
		t.Error("reads renewed an app-token partition, which expires with its tokens")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	keys, _ := seal.New(bytes.Repeat([]byte{7}, 32))
	snap, _ := msaljson.Parse([]byte(`{"AccessToken":{"k":{"home_account_id":"h"}}}`), nil)
	f.Add(encodeRecord(record{gen: 3, snap: snap}, "k", nil), false)
	f.Add(encodeRecord(record{gen: 3, removed: true}, "k", nil), false)
	f.Add(encodeRecord(record{gen: 3, snap: snap}, "k", keys), true)
	f.Add([]byte{1, 0}, false)
	f.Fuzz(func(t *testing.T, value []byte, sealed bool) {
		k := keys
		if !sealed {
			k = nil
		}
		r, err := decodeRecord(value, "k", k, nil)
		if err != nil {
			return
		}
		if r.snap == nil {
			t.Fatal("a decoded record without a snapshot")
		}
		again, err := decodeRecord(encodeRecord(r, "k", k), "k", k, nil)
		if err != nil || again.gen != r.gen || again.removed != r.removed || !again.snap.Equal(r.snap) {
			t.Errorf("round trip changed the record: %v", err)
		}
	})
}

// The working set drops the least recently used partition when it is full,
// but never one used within the grace period: a concurrent reader may still
// be reading it.
func TestWorkingSetEviction(t *testing.T) {
	clock := newTestClock()
	now, advance := clock.now, clock.advance
	s := NewMemoryStore()
	writer := newCache(t, s)
	for i := range 4 {
		write(t, writer, &manager{}, fmt.Sprintf("uid%d.tid", i), fmt.Sprint(i))
	}
	c := newCache(t, s, withView(2, time.Second), withClock(now))
	m := &manager{}
	replace := func(i int) {
		c.Replace(context.Background(), m, cache.ReplaceHints{PartitionKey: fmt.Sprintf("uid%d.tid", i)})
	}
	replace(0)
	replace(1)
	replace(2) // over the size, but every partition is in use
	for i := range 3 {
		if !m.has(fmt.Sprintf("uid%d.tid", i), fmt.Sprint(i)) {
			t.Errorf("partition %d was dropped within the grace period", i)
		}
	}
	advance(2 * time.Second)
	replace(2)
	replace(3) // now the two least recently used go
	if m.has("uid0.tid", "0") || m.has("uid1.tid", "1") || !m.has("uid2.tid", "2") || !m.has("uid3.tid", "3") {
		t.Errorf("after eviction MSAL holds %s", m.data)
	}
}
