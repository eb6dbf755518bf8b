//go:build !windows

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/distributed/storetest"
	"github.com/msalcache/msalcache/internal/pgtest"
)

// open opens a Store on url, closed when t ends.
func open(t testing.TB, url string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(url, opts...)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func bg(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestConformance(t *testing.T) {
	url := pgtest.Start(t).URL()
	storetest.Run(t, func(t *testing.T) func() distributed.Store {
		return func() distributed.Store { return open(t, url) }
	})
}

// TestOpenUnreachable: Open fails within a bound, with a clear error, when
// nothing listens at the address, and when a server accepts connections
// but never answers.
func TestOpenUnreachable(t *testing.T) {
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
			defer c.Close() // held open, never answered
		}
	}()
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := refused.Addr().String()
	refused.Close()
	const dial = 500 * time.Millisecond
	for _, addr := range []string{refusedAddr, silent.Addr().String()} {
		start := time.Now()
		s, err := Open("postgres://app:s3cret@"+addr+"/postgres?sslmode=disable", WithDialTimeout(dial))
		took := time.Since(start)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%s) succeeded", addr)
		}
		if !strings.Contains(err.Error(), "connecting to postgres://app:xxxxx@"+addr) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%s) = %v", addr, err)
		}
		if took > 2*dial+time.Second {
			t.Errorf("Open(%s) took %v, dial timeout %v", addr, took, dial)
		}
		t.Logf("Open(%s) failed after %v: %v", addr, took.Round(time.Millisecond), err)
	}
}

// TestClosed: a second Close returns nil; every other call after Close
// fails with an error that matches net.ErrClosed and
// distributed.ErrClosed; a Load that runs while Close happens ends either
// way, without hanging.
func TestClosed(t *testing.T) {
	srv := pgtest.Start(t)
	s, err := Open(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	v := distributed.NewVersion()
	if err := s.Store(bg(t), "k", []byte("x"), 0, v, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	_, _, loadErr := s.Load(bg(t), "k")
	for name, err := range map[string]error{
		"Load":  loadErr,
		"Store": s.Store(bg(t), "k", []byte("y"), v, distributed.NewVersion(), 0),
		"Touch": s.Touch(bg(t), "k", time.Minute),
	} {
		if !errors.Is(err, net.ErrClosed) || !errors.Is(err, distributed.ErrClosed) {
			t.Errorf("%s after Close = %v, want net.ErrClosed and distributed.ErrClosed", name, err)
		}
	}
}

// TestSchema: Open creates the schema; a role without the right to create
// tables gets a clear error unless WithExistingSchema, and works with it
// once the tables exist (with the grants the package doc lists); a schema
// of a later release is refused.
func TestSchema(t *testing.T) {
	srv := pgtest.Start(t)
	for _, sql := range []string{
		`CREATE ROLE limited LOGIN`,
		`REVOKE CREATE ON SCHEMA public FROM PUBLIC`,
	} {
		if _, err := srv.Exec(sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	limited := strings.Replace(srv.URL(), "//app@", "//limited@", 1)
	if _, err := Open(limited, WithExistingSchema()); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Open with WithExistingSchema before the tables exist = %v", err)
	}
	if _, err := Open(limited); err == nil || !strings.Contains(err.Error(), "WithExistingSchema") {
		t.Errorf("Open by a role that cannot create tables = %v", err)
	}

	open(t, srv.URL()) // creates the schema
	for _, sql := range []string{
		`GRANT SELECT, INSERT, UPDATE, DELETE ON msalcache_entries TO limited`,
		`GRANT SELECT ON msalcache_entries_schema TO limited`,
	} {
		if _, err := srv.Exec(sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	s := open(t, limited, WithExistingSchema())
	v := distributed.NewVersion()
	if err := s.Store(bg(t), "k", []byte("x"), 0, v, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ver, err := s.Load(bg(t), "k"); err != nil || ver != v {
		t.Fatalf("Load = %d, %v", ver, err)
	}
	if res, err := s.cleanup(bg(t)); err != nil || !res.ran {
		t.Fatalf("the limited role's cleanup: %+v, %v", res, err)
	}

	if _, err := srv.Exec(`UPDATE msalcache_entries_schema SET version = 2`); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(srv.URL()); err == nil || !strings.Contains(err.Error(), "later release") {
		t.Errorf("Open of a schema of a later release = %v", err)
	}
}

// recorder collects what a Notify callback hears.
type recorder struct {
	mu    sync.Mutex
	heard []string
}

func (r *recorder) hear(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.heard = append(r.heard, key)
}

// count returns how many times key was heard.
func (r *recorder) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, k := range r.heard {
		if k == key {
			n++
		}
	}
	return n
}

// TestListenerReconnect: when the notice connection is killed on the
// server, the listeners hear "" (changes may be missed), the Store listens
// again and they hear "" once more, and later changes are heard; writes
// meanwhile neither fail nor wait for their own notice.
func TestListenerReconnect(t *testing.T) {
	srv := pgtest.Start(t)
	s, writer := open(t, srv.URL()), open(t, srv.URL())
	var r recorder
	s.Notify(r.hear)
	killed, err := srv.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN ` + DefaultTable + `'`)
	if err != nil || killed != 2 { // the two Stores' notice connections
		t.Fatalf("terminating the notice connections: %d, %v", killed, err)
	}
	start := time.Now()
	v := distributed.NewVersion()
	if err := writer.Store(bg(t), "during", []byte("x"), 0, v, 0); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("a write while the notice connection was down took %v", d)
	}
	waitFor(t, `"" heard on the loss and on the return`, func() bool { return r.count("") >= 2 })
	// The notice connection may come back a moment after the "": write
	// until a write is heard.
	i := 0
	waitFor(t, "a change after the return is heard", func() bool {
		i++
		k := fmt.Sprintf("after-%d", i)
		if err := writer.Store(bg(t), k, []byte("x"), 0, distributed.NewVersion(), 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		return r.count(k) > 0
	})
}

// TestServerDown: with the server killed, each call fails within its ctx
// (no hang); once it is restarted, calls work again with the data of
// before (PostgreSQL committed it), and the listeners were told "".
//
// Neither its errors nor its log lines show the URL's password (the server
// trusts the connection, so any password will do) or a value.
func TestServerDown(t *testing.T) {
	srv := pgtest.Start(t)
	const password, secretValue = "s3cret-pw", "VALUE-4f1c"
	var logs strings.Builder
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	url := strings.Replace(srv.URL(), "//app@", "//app:"+password+"@", 1)
	s := open(t, url, WithDialTimeout(time.Second), WithLogger(log))
	var r recorder
	s.Notify(r.hear)
	var errs []error
	defer func() {
		logMu.Lock()
		defer logMu.Unlock()
		for _, text := range append([]string{logs.String()}, fmt.Sprint(errs)) {
			if strings.Contains(text, password) || strings.Contains(text, secretValue) {
				t.Errorf("a log line or an error shows the password or a value:\n%s", text)
			}
		}
		if !strings.Contains(logs.String(), "notice connection") {
			t.Errorf("the loss of the notice connection was not logged:\n%s", logs.String())
		}
	}()
	v := distributed.NewVersion()
	if err := s.Store(bg(t), "k", []byte("before"), 0, v, 0); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	const timeout = 300 * time.Millisecond
	for name, call := range map[string]func(context.Context) error{
		"Load": func(ctx context.Context) error { _, _, err := s.Load(ctx, "k"); return err },
		"Store": func(ctx context.Context) error {
			return s.Store(ctx, "k", []byte(secretValue), v, distributed.NewVersion(), 0)
		},
		"Touch": func(ctx context.Context) error { return s.Touch(ctx, "k", time.Minute) },
	} {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		start := time.Now()
		err := call(ctx)
		took := time.Since(start)
		cancel()
		errs = append(errs, err)
		if err == nil {
			t.Errorf("%s succeeded with the server down", name)
		}
		if took > timeout+time.Second {
			t.Errorf("%s with the server down took %v (ctx timeout %v)", name, took, timeout)
		}
	}
	waitFor(t, `"" heard after the kill`, func() bool { return r.count("") >= 1 })
	srv.Restart()
	waitFor(t, "Load works again, with the data of before", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		value, ver, err := s.Load(ctx, "k")
		if err == nil && (ver != v || string(value) != "before") {
			t.Fatalf("after the restart: %q, version %d; want before, %d", value, ver, v)
		}
		return err == nil
	})
	waitFor(t, `"" heard once the notice connection is back`, func() bool { return r.count("") >= 2 })
	if err := s.Store(bg(t), "k", []byte("after"), v, distributed.NewVersion(), 0); err != nil {
		t.Fatal(err)
	}
}

// writerFunc is an io.Writer.
type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
