//go:build !windows

package redisstore

import (
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/dcachetest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// TestCacheOrderCutOff: replica A reaches Redis through a path that goes
// silent while a user signs in on it; replica B signs her out meanwhile.
// After A's write-back she is signed out, every time.
func TestCacheOrderCutOff(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	stores := redisStores(srv.URL(), srv)
	a := open(t, proxy.URL(), WithDialTimeout(time.Second))
	dcachetest.OutageOrderOn(t, stores, a, stores(t), func(down bool) {
		if down {
			proxy.Pause()
		} else {
			proxy.Resume()
		}
	}, false, 5)
}

// TestCacheOrderKilled: the same with the redis-server killed (both
// replicas cut off: B's sign-out is kept too) and restarted with its data.
func TestCacheOrderKilled(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	stores := redisStores(srv.URL(), srv)
	stores(t) // empties the server, once
	a := open(t, srv.URL(), WithDialTimeout(time.Second))
	dcachetest.OutageOrderOn(t, stores, a, open(t, srv.URL(), WithDialTimeout(time.Second)), func(down bool) {
		if down {
			srv.Kill()
		} else {
			srv.Restart()
		}
	}, true, 5)
}
