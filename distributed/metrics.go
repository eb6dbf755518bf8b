package distributed

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// WithMeterProvider publishes the Cache's metrics through mp (OpenTelemetry's
// metric API; the application picks the SDK and the exporter). nil, the
// default, publishes none. The counters and gauges are observed from the
// Cache's own counters (see Stats) when the reader collects, so the calls
// that MSAL makes cost nothing more; only real store calls are timed. The
// instruments are listed in the package documentation.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.meter = mp })
}

// meterName is the instrumentation scope of the Cache's instruments.
const meterName = "github.com/msalcache/msalcache/distributed"

// Bounds of the store latency histogram, in seconds: from a Redis answer on
// the same host (tens of microseconds) to the default timeout (2 s) and
// beyond.
var latencyBounds = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5,
}

// Attribute sets, made once: an observation or a measurement with one of
// them allocates nothing.
var (
	layerMemory = metric.WithAttributeSet(attribute.NewSet(attribute.String("layer", "memory")))
	layerL1     = metric.WithAttributeSet(attribute.NewSet(attribute.String("layer", "l1")))
	layerStore  = metric.WithAttributeSet(attribute.NewSet(attribute.String("layer", "store")))
	opLoad      = metric.WithAttributeSet(attribute.NewSet(attribute.String("operation", "load")))
	opStore     = metric.WithAttributeSet(attribute.NewSet(attribute.String("operation", "store")))
	opTouch     = metric.WithAttributeSet(attribute.NewSet(attribute.String("operation", "touch")))
)

// metrics is what a Cache registered with a MeterProvider. Its callback
// runs on the reader's goroutine and reads only the Cache's atomic counters
// and, briefly, its mutex (as Stats does).
type metrics struct {
	reg metric.Registration
}

// newMetrics registers the Cache's instruments with mp and, when the store
// latency histogram can be made, returns store wrapped to time its calls.
func newMetrics(c *Cache, mp metric.MeterProvider, store Store) (*metrics, Store, error) {
	m := mp.Meter(meterName)
	var errs []error
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		i, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return i
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableUpDownCounter {
		i, err := m.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return i
	}
	hits := counter("msalcache.distributed.hits", "{hit}", "Partitions served, by the layer that held them: MSAL's memory, the in-process layer (l1), or the store.")
	misses := counter("msalcache.distributed.misses", "{miss}", "Loads that found no partition (absent, removed, or not decryptable).")
	writes := counter("msalcache.distributed.writes", "{write}", "Writes the store took, removals included.")
	conflicts := counter("msalcache.distributed.conflicts", "{conflict}", "Writes refused by the store's compare-and-set, retried after a merge.")
	dropped := counter("msalcache.distributed.dropped_writes", "{write}", "Writes dropped because their partition was removed after they began.")
	rejected := counter("msalcache.distributed.rejected", "{partition}", "Stored partitions that did not decrypt or parse.")
	withheld := counter("msalcache.distributed.withheld_writes", "{write}", "Writes not made because the stored partition is sealed with a key this process lacks, or in a newer format: left for the replicas that can read it.")
	invalidations := counter("msalcache.distributed.invalidations", "{invalidation}", "Notices from the store that a partition changed elsewhere.")
	errorsC := counter("msalcache.distributed.store.errors", "{error}", "Store calls that failed.")
	emptied := counter("msalcache.distributed.store.emptied", "{event}", "Times the store was found to have lost its data (a restart without persistence, a flush).")
	pending := gauge("msalcache.distributed.pending_writes", "{write}", "Writes kept in this process for the store's return.")
	l1Bytes := gauge("msalcache.distributed.l1.size", "By", "Bytes held by the in-process layer.")
	down := gauge("msalcache.distributed.store.down", "{outage}", "Whether the store is out: 1 from a failed call until one succeeds, else 0.")
	latency, err := m.Float64Histogram("msalcache.distributed.store.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of the store calls, by operation (load, store, touch)."),
		metric.WithExplicitBucketBoundaries(latencyBounds...))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		o.ObserveInt64(hits, s.MemoryHits, layerMemory)
		o.ObserveInt64(hits, s.L1Hits, layerL1)
		o.ObserveInt64(hits, s.StoreHits, layerStore)
		o.ObserveInt64(misses, s.Misses)
		o.ObserveInt64(writes, s.Writes)
		o.ObserveInt64(conflicts, s.Conflicts)
		o.ObserveInt64(dropped, s.Dropped)
		o.ObserveInt64(rejected, s.Rejected)
		o.ObserveInt64(withheld, s.Withheld)
		o.ObserveInt64(invalidations, s.Invalidations)
		o.ObserveInt64(errorsC, s.Errors)
		o.ObserveInt64(emptied, s.Emptied)
		o.ObserveInt64(pending, int64(s.Pending))
		o.ObserveInt64(l1Bytes, s.Bytes)
		var d int64
		if s.StoreDown {
			d = 1
		}
		o.ObserveInt64(down, d)
		return nil
	}, hits, misses, writes, conflicts, dropped, rejected, withheld, invalidations, errorsC, emptied, pending, l1Bytes, down)
	if err != nil {
		return nil, nil, err
	}
	return &metrics{reg: reg}, timedStore{s: store, latency: latency}, nil
}

// close unregisters the callback: a closed Cache is no longer reported.
func (m *metrics) close() error {
	if m == nil {
		return nil
	}
	return m.reg.Unregister()
}

// timedStore records the duration of each call to the store it wraps. It
// is used only with a MeterProvider, and only for real store calls: what
// MSAL's memory or the in-process layer serve never reaches it.
type timedStore struct {
	s       Store
	latency metric.Float64Histogram
}

func (t timedStore) Load(ctx context.Context, key string) ([]byte, Version, error) {
	start := time.Now()
	value, v, err := t.s.Load(ctx, key)
	t.latency.Record(ctx, time.Since(start).Seconds(), opLoad)
	return value, v, err
}

func (t timedStore) Store(ctx context.Context, key string, value []byte, prev, next Version, ttl time.Duration) error {
	start := time.Now()
	err := t.s.Store(ctx, key, value, prev, next, ttl)
	t.latency.Record(ctx, time.Since(start).Seconds(), opStore)
	return err
}

func (t timedStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	start := time.Now()
	err := t.s.Touch(ctx, key, ttl)
	t.latency.Record(ctx, time.Since(start).Seconds(), opTouch)
	return err
}

func (t timedStore) Close() error { return t.s.Close() }
