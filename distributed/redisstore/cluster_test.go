//go:build !windows

package redisstore

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/redistest"
)

// recoveryTime writes k in a loop, each call bounded by a second, until a
// write succeeds, and returns how long that took from start. No call may
// take much longer than its ctx allows.
func recoveryTime(t *testing.T, s *Store, k string, prev distributed.Version, start time.Time) (time.Duration, distributed.Version) {
	t.Helper()
	next := distributed.NewVersion()
	waitFor(t, "writes work again", func() bool {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		callStart := time.Now()
		_, ver, err := s.Load(c, k)
		if err == nil {
			// The value may be gone (a restarted node without
			// persistence): write on what is there.
			prev = ver
			err = s.Store(c, k, []byte("after"), prev, next, 0)
		}
		if d := time.Since(callStart); d > 3*time.Second {
			t.Fatalf("a call with a 1s ctx took %v", d)
		}
		return err == nil
	})
	return time.Since(start), next
}

// TestClusterFailover kills a master that has a replica: after the
// cluster promotes the replica, the Store reads and writes the master's
// keys again, and its callback heard of the lost connection.
func TestClusterFailover(t *testing.T) {
	c := redistest.StartCluster(t)
	master := c.Nodes[0]
	c.AddReplica(t, master)
	k := c.KeyOn(t, master, "failover")
	s := open(t, c.URL())
	var flushed atomic.Int64
	s.Notify(func(key string) {
		if key == "" {
			flushed.Add(1)
		}
	})
	v1 := distributed.NewVersion()
	if err := s.Store(bg(t), k, []byte("before"), 0, v1, 0); err != nil {
		t.Fatal(err)
	}
	if _, ver, err := s.Load(bg(t), k); err != nil || ver != v1 {
		t.Fatalf("Load = %d, %v", ver, err)
	}
	// Let the replica receive the write before its master dies.
	time.Sleep(100 * time.Millisecond)
	before := flushed.Load()

	master.Kill()
	killed := time.Now()
	took, v2 := recoveryTime(t, s, k, v1, killed)
	t.Logf("master killed: writes work again after %v (node timeout 2s)", took.Round(time.Millisecond))
	if flushed.Load() == before {
		t.Error("the callback was not told of the lost connection")
	}
	if _, ver, err := s.Load(bg(t), k); err != nil || ver != v2 {
		t.Fatalf("after the failover, Load = %d, %v; want %d", ver, err, v2)
	}
}

// TestClusterNodeRestart kills a master without a replica and restarts
// it: its slots are served again and the Store uses them within seconds.
func TestClusterNodeRestart(t *testing.T) {
	c := redistest.StartCluster(t)
	node := c.Nodes[1]
	k := c.KeyOn(t, node, "restart")
	s := open(t, c.URL())
	v1 := distributed.NewVersion()
	if err := s.Store(bg(t), k, []byte("before"), 0, v1, 0); err != nil {
		t.Fatal(err)
	}
	if _, ver, err := s.Load(bg(t), k); err != nil || ver != v1 {
		t.Fatalf("Load = %d, %v", ver, err)
	}
	node.Kill()
	// Down: calls fail within their ctx. A Load may still be served from
	// the client-side cache until the client has seen the connection drop
	// (then the copy is flushed), so the first few may succeed.
	failed := false
	for deadline := time.Now().Add(10 * time.Second); !failed && time.Now().Before(deadline); {
		cctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		callStart := time.Now()
		_, _, err := s.Load(cctx, k)
		cancel()
		if d := time.Since(callStart); d > 3*time.Second {
			t.Errorf("Load with a 500ms ctx took %v", d)
		}
		failed = err != nil
		if !failed {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !failed {
		t.Error("Loads of a key of a killed node still succeeded 10s after the kill")
	}
	node.Restart()
	restarted := time.Now()
	took, _ := recoveryTime(t, s, k, v1, restarted)
	t.Logf("node restarted: writes work again after %v", took.Round(time.Millisecond))
}

// TestClusterOpenKeepsItsConnections: opening a cluster Store closes no
// connection afterwards, so a Cache's copies are not dropped for nothing
// (rueidis, given several seed addresses, dials them all and closes the
// extra connections after it returns).
func TestClusterOpenKeepsItsConnections(t *testing.T) {
	c := redistest.StartCluster(t)
	var flushes atomic.Int64
	for range 10 {
		s := open(t, c.URL())
		s.Notify(func(key string) {
			if key == "" {
				flushes.Add(1)
			}
		})
		if _, _, err := s.Load(bg(t), "k"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // time for a late close to show
	if n := flushes.Load(); n != 0 {
		t.Errorf("10 Opens were followed by %d dropped connections", n)
	}

	// A seed that does not answer is skipped.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	s := open(t, "redis://"+closed+"?addr="+c.Nodes[2].Addr())
	k := c.KeyOn(t, c.Nodes[0], "seed")
	if err := s.Store(bg(t), k, []byte("x"), 0, distributed.NewVersion(), 0); err != nil {
		t.Fatalf("Store through the second seed: %v", err)
	}
}
