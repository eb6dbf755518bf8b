//go:build !windows

package pgserver

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

func require(t *testing.T) {
	t.Helper()
	if _, err := BinDir(); err != nil {
		if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
			t.Fatal(err.Error() + " (MSALCACHE_REQUIRE_SERVICES=1)")
		}
		t.Skip(err.Error())
	}
}

// TestStartStop: the server accepts connections as the app superuser, its
// directory is not readable by others, and Stop removes it.
func TestStartStop(t *testing.T) {
	require(t)
	s, err := Start(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("the server's directory has mode %v, want 0700", fi.Mode().Perm())
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the directory is still there after Stop: %v", err)
	}
	if err := s.ping(context.Background()); err == nil {
		t.Fatal("the server answers after Stop")
	}
}

// TestStartFailure: a server that exits at start is an error that carries
// its log, and the temporary directory is removed.
func TestStartFailure(t *testing.T) {
	require(t)
	_, err := Start(context.Background(), Config{Args: []string{"no_such_setting=1"}})
	if err == nil || !strings.Contains(err.Error(), "exited at start") || !strings.Contains(err.Error(), "no_such_setting") {
		t.Fatalf("Start with a bad setting: %v", err)
	}
}
