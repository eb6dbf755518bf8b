package distributed_test

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/dcachetest"
)

// naive is the per-partition plugin as MSAL Node's DistributedCachePlugin
// (and the MSAL documentation's sketch) would be written in Go: Replace
// hands MSAL the partition's blob, Export stores all of MSAL's memory under
// the partition key. It is the comparison for the benchmarks only.
type naive struct {
	mu    sync.Mutex
	blobs map[string][]byte
}

func newNaive() *naive { return &naive{blobs: map[string][]byte{}} }

func (n *naive) Replace(ctx context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	n.mu.Lock()
	b, ok := n.blobs[h.PartitionKey]
	n.mu.Unlock()
	if !ok {
		b = []byte("{}")
	}
	return u.Unmarshal(b)
}

func (n *naive) Export(ctx context.Context, m cache.Marshaler, h cache.ExportHints) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.blobs[h.PartitionKey] = b
	n.mu.Unlock()
	return nil
}

// BenchmarkSilentHit: AcquireTokenSilent of a cached token for one user,
// with no plugin (MSAL's own memory), the Cache on the memory store (and
// with a MeterProvider: its metrics must cost the hot path nothing), the
// Cache without its in-process layer (every call asks the store), and the
// naive plugin.
func BenchmarkSilentHit(b *testing.B) {
	for _, tc := range []struct {
		name  string
		cache func(b *testing.B) cache.ExportReplace
	}{
		{"no-plugin", func(*testing.B) cache.ExportReplace { return nil }},
		{"memory-store", func(b *testing.B) cache.ExportReplace {
			return dcachetest.NewCache(b, distributed.NewMemoryStore())
		}},
		{"memory-store-metrics", func(b *testing.B) cache.ExportReplace {
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			b.Cleanup(func() { mp.Shutdown(context.Background()) })
			return dcachetest.NewCache(b, distributed.NewMemoryStore(), distributed.WithMeterProvider(mp))
		}},
		{"memory-store-no-L1", func(b *testing.B) cache.ExportReplace {
			return dcachetest.NewCache(b, distributed.NewMemoryStore(), distributed.WithL1(0))
		}},
		{"naive", func(*testing.B) cache.ExportReplace { return newNaive() }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			idp := dcachetest.IDP(b)
			ctx := dcachetest.Ctx(b)
			c := tc.cache(b)
			app := dcachetest.WebApp(b, idp, c)
			a := dcachetest.SignIn(b, ctx, idp, app, dcachetest.User(0), dcachetest.UserScope)
			before := idp.Requests()
			b.ReportAllocs()
			for b.Loop() {
				if err := dcachetest.Silent(ctx, app, a); err != nil {
					b.Fatal(err)
				}
			}
			if d := idp.Requests().Sub(before); d.Token != 0 {
				b.Fatalf("%d token requests during silent hits", d.Token)
			}
			if dc, ok := c.(*distributed.Cache); ok {
				st := dc.Stats()
				b.ReportMetric(float64(st.StoreReads)/float64(b.N), "store-reads/op")
				b.ReportMetric(float64(st.Unmarshals)/float64(b.N), "unmarshals/op")
			}
		})
	}
}

// BenchmarkSharedClient measures the alternatives for many goroutines and
// users: one shared client with the naive plugin, one shared client with
// the Cache (its working set), and a partition-affine pool of clients on
// one Cache. It reports the share of failed silent calls and the calls per
// second.
func BenchmarkSharedClient(b *testing.B) {
	const users, goroutines, calls, poolSize = 200, 32, 40, 8
	for _, tc := range []struct {
		name string
		pool int
		c    func(b *testing.B) cache.ExportReplace
	}{
		{"naive", 1, func(*testing.B) cache.ExportReplace { return newNaive() }},
		{"working-set", 1, func(b *testing.B) cache.ExportReplace {
			return dcachetest.NewCache(b, distributed.NewMemoryStore())
		}},
		{"pool", poolSize, func(b *testing.B) cache.ExportReplace {
			return dcachetest.NewCache(b, distributed.NewMemoryStore())
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			idp := dcachetest.IDP(b)
			ctx := dcachetest.Ctx(b)
			c := tc.c(b)
			apps := make([]confidential.Client, tc.pool)
			for i := range apps {
				apps[i] = dcachetest.WebApp(b, idp, c)
			}
			seed := maphash.MakeSeed()
			pick := func(a confidential.Account) confidential.Client {
				return apps[maphash.String(seed, a.HomeAccountID)%uint64(len(apps))]
			}
			// Sign each user in on the client that will serve it.
			accounts := make([]confidential.Account, users)
			for i := range users {
				u, err := idp.AddUser(idp.Tenant(), dcachetest.User(i))
				if err != nil {
					b.Fatal(err)
				}
				app := apps[maphash.String(seed, u.HomeAccountID)%uint64(len(apps))]
				res, err := idp.AuthCodeLogin(ctx, app, dcachetest.WebClientID, dcachetest.RedirectURI, u.Username, dcachetest.UserScope)
				if err != nil {
					b.Fatal(err)
				}
				accounts[i] = res.Account
			}
			var failed, total atomic.Int64
			b.ResetTimer()
			for b.Loop() {
				var wg sync.WaitGroup
				for range goroutines {
					wg.Go(func() {
						for range calls {
							a := accounts[rand.IntN(users)]
							total.Add(1)
							if dcachetest.Silent(ctx, pick(a), a) != nil {
								failed.Add(1)
							}
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(100*float64(failed.Load())/float64(total.Load()), "failed%")
			b.ReportMetric(float64(total.Load())/b.Elapsed().Seconds(), "calls/s")
		})
	}
}

// BenchmarkDaemon: client credentials for 20 tenants on one shared client
// from 16 goroutines, with the naive plugin and with the Cache. It reports
// the share of calls that missed a cached token (each one a token request
// to the identity provider).
func BenchmarkDaemon(b *testing.B) {
	const tenants, goroutines, calls = 20, 16, 50
	for _, tc := range []struct {
		name string
		c    func(b *testing.B) cache.ExportReplace
	}{
		{"naive", func(*testing.B) cache.ExportReplace { return newNaive() }},
		{"cache", func(b *testing.B) cache.ExportReplace {
			return dcachetest.NewCache(b, distributed.NewMemoryStore())
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			idp := dcachetest.IDP(b)
			ctx := dcachetest.Ctx(b)
			for i := range tenants {
				if _, err := idp.AddTenant(fmt.Sprintf("tenant-%02d", i)); err != nil {
					b.Fatal(err)
				}
			}
			app := dcachetest.Client(b, idp, dcachetest.DaemonID, "daemon-secret", idp.Origin()+"/tenant-00", tc.c(b))
			for i := range tenants {
				if _, err := app.AcquireTokenByCredential(ctx, dcachetest.DaemonScope, confidential.WithTenantID(fmt.Sprintf("tenant-%02d", i))); err != nil {
					b.Fatal(err)
				}
			}
			before := idp.Requests()
			var total atomic.Int64
			for b.Loop() {
				var wg sync.WaitGroup
				for g := range goroutines {
					wg.Go(func() {
						for n := range calls {
							total.Add(1)
							tenant := fmt.Sprintf("tenant-%02d", (g+n)%tenants)
							if _, err := app.AcquireTokenByCredential(ctx, dcachetest.DaemonScope, confidential.WithTenantID(tenant)); err != nil {
								b.Error(err)
							}
						}
					})
				}
				wg.Wait()
			}
			missed := idp.Requests().Sub(before).ClientCredentialsGrant
			b.ReportMetric(100*float64(missed)/float64(total.Load()), "missed%")
		})
	}
}

// memory is an MSAL memory that keeps what it is given.
type memory struct {
	mu   sync.Mutex
	data []byte
}

func (m *memory) Unmarshal(b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data = append(m.data[:0], b...)
	return nil
}

func (m *memory) Marshal() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.data...), nil
}

// BenchmarkReplaceHeld is the Cache's own part of a silent hit, without
// MSAL: Replace of a partition the client holds at the store's version, by
// one ctx (shared), and by requests of their own (16 running at once, more
// than a partition's read log tells apart: its slowest path).
func BenchmarkReplaceHeld(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("requests-%d", n), func(b *testing.B) {
			c := dcachetest.NewCache(b, distributed.NewMemoryStore())
			ctxs := make([]context.Context, n)
			for i := range ctxs {
				ctx, cancel := context.WithCancel(context.Background())
				b.Cleanup(cancel)
				ctxs[i] = ctx
			}
			m := &memory{}
			const key = "uid.tid"
			hints := cache.ReplaceHints{PartitionKey: key}
			m.Unmarshal([]byte(`{"AccessToken":{"k":{"home_account_id":"uid.tid","secret":"s"}}}`))
			if err := c.Export(ctxs[0], m, cache.ExportHints{PartitionKey: key}); err != nil {
				b.Fatal(err)
			}
			for range 2 {
				if err := c.Replace(ctxs[0], m, hints); err != nil {
					b.Fatal(err)
				}
			}
			reads := c.Stats().StoreReads
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := c.Replace(ctxs[i%n], m, hints); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if d := c.Stats().StoreReads - reads; d != 0 {
				b.Fatalf("%d store reads for %d Replace calls of a held partition", d, b.N)
			}
		})
	}
}
