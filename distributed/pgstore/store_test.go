//go:build !windows

package pgstore

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/distributed"
	"github.com/msalcache/msalcache/internal/pgtest"
	"github.com/msalcache/msalcache/internal/storetest"
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
