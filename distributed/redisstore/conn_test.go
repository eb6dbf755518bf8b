//go:build !windows

package redisstore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/redistest"
)

// lockedBuffer is a log sink for tests, safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestOpenWhileDown: a Store opened while its server is down is returned
// (with a warning); its calls fail with distributed.ErrUnavailable; once
// the server answers on that address, calls work, and the client-side
// cache and Notify work (another client's write reaches the callback).
func TestOpenWhileDown(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	srv.Kill()
	url := "redis://:s3cret@" + srv.Addr()
	var log lockedBuffer
	a := open(t, url, WithLogger(slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if out := log.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "does not answer") {
		t.Errorf("Open while the server is down logged %q; want a warning", out)
	}
	var keys sync.Map
	a.Notify(func(key string) { keys.Store(key, true) })

	const k = "late"
	for range 3 {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _, err := a.Load(c, k)
		cancel()
		if !errors.Is(err, distributed.ErrUnavailable) {
			t.Fatalf("Load with the server down = %v; want distributed.ErrUnavailable", err)
		}
		if err := a.Store(bg(t), k, []byte("x"), 0, distributed.NewVersion(), 0); !errors.Is(err, distributed.ErrUnavailable) {
			t.Fatalf("Store with the server down = %v; want distributed.ErrUnavailable", err)
		}
		time.Sleep(redialFloor)
	}

	srv.Restart()
	waitFor(t, "Load works once the server is up", func() bool {
		_, _, err := a.Load(bg(t), k)
		return err == nil
	})
	if out := log.String(); !strings.Contains(out, "redisstore: connected") {
		t.Errorf("the log does not say the Store connected: %q", out)
	}
	if out := log.String(); strings.Contains(out, "s3cret") {
		t.Errorf("the log shows the password: %q", out)
	}
	v1 := distributed.NewVersion()
	if err := a.Store(bg(t), k, []byte("one"), 0, v1, 0); err != nil {
		t.Fatal(err)
	}
	if _, ver, err := a.Load(bg(t), k); err != nil || ver != v1 {
		t.Fatalf("Load = %d, %v; want %d", ver, err, v1)
	}
	// The key is in a's client-side cache now: another client's write
	// reaches a's callback and a's next Load.
	keys.Delete(k)
	b := open(t, url)
	v2 := distributed.NewVersion()
	if err := b.Store(bg(t), k, []byte("two"), v1, v2, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the invalidation reaches the callback", func() bool {
		_, ok := keys.Load(k)
		return ok
	})
	if v, ver, err := a.Load(bg(t), k); err != nil || ver != v2 || string(v) != "two" {
		t.Fatalf("after b's write, a.Load = %q, %d, %v; want two, %d", v, ver, err, v2)
	}
}

// TestConnectRace: goroutines calling a Store opened while its server is
// down, while it starts, all end up served by one client; a Store closed
// while an attempt to connect runs closes what the attempt made.
func TestConnectRace(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill()
	s := open(t, srv.URL())
	var wg sync.WaitGroup
	var served atomic.Int64
	stop := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				_, _, err := s.Load(c, "k")
				cancel()
				if err == nil {
					served.Add(1)
				} else if !errors.Is(err, distributed.ErrUnavailable) {
					t.Errorf("Load = %v; want nil or distributed.ErrUnavailable", err)
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	srv.Restart()
	waitFor(t, "calls are served", func() bool { return served.Load() > 100 })
	close(stop)
	wg.Wait()
	if n := srv.Calls("hello"); n != 1 {
		t.Errorf("the server saw %d connections (HELLO); want 1", n)
	}

	// Close during an attempt on an address that never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	const dial = 300 * time.Millisecond
	s2, err := Open("redis://"+silent.Addr().String(), WithDialTimeout(dial))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * redialFloor)
	go func() {
		c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, _, _ = s2.Load(c, "k") // starts an attempt, gives up before it ends
	}()
	time.Sleep(10 * time.Millisecond)
	start := time.Now()
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*dial {
		t.Errorf("Close took %v with a dial timeout of %v", took, dial)
	}
	if _, _, err := s2.Load(bg(t), "k"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Load after Close = %v; want net.ErrClosed", err)
	}
	if err := s2.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestOpenRefused: a server that answers and refuses the client (a wrong
// password) fails Open at once, without showing the password.
func TestOpenRefused(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right")
	_, err := Open("redis://:wr0ng@" + srv.Addr())
	if err == nil {
		t.Fatal("Open with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), "wr0ng") {
		t.Errorf("the error shows the password: %v", err)
	}
	t.Logf("wrong password: %v", err)
}

// TestDefaultLoggerDiscards: without WithLogger, the Store logs nothing,
// not even to slog.Default (the default of distributed, and of pgstore).
func TestDefaultLoggerDiscards(t *testing.T) {
	var log lockedBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(old)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := Open("redis://" + addr) // logs a warning to its logger
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if out := log.String(); out != "" {
		t.Errorf("the default logger wrote %q", out)
	}
}
