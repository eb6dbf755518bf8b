// Package redisserver runs a throwaway redis-server process on a free port
// of 127.0.0.1: without RDB snapshots, optionally with an append-only file
// so that its data survives Kill and Restart. Tests use it through
// internal/redistest; the load command and the web-app demo use it directly.
//
// On Linux the kernel kills the server when the process that started it
// dies, so that an interrupted program leaves no server behind.
package redisserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Bounds of the waits: generous, since the server may start on a loaded
// machine.
const (
	startTimeout = 30 * time.Second
	exitTimeout  = 10 * time.Second
)

// ErrNotInstalled means that redis-server is not on PATH.
var ErrNotInstalled = errors.New("redisserver: redis-server is not on PATH")

// Config says how to run the server. The zero value is a standalone server
// without persistence in a new temporary directory.
type Config struct {
	// Dir holds the server's log (redis.log) and its files. Empty: a new
	// temporary directory, removed by Stop.
	Dir string
	// AppendOnly turns the append-only file on: the data survives Kill and
	// Restart.
	AppendOnly bool
	// Cluster starts a cluster-enabled node (nodes.conf in Dir, node
	// timeout 2 s) with a second free port for its cluster bus.
	Cluster bool
	// Sentinel, when not empty, starts a Redis Sentinel instead of a
	// server: these lines (such as "sentinel monitor mymaster 127.0.0.1
	// 6379 2") follow the port in a sentinel.conf written in Dir, which
	// the sentinel rewrites as it learns. AppendOnly and Cluster do not
	// apply.
	Sentinel []string
	// Args are more redis-server options; they override the ones above.
	Args []string
}

// A Server is one redis-server process. Its methods may be called from any
// goroutine; Kill, Restart and Stop are serialized.
type Server struct {
	port    int
	dir     string
	tempDir bool // dir is ours: Stop removes it
	args    []string

	mu     sync.Mutex // serializes Kill, Restart and Stop
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts redis-server and waits, bounded, until it answers PING. When
// another process takes the port chosen before the server binds it, Start
// tries again on other ports.
func Start(ctx context.Context, c Config) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, ErrNotInstalled
	}
	dir, tempDir := c.Dir, false
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "redis-"); err != nil {
			return nil, err
		}
		tempDir = true
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var lastErr error
	for range 5 {
		ports, err := freePorts(2)
		if err != nil {
			lastErr = err
			break
		}
		// Later options override earlier ones: c.Args may change any.
		args := []string{"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir}
		if c.Sentinel != nil {
			conf := filepath.Join(dir, "sentinel.conf")
			lines := append([]string{"port " + strconv.Itoa(ports[0]), "bind 127.0.0.1", "dir " + dir}, c.Sentinel...)
			if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
				lastErr = err
				break
			}
			args = []string{conf, "--sentinel"}
		}
		if c.AppendOnly && c.Sentinel == nil {
			args = append(args, "--appendonly", "yes")
		}
		if c.Cluster && c.Sentinel == nil {
			args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "2000", "--cluster-port", strconv.Itoa(ports[1]))
		}
		s := &Server{port: ports[0], dir: dir, tempDir: tempDir, args: append(args, c.Args...)}
		if lastErr = s.launch(ctx); lastErr == nil {
			return s, nil
		}
		if !errors.Is(lastErr, errPortInUse) {
			break
		}
	}
	if tempDir {
		os.RemoveAll(dir)
	}
	return nil, fmt.Errorf("redisserver: starting redis-server: %w", lastErr)
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
func (s *Server) launch(ctx context.Context) error {
	logPath := filepath.Join(s.dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command("redis-server", s.args...)
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

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for {
		err := ping(s.Addr())
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			if strings.Contains(string(log), "Address already in use") {
				return fmt.Errorf("port %d: %w", s.port, errPortInUse)
			}
			return fmt.Errorf("redis-server on port %d exited at start; the end of its log:\n%s", s.port, tail(log))
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("redis-server on port %d: %w (last PING error %v)", s.port, ctx.Err(), err)
		case <-deadline.C:
			s.kill()
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("redis-server on port %d did not answer PING within %v (last error %v); the end of its log:\n%s",
				s.port, startTimeout, err, tail(log))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ping sends PING on a new connection and expects PONG (not an error such
// as LOADING), or NOAUTH from a server started with a password.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
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

// Dir returns the server's directory.
func (s *Server) Dir() string { return s.dir }

// Kill kills the server (SIGKILL: no shutdown, no last write) and waits,
// bounded, until it is gone.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kill()
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
	case <-time.After(exitTimeout):
		return fmt.Errorf("redisserver: redis-server (pid %d) did not exit within %v of SIGKILL", s.cmd.Process.Pid, exitTimeout)
	}
}

// Restart kills the server if it runs, starts it again on the same port
// and directory (it reads its append-only file back; a cluster node keeps
// its identity) and waits, bounded, until it answers PING.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		return err
	}
	if err := s.launch(ctx); err != nil {
		return fmt.Errorf("redisserver: restarting redis-server: %w", err)
	}
	return nil
}

// Stop kills the server and removes its directory if Start made it.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.kill()
	if s.tempDir {
		if rerr := os.RemoveAll(s.dir); err == nil {
			err = rerr
		}
	}
	return err
}
