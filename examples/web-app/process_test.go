//go:build !windows

// The tests that run web-app as separate processes stop them with SIGINT,
// which Windows does not have; they run on Linux.

package main

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// flagEnv are the environment variables that set web-app's flags.
var flagEnv = []string{envClientID, envTenant, envAuthority, envClientSecret, envClientCert, envCAFile,
	envRedirectURL, envAddr, envScopes, envAPIURL, envKey, envStore, envRedis, envCacheTTL, envName,
	envTenants, envInterval, envRounds}

// baseEnv is this process's environment without the variables that set
// web-app's flags, plus the switch that makes the test binary web-app.
func baseEnv(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(flagEnv, k) || k == envAsMain || k == "GORACE"
	})
	// The race detector sleeps a second before a successful exit by default.
	env = append(env, envAsMain+"=1", "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	return append(env, extra...)
}

// proc is web-app running as a separate process.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{}
	err            error
}

// start runs web-app as a separate process, with env added to (and
// overriding) this process's environment; the test's cleanup stops it
// (SIGINT, then a kill after ten seconds) if it is still running.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(os.Args[0], args...), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = baseEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop asks the process to stop and waits for it; it returns its exit status.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code()
	default:
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("web-app %s did not stop within 10 s of SIGINT", strings.Join(p.cmd.Args[1:], " "))
	}
	return p.code()
}

// wait waits up to d for the process to exit and returns its exit status.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code()
	case <-time.After(d):
		t.Fatalf("web-app %s still running after %v\nstdout:\n%s\nstderr:\n%s", strings.Join(p.cmd.Args[1:], " "), d, p.stdout, p.stderr)
		return -1
	}
}

func (p *proc) code() int {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

// waitFor polls cond every 20 ms until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
