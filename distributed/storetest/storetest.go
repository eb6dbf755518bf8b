package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
)

// waitBound bounds every wait for something that happens asynchronously
// (an invalidation, an expiry): generous, for loaded machines.
const waitBound = 10 * time.Second

// Run runs the suite. newBackend is called once per test and returns a
// function that opens a client of that test's backend; clients opened from
// one backend see each other's writes (an in-process store may return the
// same Store every time). Backends may share their keyspace between tests:
// every test uses keys named after itself. The caller closes the clients
// (t.Cleanup); the suite closes one only to test Close.
func Run(t *testing.T, newBackend func(t *testing.T) func() distributed.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, open func() distributed.Store)
	}{
		{"Missing", testMissing},
		{"CompareAndSet", testCompareAndSet},
		{"NextVersionMustBeNew", testNextVersionMustBeNew},
		{"ValuesAreCopied", testValuesAreCopied},
		{"OtherClientSeesWrites", testOtherClientSeesWrites},
		{"TTL", testTTL},
		{"Touch", testTouch},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Notify", testNotify},
		{"CanceledContext", testCanceledContext},
		{"Scan", testScan},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.f(t, newBackend(t))
		})
	}
}

// key returns a key unique to the test.
func key(t *testing.T, name string) string {
	return "storetest:" + t.Name() + ":" + name
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitBound)
	t.Cleanup(cancel)
	return c
}

// load loads key and fails the test on an error.
func load(t *testing.T, s distributed.Store, k string) ([]byte, distributed.Version) {
	t.Helper()
	v, ver, err := s.Load(ctx(t), k)
	if err != nil {
		t.Fatalf("Load(%q): %v", k, err)
	}
	return v, ver
}

// store stores and fails the test on an error.
func store(t *testing.T, s distributed.Store, k string, value []byte, prev, next distributed.Version, ttl time.Duration) {
	t.Helper()
	if err := s.Store(ctx(t), k, value, prev, next, ttl); err != nil {
		t.Fatalf("Store(%q, prev %d, next %d): %v", k, prev, next, err)
	}
}

// eventually polls cond until it holds, failing the test after waitBound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitBound)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testMissing(t *testing.T, open func() distributed.Store) {
	s := open()
	k := key(t, "k")
	if v, ver, err := s.Load(ctx(t), k); v != nil || ver != 0 || err != nil {
		t.Fatalf("Load of a missing key = %q, %d, %v; want nil, 0, nil", v, ver, err)
	}
	// Touch of a missing key does nothing and is no error.
	if err := s.Touch(ctx(t), k, time.Minute); err != nil {
		t.Fatalf("Touch of a missing key: %v", err)
	}
	if v, ver := load(t, s, k); v != nil || ver != 0 {
		t.Fatalf("Load after Touch of a missing key = %q, %d; want nil, 0", v, ver)
	}
	// A write based on a version the key does not hold is a conflict.
	if err := s.Store(ctx(t), k, []byte("x"), distributed.NewVersion(), distributed.NewVersion(), 0); !errors.Is(err, distributed.ErrConflict) {
		t.Fatalf("Store on a missing key with prev != 0 = %v, want ErrConflict", err)
	}
	if v, ver := load(t, s, k); v != nil || ver != 0 {
		t.Fatalf("Load after a conflict = %q, %d; want nil, 0", v, ver)
	}
}

func testCompareAndSet(t *testing.T, open func() distributed.Store) {
	s := open()
	k := key(t, "k")
	v1, v2, v3 := distributed.NewVersion(), distributed.NewVersion(), distributed.NewVersion()

	store(t, s, k, []byte("one"), 0, v1, 0)
	if v, ver := load(t, s, k); string(v) != "one" || ver != v1 {
		t.Fatalf("Load = %q, %d; want one, %d", v, ver, v1)
	}
	// Creating again conflicts: the key holds v1.
	if err := s.Store(ctx(t), k, []byte("other"), 0, v2, 0); !errors.Is(err, distributed.ErrConflict) {
		t.Fatalf("Store with prev 0 on an existing key = %v, want ErrConflict", err)
	}
	store(t, s, k, []byte("two"), v1, v2, 0)
	// A writer still based on v1 lost the race.
	if err := s.Store(ctx(t), k, []byte("late"), v1, v3, 0); !errors.Is(err, distributed.ErrConflict) {
		t.Fatalf("Store with a stale prev = %v, want ErrConflict", err)
	}
	if v, ver := load(t, s, k); string(v) != "two" || ver != v2 {
		t.Fatalf("Load after a conflict = %q, %d; want two, %d", v, ver, v2)
	}
	// An empty value is a value.
	store(t, s, k, []byte{}, v2, v3, 0)
	if v, ver := load(t, s, k); len(v) != 0 || ver != v3 {
		t.Fatalf("Load of an empty value = %q, %d; want \"\", %d", v, ver, v3)
	}
	// Binary values round-trip, large ones too.
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	v4 := distributed.NewVersion()
	store(t, s, k, big, v3, v4, 0)
	if v, ver := load(t, s, k); !bytes.Equal(v, big) || ver != v4 {
		t.Fatalf("Load of a 1 MiB binary value: %d bytes, version %d; want %d bytes, version %d", len(v), ver, len(big), v4)
	}
}

// testNextVersionMustBeNew: a write that would keep the version (or use the
// zero Version) is refused: readers that compare versions would miss it.
func testNextVersionMustBeNew(t *testing.T, open func() distributed.Store) {
	s := open()
	k := key(t, "k")
	v1 := distributed.NewVersion()
	store(t, s, k, []byte("one"), 0, v1, 0)
	if err := s.Store(ctx(t), k, []byte("changed"), v1, v1, 0); err == nil {
		t.Error("a write that keeps the version succeeded")
	}
	if err := s.Store(ctx(t), k, []byte("changed"), v1, 0, 0); err == nil {
		t.Error("a write of version 0 succeeded")
	}
	if v, ver := load(t, s, k); string(v) != "one" || ver != v1 {
		t.Fatalf("Load = %q, %d; want one, %d", v, ver, v1)
	}
}

func testValuesAreCopied(t *testing.T, open func() distributed.Store) {
	s := open()
	k := key(t, "k")
	in := []byte("original")
	v1 := distributed.NewVersion()
	store(t, s, k, in, 0, v1, 0)
	copy(in, "CHANGED!")
	out, _ := load(t, s, k)
	if string(out) != "original" {
		t.Fatalf("Load = %q after the caller changed the slice it stored; want original", out)
	}
	copy(out, "CHANGED!")
	if again, _ := load(t, s, k); string(again) != "original" {
		t.Fatalf("Load = %q after the caller changed the slice it loaded; want original", again)
	}
}

func testOtherClientSeesWrites(t *testing.T, open func() distributed.Store) {
	a, b := open(), open()
	k := key(t, "k")
	if v, _ := load(t, b, k); v != nil { // b may now cache "missing"
		t.Fatalf("Load = %q, want nil", v)
	}
	v1 := distributed.NewVersion()
	store(t, a, k, []byte("one"), 0, v1, 0)
	eventually(t, "the other client sees the new key", func() bool {
		v, ver := load(t, b, k)
		return ver == v1 && string(v) == "one"
	})
	// b now caches v1; a's next write replaces it.
	v2 := distributed.NewVersion()
	store(t, a, k, []byte("two"), v1, v2, 0)
	eventually(t, "the other client sees the change", func() bool {
		v, ver := load(t, b, k)
		return ver == v2 && string(v) == "two"
	})
	// And b's write based on what it sees succeeds and a sees it.
	v3 := distributed.NewVersion()
	store(t, b, k, []byte("three"), v2, v3, 0)
	eventually(t, "the first client sees the other's write", func() bool {
		_, ver := load(t, a, k)
		return ver == v3
	})
}

func testTTL(t *testing.T, open func() distributed.Store) {
	s := open()
	k, forever := key(t, "k"), key(t, "forever")
	v1 := distributed.NewVersion()
	store(t, s, k, []byte("short"), 0, v1, 300*time.Millisecond)
	store(t, s, forever, []byte("kept"), 0, v1, 0)
	// Loaded before it expires (and so possibly cached by a client).
	if _, ver := load(t, s, k); ver != v1 {
		// The machine may have been too slow to see it before expiry;
		// only a version other than v1 or 0 is wrong.
		if ver != 0 {
			t.Fatalf("Load = version %d, want %d", ver, v1)
		}
	}
	eventually(t, "the key expires", func() bool {
		_, ver := load(t, s, k)
		return ver == 0
	})
	// An expired key is missing: it can be created again.
	v2 := distributed.NewVersion()
	store(t, s, k, []byte("again"), 0, v2, 0)
	if v, ver := load(t, s, k); string(v) != "again" || ver != v2 {
		t.Fatalf("Load after re-creating = %q, %d; want again, %d", v, ver, v2)
	}
	if _, ver := load(t, s, forever); ver != v1 {
		t.Fatalf("a key stored with ttl 0 = version %d, want %d", ver, v1)
	}
}

func testTouch(t *testing.T, open func() distributed.Store) {
	s := open()
	k, persisted := key(t, "k"), key(t, "persisted")
	v1 := distributed.NewVersion()
	const ttl = 400 * time.Millisecond
	store(t, s, k, []byte("slide"), 0, v1, ttl)
	store(t, s, persisted, []byte("kept"), 0, v1, ttl)
	// Touch(0) removes the expiry.
	if err := s.Touch(ctx(t), persisted, 0); err != nil {
		t.Fatal(err)
	}
	// Touching well within the ttl keeps the key alive past several ttls.
	// A touch that came too late (a stalled machine) lets it expire: then
	// the test says so rather than failing on timing.
	start := time.Now()
	last := start
	for time.Since(start) < 4*ttl {
		if err := s.Touch(ctx(t), k, ttl); err != nil {
			t.Fatal(err)
		}
		v, ver := load(t, s, k)
		if ver == 0 {
			if gap := time.Since(last); gap >= ttl {
				t.Skipf("the machine stalled for %v, longer than the ttl %v, between touches", gap, ttl)
			}
			t.Fatalf("the key expired %v after its last Touch with ttl %v", time.Since(last), ttl)
		}
		if ver != v1 || string(v) != "slide" {
			t.Fatalf("Touch changed the value: %q, version %d; want slide, %d", v, ver, v1)
		}
		last = time.Now()
		time.Sleep(ttl / 8)
	}
	// Untouched, it expires.
	eventually(t, "the untouched key expires", func() bool {
		_, ver := load(t, s, k)
		return ver == 0
	})
	if v, ver := load(t, s, persisted); ver != v1 || string(v) != "kept" {
		t.Fatalf("after Touch(0) the key = %q, version %d; want kept, %d", v, ver, v1)
	}
}

// testConcurrentWriters increments a counter from many goroutines on two
// clients through Load, Store and retry on conflict: every increment must
// survive.
func testConcurrentWriters(t *testing.T, open func() distributed.Store) {
	clients := []distributed.Store{open(), open()}
	k := key(t, "counter")
	const writers, increments = 8, 25
	var conflicts atomic.Int64
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		s := clients[w%len(clients)]
		wg.Go(func() {
			for range increments {
				for {
					val, ver, err := s.Load(c, k)
					if err != nil {
						errs <- err
						return
					}
					var n uint64
					if len(val) == 8 {
						n = binary.BigEndian.Uint64(val)
					} else if val != nil {
						errs <- fmt.Errorf("counter holds %d bytes", len(val))
						return
					}
					next := binary.BigEndian.AppendUint64(nil, n+1)
					err = s.Store(c, k, next, ver, distributed.NewVersion(), 0)
					if err == nil {
						break
					}
					if !errors.Is(err, distributed.ErrConflict) {
						errs <- err
						return
					}
					conflicts.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	eventually(t, "every client sees the final count", func() bool {
		for _, s := range clients {
			val, _ := load(t, s, k)
			if len(val) != 8 || binary.BigEndian.Uint64(val) != writers*increments {
				return false
			}
		}
		return true
	})
	t.Logf("%d increments, %d conflicts retried", writers*increments, conflicts.Load())
}

// testNotify checks that a client hears of another client's changes to keys
// it loaded: a new key, a changed one.
func testNotify(t *testing.T, open func() distributed.Store) {
	a := open()
	n, ok := a.(distributed.Notifier)
	if !ok {
		t.Fatalf("%T does not implement distributed.Notifier", a)
	}
	k := key(t, "k")
	// Two listeners, as two Caches sharing the store register: each hears
	// every change.
	var mu sync.Mutex
	heard := [2]map[string]int{{}, {}}
	for i := range heard {
		n.Notify(func(key string) {
			mu.Lock()
			heard[i][key]++
			mu.Unlock()
		})
	}
	count := func(key string) int {
		mu.Lock()
		defer mu.Unlock()
		return min(heard[0][key]+heard[0][""], heard[1][key]+heard[1][""])
	}
	b := open()

	if v, _ := load(t, a, k); v != nil {
		t.Fatalf("Load = %q, want nil", v)
	}
	v1 := distributed.NewVersion()
	store(t, b, k, []byte("one"), 0, v1, 0)
	eventually(t, "Notify of a key created by another client", func() bool { return count(k) >= 1 })

	eventually(t, "the new key is loaded", func() bool {
		_, ver := load(t, a, k)
		return ver == v1
	})
	before := count(k)
	v2 := distributed.NewVersion()
	store(t, b, k, []byte("two"), v1, v2, 0)
	eventually(t, "Notify of a key changed by another client", func() bool { return count(k) > before })
	if _, ver := load(t, a, k); ver != v2 {
		t.Fatalf("after the notice, Load = version %d, want %d", ver, v2)
	}
}

// testCanceledContext checks that a write with a canceled ctx fails and
// does nothing.
func testCanceledContext(t *testing.T, open func() distributed.Store) {
	s := open()
	k := key(t, "k")
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Store(c, k, []byte("x"), 0, distributed.NewVersion(), 0); err == nil {
		t.Fatal("Store with a canceled ctx succeeded")
	}
	if v, ver := load(t, s, k); v != nil || ver != 0 {
		t.Fatalf("after a canceled Store, Load = %q, %d; want nil, 0", v, ver)
	}
}

// testScan checks distributed.Scanner, for a store that implements it
// (it is optional): every key under the prefix is listed, in batches, from
// any client, and nothing else is, even with a prefix holding characters
// that a pattern would read (* ? [ ] \ %).
func testScan(t *testing.T, open func() distributed.Store) {
	a := open()
	if _, ok := a.(distributed.Scanner); !ok {
		t.Logf("%T does not implement distributed.Scanner (optional): nothing to check", a)
		return
	}
	prefix := key(t, `p*?[x]\%_`)
	const n = 25
	want := map[string]bool{}
	for i := range n {
		k := fmt.Sprintf("%s%02d", prefix, i)
		want[k] = true
		store(t, a, k, []byte("v"), 0, distributed.NewVersion(), 0)
	}
	// Keys a pattern or a LIKE would wrongly take for the prefix's.
	for _, other := range []string{key(t, "pXX[x]\\%_00"), key(t, "p*?x]\\%_00"), key(t, "p*?[x]\\_x_00"), key(t, "p")} {
		store(t, a, other, []byte("other"), 0, distributed.NewVersion(), 0)
	}
	// An expired key is not listed (or, if listed, loads as missing).
	gone := prefix + "expired"
	store(t, a, gone, []byte("v"), 0, distributed.NewVersion(), 50*time.Millisecond)
	eventually(t, "the key expires", func() bool {
		_, ver := load(t, a, gone)
		return ver == 0
	})

	b := open().(distributed.Scanner)
	got := map[string]bool{}
	cursor, batches := "", 0
	for {
		keys, next, err := b.Scan(ctx(t), prefix, cursor, 4)
		if err != nil {
			t.Fatalf("Scan(cursor %q): %v", cursor, err)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, prefix) {
				t.Errorf("Scan listed %q, outside the prefix", k)
			}
			if k == gone {
				if _, ver := load(t, a, k); ver != 0 {
					t.Errorf("the expired key loads as version %d", ver)
				}
				continue
			}
			got[k] = true
		}
		batches++
		if next == "" {
			break
		}
		if batches > 10*n {
			t.Fatalf("Scan has not ended after %d batches (cursor %q)", batches, next)
		}
		cursor = next
	}
	for k := range want {
		if !got[k] {
			t.Errorf("Scan did not list %q", k)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Scan listed %d keys under the prefix, want %d", len(got), len(want))
	}
	if batches < 2 {
		t.Errorf("%d keys listed in %d batch of 4", n, batches)
	}
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := b.Scan(c, prefix, "", 4); err == nil {
		t.Error("Scan with a canceled ctx succeeded")
	}
}

func testClose(t *testing.T, open func() distributed.Store) {
	s := open()
	k := key(t, "k")
	v1 := distributed.NewVersion()
	store(t, s, k, []byte("one"), 0, v1, 0)
	load(t, s, k)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Every call after Close fails with an error wrapping net.ErrClosed.
	closedErr := func(call string, err error) {
		t.Helper()
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close = %v; want an error wrapping net.ErrClosed", call, err)
		}
	}
	_, _, err := s.Load(ctx(t), k)
	closedErr("Load", err)
	closedErr("Store", s.Store(ctx(t), k, []byte("two"), v1, distributed.NewVersion(), 0))
	closedErr("Touch", s.Touch(ctx(t), k, time.Minute))
	if sc, ok := s.(distributed.Scanner); ok {
		_, _, err := sc.Scan(ctx(t), k, "", 10)
		closedErr("Scan", err)
	}
	// A second Close returns nil and does nothing.
	if err := s.Close(); err != nil {
		t.Errorf("a second Close = %v; want nil", err)
	}
	_, _, err = s.Load(ctx(t), k)
	closedErr("Load after a second Close", err)
}
