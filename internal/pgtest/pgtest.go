// Package pgtest starts throwaway PostgreSQL servers for tests (see
// internal/pgserver): on a free port of 127.0.0.1, in a temporary
// directory, stopped when the test ends. A server can be killed and
// restarted on the same port to test outages; its data survives that, as a
// real server's committed data would.
//
// The tests that use it run on Linux (and any Unix with PostgreSQL
// installed); they are excluded from Windows builds by a build tag.
package pgtest

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/msalcache/msalcache/internal/pgserver"
)

// commandTimeout bounds one statement sent by the helpers.
const commandTimeout = 30 * time.Second

// Require skips t, or fails it when MSALCACHE_REQUIRE_SERVICES=1, unless
// PostgreSQL's server programs are installed.
func Require(t testing.TB) {
	t.Helper()
	if _, err := pgserver.BinDir(); err != nil {
		if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
			t.Fatal(err.Error() + " (MSALCACHE_REQUIRE_SERVICES=1)")
		}
		t.Skip(err.Error())
	}
}

// A Server is one PostgreSQL server (see pgserver.Server) tied to a test.
// Its methods may be called from any goroutine; Kill and Restart are
// serialized.
type Server struct {
	t testing.TB
	*pgserver.Server
}

// Start starts a server and waits until it accepts connections. It is
// stopped, and its directory removed, when t ends. args are more server
// settings ("name=value").
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	Require(t)
	s, err := pgserver.Start(context.Background(), pgserver.Config{Args: args})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return &Server{t: t, Server: s}
}

// Kill kills the server (SIGKILL, no shutdown) and waits until it is gone.
func (s *Server) Kill() {
	s.t.Helper()
	if err := s.Server.Kill(); err != nil {
		s.t.Fatalf("pgtest: %v", err)
	}
}

// Restart starts the server again on the same port and data, after Kill,
// and waits until it accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.Server.Restart(context.Background()); err != nil {
		s.t.Fatalf("pgtest: %v", err)
	}
}

// Exec runs one SQL statement on a new connection and returns the number
// of rows it affected.
func (s *Server) Exec(sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	tag, err := conn.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

// QueryInt runs a query that returns one integer on a new connection.
func (s *Server) QueryInt(sql string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n *int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return 0, err
	}
	if n == nil {
		return 0, errors.New("pgtest: the query returned NULL")
	}
	return *n, nil
}

// Statements returns how many statements the server has executed whose
// text contains fragment (pg_stat_statements; "" counts every statement).
// The helpers' own statements (pg_stat_statements, connection set-up) are
// left out.
func (s *Server) Statements(fragment string) int64 {
	s.t.Helper()
	n, err := s.QueryInt(`SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
		WHERE query LIKE '%' || $1 || '%' AND query NOT LIKE '%pg_stat_statements%'`, fragment)
	if err != nil {
		s.t.Fatalf("pgtest: counting statements: %v", err)
	}
	return n
}
