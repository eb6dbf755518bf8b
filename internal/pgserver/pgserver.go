// Package pgserver runs a throwaway PostgreSQL server on a free port of
// 127.0.0.1, in a new temporary directory: initdb (trust authentication, a
// superuser named app, no fsync), then the server itself with
// pg_stat_statements loaded so that tests can count the statements a
// client sends. Tests use it through internal/pgtest; programs (the load
// command) may use it directly.
//
// PostgreSQL refuses to run as root: when the caller is root, initdb and
// the server run as the postgres user (created by Debian's packages), in a
// directory that user owns. On Linux the kernel kills the server when the
// process that started it dies, so that an interrupted program leaves no
// server behind.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Bounds of the waits: generous, since the server may start on a loaded
// machine.
const (
	startTimeout = 60 * time.Second
	exitTimeout  = 10 * time.Second
)

// User is the superuser that initdb creates; it needs no password.
const User = "app"

// ErrNotInstalled means that the PostgreSQL server programs (initdb,
// postgres) were found neither on PATH nor under /usr/lib/postgresql.
var ErrNotInstalled = errors.New("pgserver: PostgreSQL is not installed (no initdb and postgres on PATH or in /usr/lib/postgresql/*/bin): install the Debian package postgresql")

// Config says how to run the server. The zero value is fine.
type Config struct {
	// Args are more server settings, as "name=value" pairs passed with -c;
	// they override the defaults.
	Args []string
}

// owner is the user the server runs as.
type owner struct{ uid, gid int }

// A Server is one PostgreSQL server (a postmaster and its backends). Its
// methods may be called from any goroutine; Kill, Restart and Stop are
// serialized.
type Server struct {
	bin   string // the directory of initdb and postgres
	dir   string // ours: data/, the socket, postgres.log; removed by Stop
	port  int
	args  []string
	owner *owner // the postgres user when we are root, else nil

	mu     sync.Mutex // serializes Kill, Restart and Stop
	cmd    *exec.Cmd
	exited chan struct{}
}

// BinDir returns the directory holding initdb and postgres, or
// ErrNotInstalled.
func BinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	// Debian and Ubuntu keep them off PATH, one directory per major
	// version: take the newest.
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	slices.SortFunc(found, func(a, b string) int { return majorOf(a) - majorOf(b) })
	for i := len(found) - 1; i >= 0; i-- {
		dir := filepath.Dir(found[i])
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNotInstalled
}

// majorOf returns the version in /usr/lib/postgresql/<version>/bin/postgres.
func majorOf(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// Start creates a database cluster in a new temporary directory, starts
// the server on a free port of 127.0.0.1 and waits, bounded, until it
// accepts a connection. When another process takes the port chosen before
// the server binds it, Start tries again on other ports.
func Start(ctx context.Context, c Config) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	owner, err := runAs()
	if err != nil {
		return nil, err
	}
	// Under the system's temporary directory rather than a test's
	// t.TempDir: when we are root, the postgres user must be able to reach
	// it, and a test's directory sits in a root-only one.
	dir, err := os.MkdirTemp("", "pgserver-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, owner: owner, args: c.Args}
	if err := s.initdb(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			lastErr = err
			break
		}
		s.port = port
		if lastErr = s.launch(ctx); lastErr == nil {
			break
		}
		if !errors.Is(lastErr, errPortInUse) {
			break
		}
	}
	if lastErr == nil {
		lastErr = s.prepare(ctx)
		if lastErr != nil {
			s.kill()
		}
	}
	if lastErr != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgserver: starting PostgreSQL: %w", lastErr)
	}
	return s, nil
}

// runAs returns the credentials of the postgres user when this process is
// root (the server refuses to run as root), nil otherwise.
func runAs() (*owner, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	return lookupPostgres()
}

// initdb creates the cluster in dir/data.
func (s *Server) initdb(ctx context.Context) error {
	if s.owner != nil {
		if err := os.Chown(s.dir, s.owner.uid, s.owner.gid); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "initdb"), "-D", s.dataDir(),
		"-A", "trust", "-U", User, "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C")
	cmd.Dir = s.dir
	cmd.SysProcAttr = s.sysProcAttr()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w:\n%s", err, tail(out))
	}
	return nil
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Server) logPath() string { return filepath.Join(s.dir, "postgres.log") }

var errPortInUse = errors.New("port already in use")

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts the postmaster and waits until it accepts a connection.
func (s *Server) launch(ctx context.Context) error {
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	start, err := logFile.Seek(0, 2)
	if err != nil {
		return err
	}
	args := []string{"-D", s.dataDir(), "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "shared_preload_libraries=pg_stat_statements",
		"-c", "pg_stat_statements.track=all",
	}
	for _, a := range s.args {
		args = append(args, "-c", a)
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = s.sysProcAttr()
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
		err := s.ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			log := s.logSince(start)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("port %d: %w", s.port, errPortInUse)
			}
			return &exitError{port: s.port, log: log}
		case <-ctx.Done():
			s.kill()
			return fmt.Errorf("postgres on port %d: %w (last connection error: %v)", s.port, ctx.Err(), err)
		case <-deadline.C:
			s.kill()
			return fmt.Errorf("postgres on port %d did not accept a connection within %v (last error: %v); the end of its log:\n%s",
				s.port, startTimeout, err, tail([]byte(s.logSince(start))))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// An exitError is a server that exited at start.
type exitError struct {
	port int
	log  string
}

func (e *exitError) Error() string {
	return fmt.Sprintf("postgres on port %d exited at start; the end of its log:\n%s", e.port, tail([]byte(e.log)))
}

// logSince returns what the server logged after offset start.
func (s *Server) logSince(start int64) string {
	b, _ := os.ReadFile(s.logPath())
	if int64(len(b)) < start {
		return string(b)
	}
	return string(b[start:])
}

// ping connects and runs one statement.
func (s *Server) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}

// prepare creates the pg_stat_statements extension, once after initdb.
func (s *Server) prepare(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return fmt.Errorf("creating the pg_stat_statements extension: %w", err)
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

// URL returns the URL of the server's postgres database as the superuser
// app, who needs no password.
func (s *Server) URL() string {
	return "postgres://" + User + "@" + s.Addr() + "/postgres?sslmode=disable"
}

// Dir returns the server's directory (data/, the socket, postgres.log).
func (s *Server) Dir() string { return s.dir }

// Kill kills the server (SIGKILL to the postmaster and, on Linux, to its
// backends: no shutdown, no checkpoint, as in a crash of its host) and
// waits, bounded, until they are gone: no connection is answered after
// Kill returns. Committed data survives: the server replays its
// write-ahead log when it is restarted.
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
	// The backends start sessions of their own, so they are not in the
	// postmaster's process group: stop the postmaster, so that it starts
	// no backend meanwhile, kill its children, then it.
	p := s.cmd.Process
	stop(p)
	kids := children(p.Pid)
	for _, k := range kids {
		killPid(k)
	}
	_ = p.Kill()
	deadline := time.NewTimer(exitTimeout)
	defer deadline.Stop()
	select {
	case <-s.exited:
	case <-deadline.C:
		return fmt.Errorf("pgserver: postgres (pid %d) did not exit within %v of SIGKILL", s.cmd.Process.Pid, exitTimeout)
	}
	for _, k := range kids {
		for alive(k) {
			select {
			case <-deadline.C:
				return fmt.Errorf("pgserver: a backend of postgres (pid %d) did not exit within %v of SIGKILL", k, exitTimeout)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// Restart kills the server if it runs, starts it again on the same port
// and data directory and waits, bounded, until it accepts a connection
// (after replaying its log). While a killed server's backends are still
// exiting (where Kill could not kill them), the new one refuses to start;
// Restart tries again until they are gone.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.kill(); err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.launch(ctx)
		var exit *exitError
		if err == nil {
			return nil
		}
		if !errors.As(err, &exit) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("pgserver: restarting PostgreSQL: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop kills the server and removes its directory.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.kill()
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}
