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
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bounds of the waits: generous, since the tests run on loaded machines.
const (
	startTimeout   = 20 * time.Second
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

// A Server is one redis-server process. Its methods may be called from any
// goroutine; Kill and Restart are serialized.
type Server struct {
	t    testing.TB
	port int
	dir  string
	args []string // beyond port, bind and persistence

	mu     sync.Mutex // serializes Kill and Restart
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts a standalone redis-server on a free port of 127.0.0.1 and
// waits until it answers PING. It is stopped when t ends. args are more
// redis-server options, such as "--appendonly", "yes" for a server whose
// data survives Kill and Restart.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	return start(t, t.TempDir(), false, args...)
}

// start launches a server in dir, picking free ports again when another
// process took the one chosen (a race with other tests of the machine).
func start(t testing.TB, dir string, cluster bool, args ...string) *Server {
	t.Helper()
	Require(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	var lastErr error
	for range 5 {
		ports, err := freePorts(2)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s := &Server{t: t, port: ports[0], dir: dir, args: args}
		if cluster {
			s.args = append(s.args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "2000", "--cluster-port", strconv.Itoa(ports[1]))
		}
		if lastErr = s.launch(); lastErr == nil {
			t.Cleanup(s.stop)
			return s
		}
		if !errors.Is(lastErr, errPortInUse) {
			break
		}
	}
	t.Fatalf("redistest: starting redis-server: %v", lastErr)
	return nil
}

var errPortInUse = errors.New("port already in use")

// freePorts returns n ports of 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// launch starts the process and waits until it answers PING.
func (s *Server) launch() error {
	// Later options override earlier ones: s.args may turn persistence on.
	args := append([]string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
	}, s.args...)
	logPath := filepath.Join(s.dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command("redis-server", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	deadline := time.Now().Add(startTimeout)
	for {
		reply, err := do(s.Addr(), time.Second, "PING")
		if err == nil && reply == "PONG" {
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			if strings.Contains(string(log), "Address already in use") {
				return fmt.Errorf("port %d: %w", s.port, errPortInUse)
			}
			return fmt.Errorf("redis-server exited at start; its log:\n%s", tail(log))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("redis-server on port %d did not answer PING within %v (last error %v); its log:\n%s",
				s.port, startTimeout, err, tail(log))
		}
	}
}

func tail(log []byte) string {
	const max = 4000
	if len(log) > max {
		log = log[len(log)-max:]
	}
	return string(log)
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Kill kills the server (SIGKILL, no shutdown) and waits until it is gone.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
}

func (s *Server) kill() error {
	select {
	case <-s.exited:
		return nil
	default:
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
		return nil
	case <-time.After(commandTimeout):
		return fmt.Errorf("redis-server (pid %d) did not exit within %v of SIGKILL", s.cmd.Process.Pid, commandTimeout)
	}
}

// Restart starts the server again on the same port, with the same directory
// (a cluster node keeps its identity), after Kill. It waits until the server
// answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	if err := s.launch(); err != nil {
		s.t.Fatalf("redistest: restarting redis-server on port %d: %v", s.port, err)
	}
}

// stop kills the server at the end of the test.
func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		s.t.Errorf("redistest: %v", err)
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
