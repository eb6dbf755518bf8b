//go:build !windows

package redisserver

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func require(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
			t.Fatal("redis-server is not on PATH (MSALCACHE_REQUIRE_SERVICES=1)")
		}
		t.Skip("redis-server is not on PATH: install the Debian package redis-server")
	}
}

// inline sends one inline command and returns the first line of the reply.
func inline(t *testing.T, addr, command string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(command + "\r\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(line, "$") && line != "$-1\r\n" {
		line, err = r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimSpace(line)
}

// TestAppendOnlyRestart: with AppendOnly the data survives Kill and
// Restart on the same address; Stop removes the directory Start made.
func TestAppendOnlyRestart(t *testing.T) {
	require(t)
	ctx := context.Background()
	s, err := Start(ctx, Config{AppendOnly: true, Args: []string{"--appendfsync", "always"}})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if got := inline(t, addr, "SET k v"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := ping(addr); err == nil {
		t.Fatal("PING answered after Kill")
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", s.Addr(), addr)
	}
	if got := inline(t, addr, "GET k"); got != "v" {
		t.Fatalf("GET after restart: %q, want v", got)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the directory is still there after Stop: %v", err)
	}
}

// TestNoPersistence: by default the data is gone after a restart, and a
// directory the caller gave is left in place.
func TestNoPersistence(t *testing.T) {
	require(t)
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Start(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if got := inline(t, s.Addr(), "SET k v"); got != "+OK" {
		t.Fatalf("SET: %q", got)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := inline(t, s.Addr(), "GET k"); got != "$-1" {
		t.Fatalf("GET after restart: %q, want nil", got)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("Stop removed the caller's directory: %v", err)
	}
}

// TestStartFailure: a server that exits at start is an error that carries
// its log, and the temporary directory is removed.
func TestStartFailure(t *testing.T) {
	require(t)
	_, err := Start(context.Background(), Config{Args: []string{"--no-such-option", "x"}})
	if err == nil || !strings.Contains(err.Error(), "exited at start") {
		t.Fatalf("Start with a bad option: %v", err)
	}
}
