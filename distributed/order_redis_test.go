//go:build !windows

package distributed_test

import (
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/redisstore"
	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// TestRefreshAcrossSignOutRedis: a refresh in flight across a sign-out,
// while the refreshing client's working set churns, over a real
// redis-server (the sign-out reaches the refreshing replica as Redis's
// notice). Here because only this package can make a working set small.
func TestRefreshAcrossSignOutRedis(t *testing.T) {
	srv := redistest.Start(t)
	stores := func(t testing.TB) distributed.Store {
		s, err := redisstore.Open(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	dcachetest.RefreshAcrossSignOut(t, stores, true, distributed.WithViewForTests(2, 10*time.Millisecond))
}
