package distributed_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/storetest"
	"github.com/msalcache/msalcache/internal/dcachetest"
)

// A tandem is the two layers of one test: a flushable memory store as the
// first, a memory store as the second, both hooked, and the check that the
// first takes only what the second committed. open returns a new tandem
// over them (a "process").
type tandem struct {
	flush         *flushable
	first, second *hooked
	check         *committed
}

func newTandem(t *testing.T) *tandem {
	td := &tandem{flush: newFlushable(), check: newCommitted()}
	td.first = newHooked(td.flush)
	td.second = newHooked(distributed.NewMemoryStore())
	td.check.watch(td.first, td.second)
	t.Cleanup(func() {
		td.check.check(t)
		td.first.Close()
		td.second.Close()
	})
	return td
}

func (td *tandem) open(t testing.TB) distributed.Store {
	s := distributed.Tiered(shared{td.first}, shared{td.second})
	t.Cleanup(func() { s.Close() })
	return s
}

// holds fails the test unless layer holds value at version v for key.
func holds(t *testing.T, what string, layer distributed.Store, key, value string, v distributed.Version) {
	t.Helper()
	got, ver, err := layer.Load(context.Background(), key)
	if err != nil || ver != v || string(got) != value {
		t.Fatalf("%s holds %q at %d (%v); want %q at %d", what, got, ver, err, value, v)
	}
}

// eventually polls cond for at most 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func mustStore(t *testing.T, s distributed.Store, key, value string, prev, next distributed.Version) {
	t.Helper()
	if err := s.Store(context.Background(), key, []byte(value), prev, next, 0); err != nil {
		t.Fatalf("Store(%s, %d -> %d): %v", key, prev, next, err)
	}
}

func mustLoad(t *testing.T, s distributed.Store, key string) (string, distributed.Version) {
	t.Helper()
	v, ver, err := s.Load(context.Background(), key)
	if err != nil {
		t.Fatalf("Load(%s): %v", key, err)
	}
	return string(v), ver
}

// TestTieredConformance runs the Store suite on the tandem of two memory
// stores; every client is a tandem of its own over the same layers.
func TestTieredConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() distributed.Store {
		td := newTandem(t)
		return func() distributed.Store { return td.open(t) }
	})
}

// tieredStores is dcachetest's factory: the stores of one test are tandems
// over the same two layers.
func tieredStores() dcachetest.NewStore {
	var mu sync.Mutex
	layers := map[testing.TB][2]distributed.Store{}
	return func(t testing.TB) distributed.Store {
		mu.Lock()
		defer mu.Unlock()
		l, ok := layers[t]
		if !ok {
			l = [2]distributed.Store{distributed.NewMemoryStore(), distributed.NewMemoryStore()}
			layers[t] = l
			t.Cleanup(func() { l[0].Close(); l[1].Close() })
		}
		s := distributed.Tiered(shared{l[0]}, shared{l[1]})
		t.Cleanup(func() { s.Close() })
		return s
	}
}

// TestTieredCache runs the Cache's behaviour tests (real MSAL Go clients)
// on the tandem.
func TestTieredCache(t *testing.T) { dcachetest.Run(t, tieredStores()) }

// plain is a Store without notices.
type plain struct{ store }

type store = distributed.Store

func TestTieredNotifier(t *testing.T) {
	m1, m2 := distributed.NewMemoryStore(), distributed.NewMemoryStore()
	s := distributed.Tiered(m1, m2)
	defer s.Close()
	if _, ok := s.(distributed.Notifier); !ok {
		t.Error("a tandem of two Notifiers is not a Notifier")
	}
	// A layer without notices: the Cache could not keep what it reads
	// from that layer coherent.
	s2 := distributed.Tiered(plain{distributed.NewMemoryStore()}, distributed.NewMemoryStore())
	defer s2.Close()
	if _, ok := s2.(distributed.Notifier); ok {
		t.Error("a tandem over a layer without notices claims to be a Notifier")
	}
}

// TestTieredFlush: the second layer holds the truth, tombstones included: a
// flush of the first costs one read of the second per key, then the first
// serves it again.
func TestTieredFlush(t *testing.T) {
	td := newTandem(t)
	s := td.open(t)
	const k = "k"
	v1, v2 := distributed.NewVersion(), distributed.NewVersion()
	mustStore(t, s, k, "tokens", 0, v1)
	mustStore(t, s, k, "tombstone", v1, v2)
	td.flush.Flush()
	var secondLoads atomic.Int64
	td.second.setBefore(func(_ context.Context, c call) error {
		if c.op == "load" {
			secondLoads.Add(1)
		}
		return nil
	})
	if v, ver := mustLoad(t, s, k); v != "tombstone" || ver != v2 {
		t.Fatalf("after a flush of the first layer: %q at %d, want the tombstone at %d", v, ver, v2)
	}
	holds(t, "the first layer, after the miss", td.flush, k, "tombstone", v2)
	// The process that copied it trusts the copy; another one checks it
	// once against the second layer, then trusts it.
	other := td.open(t)
	for _, c := range []struct {
		p    distributed.Store
		cost int64
	}{{s, 0}, {other, 1}, {other, 0}, {s, 0}} {
		before := secondLoads.Load()
		if v, ver := mustLoad(t, c.p, k); v != "tombstone" || ver != v2 {
			t.Fatalf("%q at %d, want the tombstone at %d", v, ver, v2)
		}
		if n := secondLoads.Load() - before; n != c.cost {
			t.Errorf("a load of a key the first layer holds again cost %d loads of the second, want %d", n, c.cost)
		}
	}
	// A missing key costs the second layer a read, and nothing is written.
	if v, ver := mustLoad(t, s, "missing"); v != "" || ver != 0 {
		t.Fatalf("missing key: %q at %d", v, ver)
	}
}

// TestTieredMissRacesWriter forces the interleavings of a Load that
// misses the first layer (and copies the second's value to it) with a
// writer of the same key: whatever the order, the first layer ends up with
// the writer's version, never the older copy.
func TestTieredMissRacesWriter(t *testing.T) {
	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("flushed-meanwhile=%v", flush), func(t *testing.T) {
			td := newTandem(t)
			reader, writer := td.open(t), td.open(t)
			const k = "k"
			v1, v2 := distributed.NewVersion(), distributed.NewVersion()
			mustStore(t, writer, k, "one", 0, v1)
			td.flush.Flush()
			// The reader's copy of v1 to the first layer waits ...
			g := newGate(func(c call) bool { return c.op == "store" && c.next == v1 })
			td.first.setBefore(g.before)
			type loaded struct {
				v   string
				ver distributed.Version
				err error
			}
			got := make(chan loaded, 1)
			go func() {
				v, ver, err := reader.Load(context.Background(), k)
				got <- loaded{string(v), ver, err}
			}()
			g.wait(t)
			// ... while the writer writes v2 to both layers ...
			mustStore(t, writer, k, "two", v1, v2)
			holds(t, "the first layer after the write", td.flush, k, "two", v2)
			if flush {
				// ... and the first layer is flushed, so that the
				// reader's copy (a create) is taken.
				td.flush.Flush()
			}
			close(g.open)
			r := <-got
			if r.err != nil {
				t.Fatal(r.err)
			}
			holds(t, "the first layer after both", td.flush, k, "two", v2)
			if r.ver != v2 {
				t.Logf("the racing Load returned %d (v1 %d, v2 %d)", r.ver, v1, v2)
			}
			if v, ver := mustLoad(t, reader, k); v != "two" || ver != v2 {
				t.Fatalf("the reader then loads %q at %d, want two at %d", v, ver, v2)
			}
		})
	}
}

// TestTieredWriterPausedBetweenLayers: writer A committed v2 on the second
// layer and has not yet written the first. B, a process that checked its
// copy of v1 before, hears of the commit and reads v2 (and repairs the
// copy); C, a process started meanwhile, checks the copy and reads v2 too.
// B then commits v3; A's late write to the first layer fails and leaves v3
// there.
func TestTieredWriterPausedBetweenLayers(t *testing.T) {
	td := newTandem(t)
	a, b := td.open(t), td.open(t)
	const k = "k"
	v1, v2 := distributed.NewVersion(), distributed.NewVersion()
	mustStore(t, a, k, "one", 0, v1)
	if v, ver := mustLoad(t, b, k); v != "one" || ver != v1 {
		t.Fatalf("B loads %q at %d; want one at %d", v, ver, v1)
	}
	g := newGate(func(c call) bool { return c.op == "store" && c.next == v2 })
	td.first.setBefore(g.before)
	done := make(chan error, 1)
	go func() { done <- a.Store(context.Background(), k, []byte("two"), v1, v2, 0) }()
	g.wait(t)
	holds(t, "the first layer before A's write reached it", td.flush, k, "one", v1)
	for name, p := range map[string]distributed.Store{"B": b, "C (started now)": td.open(t)} {
		if v, ver := mustLoad(t, p, k); v != "two" || ver != v2 {
			t.Fatalf("%s loads %q at %d before A's write reached the first layer; want two at %d", name, v, ver, v2)
		}
	}
	increment(t, b, k, 1) // "two+" at v3
	v3 := versionOf(t, td.second, k)
	holds(t, "the first layer after B's write", td.flush, k, "two+", v3)
	close(g.open)
	if err := <-done; err != nil {
		t.Fatalf("A's Store: %v", err)
	}
	holds(t, "the first layer after A's late write", td.flush, k, "two+", v3)
	holds(t, "the second layer", td.second, k, "two+", v3)
}

// TestTieredStaleCopy: a copy in the first layer that the second replaced
// (a process ended between its two writes) or expired is never served: a
// process that checked it before hears of the change, a process started
// after checks it before it trusts it. Each repairs the copy.
func TestTieredStaleCopy(t *testing.T) {
	ctx := context.Background()
	t.Run("replaced", func(t *testing.T) {
		td := newTandem(t)
		s := td.open(t)
		const k = "k"
		v1, v2 := distributed.NewVersion(), distributed.NewVersion()
		mustStore(t, s, k, "one", 0, v1)
		if v, _ := mustLoad(t, s, k); v != "one" {
			t.Fatalf("%q, want one", v)
		}
		mustStore(t, td.second, k, "two", v1, v2) // the other process's write to first never came
		holds(t, "the first layer", td.flush, k, "one", v1)
		for name, p := range map[string]distributed.Store{"the running process": s, "a process started after": td.open(t)} {
			if v, ver := mustLoad(t, p, k); v != "two" || ver != v2 {
				t.Fatalf("%s loads %q at %d; want two at %d, not the stale copy", name, v, ver, v2)
			}
		}
		holds(t, "the first layer, repaired", td.flush, k, "two", v2)
		increment(t, s, k, 1)
		holds(t, "the second layer", td.second, k, "two+", versionOf(t, td.second, k))
		holds(t, "the first layer", td.flush, k, "two+", versionOf(t, td.second, k))
	})
	t.Run("expired", func(t *testing.T) {
		td := newTandem(t)
		s := td.open(t)
		const k = "k"
		v1 := distributed.NewVersion()
		if err := s.Store(ctx, k, []byte("one"), 0, v1, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := td.first.Touch(ctx, k, time.Hour); err != nil { // the copy outlives the truth
			t.Fatal(err)
		}
		eventually(t, "the second layer expires the key", func() bool { return versionOf(t, td.second, k) == 0 })
		for name, p := range map[string]distributed.Store{"the writer": s, "a process started after": td.open(t)} {
			if _, ver := mustLoad(t, p, k); ver != 0 {
				t.Fatalf("%s loads version %d; the key expired", name, ver)
			}
		}
		increment(t, s, k, 1)
		holds(t, "the first layer", td.flush, k, "+", versionOf(t, td.second, k))
	})
}

// TestTieredRestoredFromOlderFiles: the first layer comes back from files
// older than the second layer (a Redis with persistence that lost its last
// writes, or that was down while others wrote), and the writer that wrote
// meanwhile ended before it could repair its copies. No process serves the
// older copies: a running one checks every key again after the layer's ""
// (and the keys the second layer told of), one started after checks each
// key before it trusts it.
func TestTieredRestoredFromOlderFiles(t *testing.T) {
	for _, during := range []bool{false, true} {
		t.Run(fmt.Sprintf("written-during-the-outage=%v", during), func(t *testing.T) {
			td := newTandem(t)
			writer := distributed.Tiered(shared{td.first}, shared{td.second})
			defer writer.Close()
			reader := td.open(t)
			const k = "k"
			v1, v2 := distributed.NewVersion(), distributed.NewVersion()
			mustStore(t, writer, k, "one", 0, v1)
			// The files the first layer comes back from.
			older := distributed.NewMemoryStore()
			mustStore(t, older, k, "one", 0, v1)
			if during {
				td.first.setBefore(func(context.Context, call) error { return errDown })
			}
			mustStore(t, writer, k, "two", v1, v2)
			if v, ver := mustLoad(t, reader, k); v != "two" || ver != v2 {
				t.Fatalf("the reader loads %q at %d; want two at %d", v, ver, v2)
			}
			writer.Close() // it ends before it repairs the first layer
			td.flush.Restore(older)
			td.first.setBefore(nil)
			holds(t, "the first layer, restored", td.flush, k, "one", v1)
			for name, p := range map[string]distributed.Store{"the running reader": reader, "a process started after": td.open(t)} {
				if v, ver := mustLoad(t, p, k); v != "two" || ver != v2 {
					t.Fatalf("%s loads %q at %d; want two at %d, not the older copy", name, v, ver, v2)
				}
			}
			holds(t, "the first layer, repaired", td.flush, k, "two", v2)
		})
	}
}

func versionOf(t *testing.T, s distributed.Store, k string) distributed.Version {
	t.Helper()
	_, v, err := s.Load(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// increment appends "+" to key's value as the Cache writes: load, store on
// that base, retry on conflict. It fails the test if it takes more than
// attempts.
func increment(t *testing.T, s distributed.Store, key string, attempts int) {
	t.Helper()
	ctx := context.Background()
	for i := range attempts {
		v, ver, err := s.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Store(ctx, key, append(v, '+'), ver, distributed.NewVersion(), 0)
		if err == nil {
			return
		}
		if !errors.Is(err, distributed.ErrConflict) {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v", i+1, err)
	}
	t.Fatalf("a write based on a stale copy still conflicts after %d attempts", attempts)
}

// TestTieredFirstWriteFails: a write the second layer took and the first
// did not leaves no stale copy served by this process, and the copy is
// repaired in the background once the first layer answers.
func TestTieredFirstWriteFails(t *testing.T) {
	td := newTandem(t)
	s, other := td.open(t), td.open(t)
	const k = "k"
	v1, v2 := distributed.NewVersion(), distributed.NewVersion()
	mustStore(t, s, k, "one", 0, v1)
	var fail atomic.Bool
	fail.Store(true)
	td.first.setBefore(func(_ context.Context, c call) error {
		if fail.Load() && c.op != "load" {
			return errDown
		}
		return nil
	})
	mustStore(t, s, k, "two", v1, v2)
	holds(t, "the first layer (its write failed)", td.flush, k, "one", v1)
	if v, ver := mustLoad(t, s, k); v != "two" || ver != v2 {
		t.Fatalf("the writer loads %q at %d, want two at %d", v, ver, v2)
	}
	fail.Store(false)
	eventually(t, "the first layer is repaired", func() bool { return versionOf(t, td.flush, k) == v2 })
	if v, ver := mustLoad(t, other, k); v != "two" || ver != v2 {
		t.Fatalf("another process loads %q at %d, want two at %d", v, ver, v2)
	}
}

// TestTieredFirstDown: with the first layer failing, or not answering, every
// call is served by the second; when it answers again (with the data of
// before, as a Redis with persistence), the keys written meanwhile are
// repaired.
func TestTieredFirstDown(t *testing.T) {
	for _, hang := range []bool{false, true} {
		t.Run(fmt.Sprintf("hang=%v", hang), func(t *testing.T) {
			td := newTandem(t)
			s := td.open(t)
			const n = 20
			vers := make([]distributed.Version, n)
			for i := range vers {
				vers[i] = distributed.NewVersion()
				mustStore(t, s, fmt.Sprint("k", i), "old", 0, vers[i])
			}
			var down atomic.Bool
			down.Store(true)
			td.first.setBefore(func(ctx context.Context, _ call) error {
				if !down.Load() {
					return nil
				}
				if hang {
					<-ctx.Done()
					return ctx.Err()
				}
				return errDown
			})
			for i := range vers {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				k, next := fmt.Sprint("k", i), distributed.NewVersion()
				if err := s.Store(ctx, k, []byte("new"), vers[i], next, 0); err != nil {
					t.Fatalf("Store with the first layer down: %v", err)
				}
				vers[i] = next
				v, ver, err := s.Load(ctx, k)
				cancel()
				if err != nil || string(v) != "new" || ver != next {
					t.Fatalf("Load with the first layer down: %q at %d (%v), want new at %d", v, ver, err, next)
				}
			}
			down.Store(false)
			for i, v := range vers {
				eventually(t, "the first layer is repaired", func() bool { return versionOf(t, td.flush, fmt.Sprint("k", i)) == v })
			}
		})
	}
}

// TestTieredSecondDown: with the second layer failing, what the first holds
// is still loaded; writes fail and reach neither layer. A write the second
// took but reported failed (a lost reply) leaves no stale copy.
func TestTieredSecondDown(t *testing.T) {
	ctx := context.Background()
	td := newTandem(t)
	s := td.open(t)
	v1 := distributed.NewVersion()
	mustStore(t, s, "warm", "one", 0, v1)
	var down atomic.Bool
	down.Store(true)
	td.second.setBefore(func(context.Context, call) error {
		if down.Load() {
			return errDown
		}
		return nil
	})
	if v, ver := mustLoad(t, s, "warm"); v != "one" || ver != v1 {
		t.Fatalf("with the second layer down, a key the first holds: %q at %d", v, ver)
	}
	if err := s.Store(ctx, "warm", []byte("two"), v1, distributed.NewVersion(), 0); err == nil {
		t.Error("a Store with the second layer down succeeded")
	}
	if _, _, err := s.Load(ctx, "cold"); err == nil {
		t.Error("with the second layer down, a key the first does not hold loaded without error")
	}
	holds(t, "the first layer", td.flush, "warm", "one", v1)
	// A touch that only first took is owed to second: paid when it is back.
	var touches atomic.Int64
	td.second.setBefore(func(_ context.Context, c call) error {
		if down.Load() {
			return errDown
		}
		if c.op == "touch" {
			touches.Add(1)
		}
		return nil
	})
	if err := s.Touch(ctx, "warm", time.Hour); err != nil {
		t.Errorf("a Touch that first took, with the second layer down: %v", err)
	}
	if err := s.Touch(ctx, "cold", time.Hour); err != nil {
		t.Errorf("a Touch of a key first does not hold, with the second layer down: %v", err)
	}
	down.Store(false)
	eventually(t, "the touches owed to the second layer are paid", func() bool { return touches.Load() >= 2 })

	v2 := distributed.NewVersion()
	td.check.lie.Store(true)
	if err := s.Store(ctx, "warm", []byte("two"), v1, v2, 0); err == nil {
		t.Fatal("the lost reply was not reported")
	}
	if v, ver := mustLoad(t, s, "warm"); v != "two" || ver != v2 {
		t.Fatalf("after a write whose reply was lost, Load = %q at %d, want two at %d", v, ver, v2)
	}
	eventually(t, "the first layer is repaired", func() bool { return versionOf(t, td.flush, "warm") == v2 })
}

// TestTieredChaos: writers on two tandems increment counters while the
// first layer is flushed and fails now and then: no increment is lost,
// nothing reaches the first layer that the second did not commit, and once
// the faults stop the first layer holds what the second holds.
func TestTieredChaos(t *testing.T) {
	td := newTandem(t)
	tandems := []distributed.Store{td.open(t), td.open(t)}
	const keys, writers, increments = 4, 8, 150
	var failing atomic.Bool
	td.first.setBefore(func(context.Context, call) error {
		if failing.Load() && rand.IntN(3) == 0 {
			return errDown
		}
		return nil
	})
	stop := make(chan struct{})
	var chaos sync.WaitGroup
	chaos.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(rand.IntN(5)) * time.Millisecond):
			}
			switch rand.IntN(3) {
			case 0:
				td.flush.Flush()
			case 1:
				failing.Store(!failing.Load())
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	for w := range writers {
		s := tandems[w%len(tandems)]
		wg.Go(func() {
			for i := range increments {
				k := fmt.Sprint("counter", (w+i)%keys)
				for {
					val, ver, err := s.Load(ctx, k)
					if err != nil {
						t.Error(err)
						return
					}
					var n uint64
					if len(val) == 8 {
						n = binary.BigEndian.Uint64(val)
					}
					err = s.Store(ctx, k, binary.BigEndian.AppendUint64(nil, n+1), ver, distributed.NewVersion(), 0)
					if err == nil {
						break
					}
					if !errors.Is(err, distributed.ErrConflict) {
						t.Error(err)
						return
					}
					conflicts.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	chaos.Wait()
	failing.Store(false)
	var total uint64
	for k := range keys {
		val, ver := mustLoad(t, td.second, fmt.Sprint("counter", k))
		total += binary.BigEndian.Uint64([]byte(val))
		eventually(t, "the first layer agrees with the second", func() bool {
			// A copy the faults left stale is repaired by the next
			// write or read through a tandem that knows of it.
			for _, s := range tandems {
				s.Load(ctx, fmt.Sprint("counter", k))
			}
			fv := versionOf(t, td.flush, fmt.Sprint("counter", k))
			return fv == ver || fv == 0
		})
	}
	if total != writers*increments {
		t.Errorf("%d increments survived of %d", total, writers*increments)
	}
	t.Logf("%d increments, %d conflicts retried", writers*increments, conflicts.Load())
}

// TestTieredClose: Close closes both layers; a second Close returns nil;
// other calls after Close fail with an error wrapping ErrClosed and
// net.ErrClosed.
func TestTieredClose(t *testing.T) {
	ctx := context.Background()
	m1, m2 := distributed.NewMemoryStore(), distributed.NewMemoryStore()
	s := distributed.Tiered(m1, m2)
	mustStore(t, s, "k", "one", 0, distributed.NewVersion())
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, _, lerr := s.Load(ctx, "k")
	serr := s.Store(ctx, "k", nil, 0, distributed.NewVersion(), 0)
	terr := s.Touch(ctx, "k", time.Hour)
	for _, err := range []error{lerr, serr, terr} {
		if !errors.Is(err, net.ErrClosed) || !errors.Is(err, distributed.ErrClosed) {
			t.Errorf("a call after Close: %v, want net.ErrClosed and distributed.ErrClosed", err)
		}
	}
	for _, l := range []distributed.Store{m1, m2} {
		if _, _, err := l.Load(ctx, "k"); err == nil {
			t.Error("a layer is still open after Close")
		}
	}
}

// TestTieredCheckCost: what the trust rule costs the second layer. A key
// changed anywhere costs each process that loads it again one read of the
// second layer (the writer too: its own change is told like any other),
// then none until it changes again.
func TestTieredCheckCost(t *testing.T) {
	td := newTandem(t)
	replicas := []distributed.Store{td.open(t), td.open(t), td.open(t)}
	var secondLoads atomic.Int64
	td.second.setBefore(func(_ context.Context, c call) error {
		if c.op == "load" {
			secondLoads.Add(1)
		}
		return nil
	})
	const k = "k"
	loads := func(want int64) {
		t.Helper()
		for i, p := range replicas {
			before := secondLoads.Load()
			mustLoad(t, p, k)
			if n := secondLoads.Load() - before; n != want {
				t.Errorf("replica %d: a load cost %d reads of the second layer, want %d", i, n, want)
			}
		}
	}
	v1 := distributed.NewVersion()
	mustStore(t, replicas[0], k, "one", 0, v1)
	loads(1) // each process checks the key once
	loads(0)
	mustStore(t, replicas[1], k, "two", v1, distributed.NewVersion())
	loads(1) // a change: one read per process that loads it
	loads(0)
}

// TestTieredTouchOrder: Touch gives second its new expiry before first, so
// that the copy in first never expires while second still holds the key. In
// the other order a Load between the two expiries would copy the key again
// for copyTTL, and serve that copy after second expired the key, as long as
// second does not tell of expiries (pgstore tells at its cleanup only).
func TestTieredTouchOrder(t *testing.T) {
	td := newTandem(t)
	s := td.open(t)
	const k = "k"
	mustStore(t, s, k, "one", 0, distributed.NewVersion())
	var secondTouched, firstTouched atomic.Int32
	var wrongOrder atomic.Bool
	td.second.setAfter(func(c call, err error) error {
		if c.op == "touch" {
			secondTouched.Add(1)
		}
		return err
	})
	td.first.setBefore(func(_ context.Context, c call) error {
		if c.op == "touch" {
			if secondTouched.Load() <= firstTouched.Load() {
				wrongOrder.Store(true)
			}
			firstTouched.Add(1)
		}
		return nil
	})
	for range 3 {
		if err := s.Touch(context.Background(), k, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if firstTouched.Load() != 3 || secondTouched.Load() != 3 {
		t.Fatalf("3 Touches reached first %d times, second %d times; want 3 and 3", firstTouched.Load(), secondTouched.Load())
	}
	if wrongOrder.Load() {
		t.Fatal("Touch touched first before second had taken the touch: first's copy may expire before second's key")
	}
}
