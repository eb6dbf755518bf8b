//go:build !windows

package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/storetest"
	"github.com/msalcache/msalcache/internal/redistest"
)

// open opens a Store on url, closed when t ends.
func open(t testing.TB, url string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(url, opts...)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// opener returns storetest's backend function for the server at url.
func opener(url string) func(t *testing.T) func() distributed.Store {
	return func(t *testing.T) func() distributed.Store {
		return func() distributed.Store { return open(t, url) }
	}
}

func TestConformanceStandalone(t *testing.T) {
	storetest.Run(t, opener(redistest.Start(t).URL()))
}

func TestConformanceCluster(t *testing.T) {
	storetest.Run(t, opener(redistest.StartCluster(t).URL()))
}

func bg(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// counter is a command count, summed over the nodes of a deployment.
type counter interface{ Calls(command string) int64 }

// TestHotLoadsSendNoGET counts, on the server, what 2000 Loads of one key
// send: the first is a GET, the rest are served from the client-side cache.
func TestHotLoadsSendNoGET(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		srv := redistest.Start(t)
		testHotLoads(t, srv.URL(), srv)
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartCluster(t)
		testHotLoads(t, c.URL(), c)
	})
}

func testHotLoads(t *testing.T, url string, srv counter) {
	s := open(t, url)
	const k = "hot"
	v := distributed.NewVersion()
	if err := s.Store(bg(t), k, []byte("token blob"), 0, v, 0); err != nil {
		t.Fatal(err)
	}
	if _, ver, err := s.Load(bg(t), k); err != nil || ver != v {
		t.Fatalf("Load = version %d, %v; want %d", ver, err, v)
	}
	gets, evals := srv.Calls("get"), srv.Calls("evalsha")+srv.Calls("eval")
	for range 2000 {
		if _, ver, err := s.Load(bg(t), k); err != nil || ver != v {
			t.Fatalf("Load = version %d, %v; want %d", ver, err, v)
		}
	}
	if n := srv.Calls("get") - gets; n != 0 {
		t.Errorf("2000 hot Loads sent %d GET commands, want 0", n)
	}
	if n := srv.Calls("evalsha") + srv.Calls("eval") - evals; n != 0 {
		t.Errorf("2000 hot Loads sent %d scripts, want 0", n)
	}
	t.Logf("after the first Load: %d GET for 2000 Loads", srv.Calls("get")-gets)
}

// TestReadYourWrites: right after this Store's own write, its Load sees the
// write, though the key was in the client-side cache.
func TestReadYourWrites(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv.URL())
	const k = "ryw"
	var prev distributed.Version
	for i := range 500 {
		if _, ver, err := s.Load(bg(t), k); err != nil || ver != prev { // cache it
			t.Fatalf("write %d: Load = version %d, %v; want %d", i, ver, err, prev)
		}
		next := distributed.NewVersion()
		if err := s.Store(bg(t), k, fmt.Appendf(nil, "%d", i), prev, next, 0); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		prev = next
	}
}

// TestOpenBadURL: a malformed URL is a clear error that never shows the
// password.
func TestOpenBadURL(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"", "no scheme"},
		{"localhost:6379", "scheme"},
		{"http://localhost:6379", `scheme "http"`},
		{"redis://", "no host"},
		{"redis://user:s3cret@host:notaport", "port"},
		{"redis://user:s3cret@host:99999", "port"},
		{"redis://user:s3cret@host:6379/x", "database number"},
		{"redis://user:s3cret@host:6379/1/2", "database number"},
		{"redis://user:s3cret@host:6379/-1", "database number"},
		{"redis://user:s3cret@host:6379?timeout=3", `unknown parameter "timeout"`},
		{"redis://user:s3cret@h1:1/2?addr=h2:2", "only database 0"},
		{"redis://user:s3cret@h1:1?addr=h2:x", "addr=h2:x"},
		{"redis://user:s3cret@h1:1?addr=", "no host"},
		{"redis://user:s3cr/et@h1:1/x", "redis://user:xxxxx@h1:1/x"},
		{"redis://user:s3cret@h1:1/2@", "no host"},
		{"redis://u:s3cret@[::1", "missing ']'"},
		{"redis://h:1#frag", "fragment"},
		{"redis://user:s3cret@h1:1?addr=h2:2&master_set=", "master_set"},
		{"redis://user:s3cret@h1:1?master_set=a&master_set=b", "master_set"},
		{"redis://user:s3cret@h1:1?master=a", `unknown parameter "master"`},
	} {
		s, err := Open(tc.url)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) = %v, want an error containing %q", tc.url, err, tc.want)
		}
		if strings.Contains(err.Error(), "s3cr") {
			t.Errorf("Open(%q) = %v: the error shows the password", tc.url, err)
		}
	}
	if _, err := Open("redis://localhost:1", WithDialTimeout(0)); err == nil || !strings.Contains(err.Error(), "WithDialTimeout") {
		t.Errorf("Open with WithDialTimeout(0) = %v", err)
	}
}

func TestParseURL(t *testing.T) {
	tgt, err := parseURL("rediss://me:pw@example.com/3")
	if err != nil {
		t.Fatal(err)
	}
	if !tgt.tls || tgt.user != "me" || tgt.password != "pw" || tgt.db != 3 || tgt.host != "example.com" ||
		!slices.Equal(tgt.addrs, []string{"example.com:6379"}) {
		t.Errorf("parseURL = %+v", tgt)
	}
	// Special characters in a password, percent-encoded or not.
	for raw, want := range map[string]string{
		"redis://me:p/a?s#s@w:rd@host:1/2": "p/a?s#s@w:rd",
		"redis://me:p%2Fa%40b@host:1/2":    "p/a@b",
		"redis://me:100%@host:1/2":         "100%",
	} {
		tgt, err := parseURL(raw)
		if err != nil {
			t.Errorf("parseURL(%q): %v", raw, err)
			continue
		}
		if tgt.user != "me" || tgt.password != want || tgt.db != 2 || tgt.addrs[0] != "host:1" {
			t.Errorf("parseURL(%q) = %+v, want password %q", raw, tgt, want)
		}
	}
	tgt, err = parseURL("redis://h1:7001?addr=h2:7002&addr=[::1]:7003&addr=h4")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"h1:7001", "h2:7002", "[::1]:7003", "h4:6379"}; tgt.tls || !slices.Equal(tgt.addrs, want) || tgt.masterSet != "" {
		t.Errorf("parseURL: addrs %v, want %v", tgt.addrs, want)
	}
	// Sentinel: the addresses are the sentinels'; a database is allowed.
	tgt, err = parseURL("redis://me:p@ss@s1:26379/2?addr=s2:26379&addr=s3:26379&master_set=mymaster")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"s1:26379", "s2:26379", "s3:26379"}; !slices.Equal(tgt.addrs, want) || tgt.masterSet != "mymaster" ||
		tgt.db != 2 || tgt.password != "p@ss" || strings.Contains(tgt.redacted, "p@ss") {
		t.Errorf("parseURL(sentinel) = %+v", tgt)
	}
}

// TestOpenUnreachable: Open returns within its bound when nothing listens,
// and when something accepts connections but never answers; the Store's
// calls then fail within their ctx with an error wrapping
// distributed.ErrUnavailable.
func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // accept, read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()

	const dial = 500 * time.Millisecond
	for _, url := range []string{
		"redis://" + closed,
		"redis://" + silent.Addr().String(),
		"redis://" + silent.Addr().String() + "?addr=" + closed,
		"redis://" + closed + "?addr=" + silent.Addr().String() + "&master_set=mymaster",
	} {
		start := time.Now()
		s, err := Open(url, WithDialTimeout(dial))
		took := time.Since(start)
		if err != nil {
			t.Errorf("Open(%q) = %v; want a Store that connects later", url, err)
			continue
		}
		if took > 10*dial {
			t.Errorf("Open(%q) took %v with a dial timeout of %v", url, took, dial)
		}
		for range 2 {
			c, cancel := context.WithTimeout(context.Background(), 3*dial)
			callStart := time.Now()
			_, _, err = s.Load(c, "k")
			cancel()
			if took := time.Since(callStart); took > 6*dial {
				t.Errorf("%q: Load with a %v ctx took %v", url, 3*dial, took)
			}
			if !errors.Is(err, distributed.ErrUnavailable) {
				t.Errorf("%q: Load = %v; want an error wrapping distributed.ErrUnavailable", url, err)
			}
			time.Sleep(2 * redialFloor)
		}
		t.Logf("Open(%q) after %v; Load: %v", url, took.Round(time.Millisecond), err)
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// TestNotifyOnDisconnect: when the server goes away, Notify's callback gets
// "" (the client-side cache was dropped); Loads fail within their ctx while
// the server is down, and work again, coherent, once it is back.
func TestServerRestart(t *testing.T) {
	srv := redistest.Start(t)
	a := open(t, srv.URL())
	var flushed atomic.Int64
	a.Notify(func(key string) {
		if key == "" {
			flushed.Add(1)
		}
	})
	const k = "restart"
	v1 := distributed.NewVersion()
	if err := a.Store(bg(t), k, []byte("before"), 0, v1, 0); err != nil {
		t.Fatal(err)
	}
	if _, ver, err := a.Load(bg(t), k); err != nil || ver != v1 {
		t.Fatalf("Load = %d, %v", ver, err)
	}

	srv.Kill()
	waitFor(t, "the callback hears of the lost connection", func() bool { return flushed.Load() > 0 })
	// Down: a call with a deadline returns by it, one without returns
	// after the dial timeout.
	for _, timeout := range []time.Duration{300 * time.Millisecond, 0} {
		c, cancel := context.Background(), context.CancelFunc(func() {})
		if timeout > 0 {
			c, cancel = context.WithTimeout(c, timeout)
		}
		start := time.Now()
		_, _, err := a.Load(c, k)
		cancel()
		took := time.Since(start)
		if err == nil {
			t.Fatal("Load succeeded with the server down")
		}
		if bound := max(timeout, 5*time.Second) + 5*time.Second; took > bound {
			t.Errorf("Load with the server down took %v (ctx timeout %v)", took, timeout)
		}
		t.Logf("server down, ctx timeout %v: Load failed after %v: %v", timeout, took.Round(time.Millisecond), err)
	}

	srv.Restart()
	restarted := time.Now()
	// The restarted server is empty (no persistence): the key is gone.
	var recovered time.Duration
	waitFor(t, "Load works after the restart", func() bool {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		v, ver, err := a.Load(c, k)
		if err == nil && (ver != 0 || v != nil) {
			t.Fatalf("after the restart, Load = version %d, want the key gone", ver)
		}
		recovered = time.Since(restarted)
		return err == nil
	})
	t.Logf("recovered %v after the restart", recovered.Round(time.Millisecond))
	v2 := distributed.NewVersion()
	if err := a.Store(bg(t), k, []byte("after"), 0, v2, 0); err != nil {
		t.Fatalf("Store after the restart: %v", err)
	}
	if _, ver, err := a.Load(bg(t), k); err != nil || ver != v2 {
		t.Fatalf("Load after the restart = %d, %v; want %d", ver, err, v2)
	}
}

// TestHalfOpen: when the path to the server stops delivering anything, the
// Store notices within its health timeout, drops its cached values (the
// callback gets ""), and recovers when the path works again.
func TestHalfOpen(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartProxy(t, srv.Addr())
	a := open(t, proxy.URL(), WithDialTimeout(time.Second))
	b := open(t, srv.URL())
	var flushedAt atomic.Int64
	a.Notify(func(key string) {
		if key == "" {
			flushedAt.CompareAndSwap(0, time.Now().UnixNano())
		}
	})
	const k = "halfopen"
	v1 := distributed.NewVersion()
	if err := b.Store(bg(t), k, []byte("one"), 0, v1, 0); err != nil {
		t.Fatal(err)
	}
	if _, ver, err := a.Load(bg(t), k); err != nil || ver != v1 {
		t.Fatalf("Load = %d, %v", ver, err)
	}

	proxy.Pause()
	paused := time.Now()
	v2 := distributed.NewVersion()
	if err := b.Store(bg(t), k, []byte("two"), v1, v2, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the half-open connection is detected", func() bool { return flushedAt.Load() != 0 })
	detected := time.Unix(0, flushedAt.Load()).Sub(paused)
	t.Logf("half-open connection detected after %v (health timeout 2s)", detected.Round(time.Millisecond))
	if detected > 3*time.Second {
		t.Errorf("half-open connection detected after %v, want about 2s", detected)
	}
	// Nothing stale is served now: the cache is gone and the server is
	// unreachable.
	c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, ver, err := a.Load(c, k)
	cancel()
	if err == nil && ver == v1 {
		t.Fatal("after detection, Load served the stale version")
	}

	proxy.Resume()
	waitFor(t, "Load sees the change after the path works again", func() bool {
		c, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, ver, err := a.Load(c, k)
		return err == nil && ver == v2
	})
}

// TestCoherence: a change written by one client is seen by another within a
// bound; each change is timed (the delay figure is BenchmarkInvalidation).
func TestCoherence(t *testing.T) {
	srv := redistest.Start(t)
	delays := invalidationDelays(t, srv.URL(), 100)
	slices.Sort(delays)
	p50, p99 := delays[len(delays)/2], delays[len(delays)*99/100]
	t.Logf("invalidation delay over %d writes: p50 %v, p99 %v, max %v", len(delays), p50, p99, delays[len(delays)-1])
	// Generous: the goal on an idle machine is a p99 far below this.
	if p99 > time.Second {
		t.Errorf("p99 invalidation delay %v", p99)
	}
}

// invalidationDelays writes n changes with one Store and returns, for each,
// the time from the Store's return until another Store, which loads the key
// in a loop (from its client-side cache), sees it.
func invalidationDelays(t testing.TB, url string, n int) []time.Duration {
	writer, reader := open(t, url), open(t, url)
	k := fmt.Sprintf("coherence-%d", time.Now().UnixNano())
	var prev distributed.Version
	delays := make([]time.Duration, 0, n)
	for range n {
		if _, ver, err := reader.Load(bg(t), k); err != nil || ver != prev {
			t.Fatalf("reader Load = %d, %v; want %d", ver, err, prev)
		}
		next := distributed.NewVersion()
		if err := writer.Store(bg(t), k, []byte("value"), prev, next, 0); err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		for {
			_, ver, err := reader.Load(bg(t), k)
			if err != nil {
				t.Fatal(err)
			}
			if ver == next {
				break
			}
			if time.Since(written) > 10*time.Second {
				t.Fatalf("the reader still sees version %d 10s after the write of %d", ver, next)
			}
		}
		delays = append(delays, time.Since(written))
		prev = next
	}
	return delays
}

// waitFor polls cond, bounded.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClosedErrors: calls after Close return distributed.ErrClosed, which
// wraps net.ErrClosed; a second Close returns nil.
func TestClosedErrors(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv.URL())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(bg(t), "k"); !errors.Is(err, distributed.ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Load after Close = %v, want distributed.ErrClosed and net.ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}
