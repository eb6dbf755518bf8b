package distributed

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// BenchmarkNewClient: the first call of a new MSAL client (a web app that
// makes one per request), with views of earlier clients alive: a client
// is made every viewIdle/live on the Cache's clock, so about live views
// are younger than viewIdle, as with live clients made in viewIdle. The
// cost must not grow with the number of views.
func BenchmarkNewClient(b *testing.B) {
	for _, live := range []int{600, 8500, 32500} {
		b.Run(fmt.Sprintf("views=%d", live), func(b *testing.B) {
			clock := newTestClock()
			s := NewMemoryStore()
			b.Cleanup(func() { s.Close() })
			c, err := New(s, withClock(clock.now))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			ctx := context.Background()
			m := &manager{}
			m.add(b, "uid.tid", "a")
			if err := c.Export(ctx, m, cache.ExportHints{PartitionKey: "uid.tid"}); err != nil {
				b.Fatal(err)
			}
			step := viewIdle / time.Duration(live)
			newClient := func() {
				clock.advance(step)
				if err := c.Replace(ctx, &manager{}, cache.ReplaceHints{PartitionKey: "uid.tid"}); err != nil {
					b.Fatal(err)
				}
			}
			for range 2 * live { // the steady state: as many die as are made
				newClient()
			}
			b.ResetTimer()
			for b.Loop() {
				newClient()
			}
			b.StopTimer()
			c.mu.Lock()
			n := len(c.swept)
			c.mu.Unlock()
			b.ReportMetric(float64(n), "views")
		})
	}
}
