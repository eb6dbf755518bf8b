package distributed

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// flaky wraps a store: while down, every call fails as a client of a killed
// Redis does; with sneak set, the next Store is preceded by another
// writer's write of the same key (so the compare-and-set really refuses it).
// Going down or back, it tells its listener "", as a Redis client does when
// its connection is lost or re-established.
type flaky struct {
	inner  Store
	mu     sync.Mutex
	down   bool
	sneak  bool
	notify func(string)
}

var errFlakyDown = errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")

func (f *flaky) set(down bool) {
	f.mu.Lock()
	f.down = down
	notify := f.notify
	f.mu.Unlock()
	if notify != nil {
		notify("")
	}
}

func (f *flaky) isDown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

func (f *flaky) Load(ctx context.Context, key string) ([]byte, Version, error) {
	if f.isDown() {
		return nil, 0, errFlakyDown
	}
	return f.inner.Load(ctx, key)
}

func (f *flaky) Store(ctx context.Context, key string, value []byte, prev, next Version, ttl time.Duration) error {
	f.mu.Lock()
	down, sneak := f.down, f.sneak
	f.sneak = false
	f.mu.Unlock()
	if down {
		return errFlakyDown
	}
	if sneak {
		if err := f.inner.Store(ctx, key, value, prev, NewVersion(), ttl); err != nil {
			return err
		}
	}
	return f.inner.Store(ctx, key, value, prev, next, ttl)
}

func (f *flaky) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if f.isDown() {
		return errFlakyDown
	}
	return f.inner.Touch(ctx, key, ttl)
}

func (f *flaky) Close() error { return f.inner.Close() }
func (f *flaky) Notify(n func(string)) {
	f.mu.Lock()
	f.notify = n
	f.mu.Unlock()
	f.inner.(Notifier).Notify(n)
}

// reading collects the metrics of a ManualReader.
type reading struct {
	t  *testing.T
	rm metricdata.ResourceMetrics
}

func read(t *testing.T, r *sdkmetric.ManualReader) reading {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return reading{t: t, rm: rm}
}

func (r reading) find(name string) (metricdata.Metrics, bool) {
	for _, sm := range r.rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// int is the value of an integer metric's point with attribute kv (or its
// only point); a histogram gives its count.
func (r reading) int(name string, kv ...attribute.KeyValue) int64 {
	r.t.Helper()
	m, ok := r.find(name)
	if !ok {
		r.t.Fatalf("no metric %s", name)
	}
	want := attribute.NewSet(kv...)
	match := func(s attribute.Set) bool { return len(kv) == 0 || s.Equals(&want) }
	var n int64
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				n += p.Value
			}
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			if match(p.Attributes) {
				n += int64(p.Count)
			}
		}
	default:
		r.t.Fatalf("metric %s: unexpected data %T", name, m.Data)
	}
	return n
}

// TestMetrics reads every instrument through the SDK's manual reader and
// checks that each one moves when it should.
func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	inner := NewMemoryStore()
	s := &flaky{inner: inner}
	c := newCache(t, s, WithMeterProvider(mp), WithTimeout(time.Second))
	ctx := context.Background()
	hits := func(r reading, layer string) int64 {
		return r.int("msalcache.distributed.hits", attribute.String("layer", layer))
	}
	op := func(r reading, name string) int64 {
		return r.int("msalcache.distributed.store.duration", attribute.String("operation", name))
	}

	r0 := read(t, reader)
	for _, name := range []string{
		"msalcache.distributed.misses", "msalcache.distributed.writes", "msalcache.distributed.conflicts",
		"msalcache.distributed.dropped_writes", "msalcache.distributed.rejected", "msalcache.distributed.withheld_writes", "msalcache.distributed.invalidations",
		"msalcache.distributed.store.errors", "msalcache.distributed.store.emptied", "msalcache.distributed.pending_writes",
		"msalcache.distributed.l1.size", "msalcache.distributed.store.down",
	} {
		if n := r0.int(name); n != 0 {
			t.Errorf("%s = %d on a new Cache, want 0", name, n)
		}
	}

	replace := func(m *manager) {
		t.Helper()
		if err := c.Replace(ctx, m, cache.ReplaceHints{PartitionKey: "uid1.tid"}); err != nil {
			t.Fatal(err)
		}
	}
	// A sign-in: a load that finds nothing, then a write.
	m := &manager{}
	write(t, c, m, "uid1.tid", "a")
	r1 := read(t, reader)
	if r1.int("msalcache.distributed.misses") != 1 || r1.int("msalcache.distributed.writes") != 1 {
		t.Errorf("after a sign-in: misses %d, writes %d; want 1, 1", r1.int("msalcache.distributed.misses"), r1.int("msalcache.distributed.writes"))
	}
	if op(r1, "load") < 2 || op(r1, "store") < 1 { // the store's marker too (see checkMarker)
		t.Errorf("after a sign-in: %d loads and %d stores timed, want at least 2 and 1", op(r1, "load"), op(r1, "store"))
	}
	replace(m) // the next call after a write reads the partition back once
	deadline := time.Now().Add(5 * time.Second)
	for v, _, _ := inner.Load(ctx, c.markerKey()); v == nil; v, _, _ = inner.Load(ctx, c.markerKey()) {
		if time.Now().After(deadline) { // the store's marker, written in the background at first use
			t.Fatal("the store's marker was not written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r1 = read(t, reader)

	// A silent call: MSAL's memory holds the partition; no store call.

	replace(m)
	r2 := read(t, reader)
	if d := hits(r2, "memory") - hits(r1, "memory"); d != 1 {
		t.Errorf("a silent call moved the memory hits by %d, want 1", d)
	}
	if op(r2, "load") != op(r1, "load") {
		t.Errorf("a silent call was timed as a store load: %d -> %d; touch %d -> %d", op(r1, "load"), op(r2, "load"), op(r1, "touch"), op(r2, "touch"))
	}

	// Another client: the store serves it (and the load renews the
	// expiry), then a third finds it in the in-process layer.
	replace(&manager{})
	replace(&manager{})
	r3 := read(t, reader)
	if d := hits(r3, "store") - hits(r2, "store"); d != 1 {
		t.Errorf("a load from the store moved the store hits by %d, want 1", d)
	}
	if d := hits(r3, "l1"); d != 1 {
		t.Errorf("l1 hits %d, want 1", d)
	}
	if op(r3, "touch") < 1 {
		t.Error("the expiry renewal was not timed")
	}
	if r3.int("msalcache.distributed.l1.size") <= 0 {
		t.Error("l1.size is 0 while the layer holds a partition")
	}

	// An invalidation: another process writes the partition.
	other := newCache(t, inner)
	write(t, other, &manager{}, "uid1.tid", "b")
	deadline = time.Now().Add(5 * time.Second)
	for read(t, reader).int("msalcache.distributed.invalidations") == r3.int("msalcache.distributed.invalidations") {
		if time.Now().After(deadline) {
			t.Fatal("another process's write did not move the invalidations")
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A conflict: another writer's write lands between our load and store.
	s.mu.Lock()
	s.sneak = true
	s.mu.Unlock()
	write(t, c, m, "uid1.tid", "c")
	r4 := read(t, reader)
	if r4.int("msalcache.distributed.conflicts") != 1 {
		t.Errorf("conflicts %d after a write refused once, want 1", r4.int("msalcache.distributed.conflicts"))
	}

	// An outage: the store is down while a write is made.
	s.set(true)
	write(t, c, m, "uid2.tid", "d")
	r5 := read(t, reader)
	if r5.int("msalcache.distributed.store.down") != 1 {
		t.Error("store.down is not 1 during an outage")
	}
	if r5.int("msalcache.distributed.store.errors") <= r4.int("msalcache.distributed.store.errors") {
		t.Error("an outage did not move store.errors")
	}
	if r5.int("msalcache.distributed.pending_writes") != 1 {
		t.Errorf("pending_writes %d during an outage with one write, want 1", r5.int("msalcache.distributed.pending_writes"))
	}
	s.set(false)
	waitWrittenBack(t, c)
	deadline = time.Now().Add(5 * time.Second)
	for r := read(t, reader); r.int("msalcache.distributed.store.down") != 0 || r.int("msalcache.distributed.pending_writes") != 0; r = read(t, reader) {
		if time.Now().After(deadline) {
			t.Fatal("store.down or pending_writes did not go back to 0 after the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A closed Cache is no longer reported.
	c.Close()
	if _, ok := read(t, reader).find("msalcache.distributed.hits"); ok {
		r := read(t, reader)
		if hits(r, "memory") != 0 {
			t.Error("a closed Cache is still observed")
		}
	}
}

// A Cache without a MeterProvider, or with one, serves a silent call
// without allocating more.
func TestMetricsHotPathAllocations(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	ctx := context.Background()
	allocs := func(opts ...Option) float64 {
		c := newCache(t, NewMemoryStore(), opts...)
		m := &manager{}
		write(t, c, m, "uid1.tid", "a")
		return testing.AllocsPerRun(200, func() {
			c.Replace(ctx, m, cache.ReplaceHints{PartitionKey: "uid1.tid"})
		})
	}
	without, with := allocs(), allocs(WithMeterProvider(mp))
	if with > without {
		t.Errorf("a silent call allocates %v times with a MeterProvider, %v without", with, without)
	}
}
