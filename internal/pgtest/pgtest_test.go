//go:build !windows

package pgtest

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestKillRestart: committed data survives Kill and Restart on the same
// address; the server is unreachable in between; statements are counted.
func TestKillRestart(t *testing.T) {
	s := Start(t)
	addr := s.Addr()
	if _, err := s.Exec("CREATE TABLE t (n int)"); err != nil {
		t.Fatal(err)
	}
	before := s.Statements("INSERT INTO t")
	for i := range 3 {
		if _, err := s.Exec("INSERT INTO t VALUES ($1)", i); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Statements("INSERT INTO t") - before; n != 3 {
		t.Errorf("pg_stat_statements counted %d inserts, want 3", n)
	}
	held, err := pgx.Connect(context.Background(), s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close(context.Background())
	s.Kill()
	if _, err := s.Exec("SELECT 1"); err == nil {
		t.Fatal("a statement on a new connection succeeded after Kill")
	}
	// A connection opened before is not served either: its backend died
	// with the server.
	if _, err := held.Exec(context.Background(), "SELECT 1"); err == nil {
		t.Fatal("a statement on a connection opened before Kill succeeded after it")
	}
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr(), addr)
	}
	if n, err := s.QueryInt("SELECT count(*) FROM t"); err != nil || n != 3 {
		t.Fatalf("after the restart: %d rows, %v; want 3", n, err)
	}
	// Killed while clients are connected, then restarted at once: the
	// orphaned backends must not keep it from starting.
	for range 2 {
		conn, err := pgx.Connect(context.Background(), s.URL())
		if err != nil {
			t.Fatal(err)
		}
		s.Kill()
		s.Restart()
		conn.Close(context.Background())
	}
	if n, err := s.QueryInt("SELECT count(*) FROM t"); err != nil || n != 3 {
		t.Fatalf("after two more restarts: %d rows, %v; want 3", n, err)
	}
	if !strings.HasPrefix(s.URL(), "postgres://app@127.0.0.1:") {
		t.Errorf("URL %q", s.URL())
	}
}
