package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/testdir"
)

// envAsMain makes the test binary run as cli-login itself: the tests run
// the program as separate processes without building it (no go command is
// needed, so this works under Wine too), and the demo's re-execution of
// os.Executable() works the same way.
const envAsMain = "CLI_LOGIN_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(envAsMain) == "1" {
		os.Exit(mainWithSignals(os.Args[1:]))
	}
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// baseEnv is this process's environment without the variables that set
// cli-login's flags, plus the switch that makes the test binary cli-login.
func baseEnv(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(flagEnv, k) || k == envAsMain || k == "GORACE"
	})
	// The race detector sleeps a second before a successful exit by default.
	env = append(env, envAsMain+"=1", "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	return append(env, extra...)
}

// cli runs cli-login as a separate process with the given extra
// environment ("K=V") and arguments.
func cli(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = baseEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("cli-login %s: %v\n%s", strings.Join(args, " "), err, r.stderr)
	}
	t.Logf("cli-login %s: exit %d in %v", strings.Join(args, " "), r.code, r.took.Round(time.Millisecond))
	return r
}

// want fails the test unless r has the exit status code.
func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

// site is a local identity provider and a token cache for one test.
type site struct {
	idp      *fakeidp.Server
	certFile string
	cache    string
	mode     []string // --plaintext, or --keyring-item of the test's own
}

func newSite(t *testing.T, platform bool, opts ...fakeidp.Option) *site {
	t.Helper()
	idp, err := fakeidp.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	dir := testdir.New(t)
	s := &site{idp: idp, certFile: filepath.Join(dir, "idp.pem"), cache: filepath.Join(dir, "cache", "msal.cache")}
	if err := os.WriteFile(s.certFile, idp.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	s.mode = []string{"--plaintext"}
	if platform {
		s.mode = platformFlags(t)
	}
	return s
}

// app returns the flags that point cli-login at the site.
func (s *site) app() []string {
	return append([]string{"--client-id", "0b6d4f1e-6f0a-4c53-9a39-3f2c1d5e7a11", "--authority", s.idp.Authority(),
		"--ca-file", s.certFile, "--cache", s.cache}, s.mode...)
}

func (s *site) args(cmd string, more ...string) []string {
	return append(append([]string{cmd}, s.app()...), more...)
}

// platformFlags selects the platform protection with a keyring item of the
// test's own, skipping (or failing, where the test command promises every
// service) where this machine lacks it.
func platformFlags(t *testing.T) []string {
	t.Helper()
	switch runtime.GOOS {
	case "windows":
		return nil // DPAPI
	case "linux":
		requireSessionBus(t)
		return []string{"--keyring-item", "msalcache-cli-test/" + strings.ReplaceAll(t.Name(), "/", "_") + "-" + randomHex(4)}
	}
	t.Skipf("the platform protection on %s is not exercised by these tests", runtime.GOOS)
	return nil
}

func requireSessionBus(t *testing.T) {
	t.Helper()
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") == "" {
		msg := "no D-Bus session bus: run the tests with scripts/with-keyring.sh (gnome-keyring on a private bus)"
		if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// noSessionBus returns an environment in which no session bus can be
// found, or skips where the per-user bus socket exists (it cannot be
// hidden from a child process).
func noSessionBus(t *testing.T) []string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("the Secret Service is used on Linux only, not on %s", runtime.GOOS)
	}
	if _, err := os.Stat(filepath.Join("/run/user", itoa(os.Getuid()), "bus")); err == nil {
		t.Skip("this user's session bus socket /run/user/UID/bus exists: a process cannot be kept from finding it")
	}
	return []string{"DBUS_SESSION_BUS_ADDRESS=", "XDG_RUNTIME_DIR=" + testdir.New(t)}
}

func itoa(i int) string { return strconv.Itoa(i) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runIn runs cli-login in this process.
func runIn(ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errOut syncBuffer
	code = run(ctx, args, &out, &errOut, func(k string) string { return env[k] })
	return code, out.String(), errOut.String()
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
