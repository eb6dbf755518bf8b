// Package redistest starts throwaway redis-server processes for tests: a
// standalone server on a free port of 127.0.0.1 and a local 3-master Redis
// Cluster, both without persistence, in a temporary directory, stopped when
// the test ends. A server can be killed and restarted on the same port to
// test outages.
//
// The tests that use it run on Linux (and any Unix with redis-server
// installed); they are excluded from Windows builds by a build tag.
package redistest

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/redisserver"
)

// Bounds of the waits: generous, since the tests run on loaded machines.
const (
	clusterTimeout = 60 * time.Second
	commandTimeout = 10 * time.Second
)

// Require skips t, or fails it when MSALCACHE_REQUIRE_SERVICES=1, unless
// redis-server and redis-cli are installed.
func Require(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			msg := bin + " is not on PATH: install the Debian packages redis-server and redis-tools"
			if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
				t.Fatal(msg + " (MSALCACHE_REQUIRE_SERVICES=1)")
			}
			t.Skip(msg)
		}
	}
}

// A Server is one redis-server process (see redisserver.Server) tied to a
// test. Its methods may be called from any goroutine; Kill and Restart are
// serialized.
type Server struct {
	t testing.TB
	*redisserver.Server
}

// Start starts a standalone redis-server on a free port of 127.0.0.1 and
// waits until it answers PING. It is stopped when t ends. args are more
// redis-server options, such as "--appendonly", "yes" for a server whose
// data survives Kill and Restart.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, redisserver.Config{Dir: t.TempDir(), Args: args})
}

// start starts a server as c says, stopped when t ends.
func start(t testing.TB, c redisserver.Config) *Server {
	t.Helper()
	Require(t)
	s, err := redisserver.Start(context.Background(), c)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("redistest: %v", err)
		}
	})
	return &Server{t: t, Server: s}
}

// Kill kills the server (SIGKILL, no shutdown) and waits until it is gone.
func (s *Server) Kill() {
	s.t.Helper()
	if err := s.Server.Kill(); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
}

// Restart starts the server again on the same port, with the same directory
// (a cluster node keeps its identity), after Kill. It waits until the server
// answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.Server.Restart(context.Background()); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
}

// Do sends one command to the server on a new connection and returns the
// reply: a string, int64, nil or []any; an error reply is a ReplyError.
func (s *Server) Do(args ...string) (any, error) {
	return do(s.Addr(), commandTimeout, args...)
}

// Calls returns how many times the server executed command (lower case, as
// INFO commandstats names it: "get", "evalsha", "client|tracking").
func (s *Server) Calls(command string) int64 {
	s.t.Helper()
	reply, err := s.Do("INFO", "commandstats")
	if err != nil {
		s.t.Fatalf("redistest: INFO commandstats: %v", err)
	}
	info, _ := reply.(string)
	stats, ok := infoField(info, "cmdstat_"+command)
	if !ok {
		return 0
	}
	for field := range strings.SplitSeq(stats, ",") {
		if v, ok := strings.CutPrefix(field, "calls="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				s.t.Fatalf("redistest: INFO commandstats: %q", stats)
			}
			return n
		}
	}
	s.t.Fatalf("redistest: INFO commandstats: no calls in %q", stats)
	return 0
}
