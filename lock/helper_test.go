package lock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/msalcache/msalcache/internal/testdir"
)

// Cross-process tests re-execute the test binary with a role in roleEnv;
// TestMain runs the role instead of the tests. Parameters travel in env vars.
const (
	roleEnv  = "MSALCACHE_LOCK_TEST_ROLE"
	pathEnv  = "MSALCACHE_LOCK_TEST_PATH" // the lock file
	dirEnv   = "MSALCACHE_LOCK_TEST_DIR"  // where the counter and marker live
	countEnv = "MSALCACHE_LOCK_TEST_N"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(m.Run())
}

// runRole is the body of a helper process. "ready" on stdout tells the
// parent the role holds what it should; holders release when stdin closes.
func runRole(role string) int {
	path := os.Getenv(pathEnv)
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "helper %s: %v\n", role, err)
		return 1
	}
	switch role {
	case "exit":
		return 0

	case "hold": // this package's lock
		unlock, err := New(path).Lock(context.Background())
		if err != nil {
			return fail(err)
		}
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		if err := unlock(); err != nil {
			return fail(err)
		}
		return 0

	case "hold-own": // only the own lock file, as a process of this package between its two steps
		l := New(path)
		f, err := l.openOwn()
		if err != nil {
			return fail(err)
		}
		if ok, err := tryLockFile(f); !ok || err != nil {
			return fail(fmt.Errorf("locking %s: %v, %v", l.ownPath, ok, err))
		}
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		return 0

	case "excl": // msal-node-extensions: O_EXCL, its pid, no OS lock
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(f, "%d", os.Getpid())
		f.Close()
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		if err := os.Remove(path); err != nil {
			return fail(err)
		}
		return 0

	case "flock": // AzureAD's Go extension: gofrs/flock, "{pid} {argv0}", delete after unlock
		fl := flock.New(path)
		if err := fl.Lock(); err != nil {
			return fail(err)
		}
		// gofrs/flock opens the file read-only; write through another handle.
		if err := os.WriteFile(path, fmt.Appendf(nil, "{%d} {%s}", os.Getpid(), os.Args[0]), 0o600); err != nil && !isWindows() {
			return fail(err)
		}
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		if err := fl.Unlock(); err != nil {
			return fail(err)
		}
		os.Remove(path)
		return 0

	case "try": // one Lock with a short timeout: say "locked" or "busy"
		unlock, err := New(path, WithTimeout(100*time.Millisecond)).Lock(context.Background())
		switch {
		case err == nil:
			fmt.Println("locked")
			if err := unlock(); err != nil {
				return fail(err)
			}
		case errors.Is(err, context.DeadlineExceeded):
			fmt.Println("busy")
		default:
			return fail(err)
		}
		return 0

	case "counter":
		n, _ := strconv.Atoi(os.Getenv(countEnv))
		// The lock is not fair: a process that unlocks and locks again at
		// once usually wins, so under Wine on a busy machine another may
		// wait for several processes' whole runs. This test is about
		// exclusion, not fairness.
		if err := countUp(New(path, WithTimeout(5*time.Minute)), os.Getenv(dirEnv), n, nil); err != nil {
			return fail(err)
		}
		return 0

	case "deleted": // countUp, but unlock errors are counted, not fatal
		n, _ := strconv.Atoi(os.Getenv(countEnv))
		l := New(path, WithTimeout(5*time.Minute))
		var unlockErrs int
		var first error
		err := countUpWith(l, os.Getenv(dirEnv), n, func() { time.Sleep(200 * time.Microsecond) }, func(err error) error {
			if unlockErrs++; first == nil {
				first = err
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
		fmt.Printf("%d unlock errors (first: %v)\n", unlockErrs, first)
		return 0

	case "bench": // wait for a line on stdin, then n Lock+unlock
		n, _ := strconv.Atoi(os.Getenv(countEnv))
		l := New(path)
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
		for range n {
			unlock, err := l.Lock(context.Background())
			if err != nil {
				return fail(err)
			}
			if err := unlock(); err != nil {
				return fail(err)
			}
		}
		return 0
	}
	return fail(fmt.Errorf("unknown role"))
}

// countUp runs n critical sections under l: each creates a marker file with
// O_EXCL (which fails if two holders overlap), increments the counter in
// dir/counter by read-modify-write, calls inside if not nil, and removes the
// marker.
func countUp(l *Lock, dir string, n int, inside func()) error {
	return countUpWith(l, dir, n, inside, func(err error) error { return err })
}

// countUpWith is countUp with unlock's errors passed to unlockErr, which
// returns the error that ends the count, if any.
func countUpWith(l *Lock, dir string, n int, inside func(), unlockErr func(error) error) error {
	counter := filepath.Join(dir, "counter")
	marker := filepath.Join(dir, "marker")
	for i := range n {
		unlock, err := l.Lock(context.Background())
		if err != nil {
			return err
		}
		m, err := os.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			unlock()
			return fmt.Errorf("iteration %d: two holders at once: %w", i, err)
		}
		m.Close()
		b, err := os.ReadFile(counter)
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		c, _ := strconv.Atoi(string(b))
		if err := os.WriteFile(counter, []byte(strconv.Itoa(c+1)), 0o600); err != nil {
			return err
		}
		if inside != nil {
			inside()
		}
		if err := os.Remove(marker); err != nil {
			return err
		}
		if err := unlock(); err != nil {
			if err := unlockErr(err); err != nil {
				return err
			}
		}
	}
	return nil
}

// helper is a running helper process.
type helper struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // the helper's stdout, line by line
	done   chan error
	exited chan struct{}
}

// start runs role in a new process with env (KEY=value pairs).
func start(t testing.TB, role string, env ...string) *helper {
	t.Helper()
	return startReaping(t, nil, role, env...)
}

// startReaping is start, but the process is not reaped (waited for) until
// reap is closed: until then a killed helper stays a zombie on Unix.
func startReaping(t testing.TB, reap <-chan struct{}, role string, env ...string) *helper {
	t.Helper()
	exe, err := os.Executable() // not os.Args[0]: a test may change directory
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 16), done: make(chan error, 1), exited: make(chan struct{})}
	t.Cleanup(func() {
		h.stdin.Close()
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-h.done
		}
	})
	go func() {
		// Read stdout so the helper never blocks on it, then reap it.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case h.lines <- sc.Text():
			default:
			}
		}
		if reap != nil {
			<-reap
		}
		h.done <- cmd.Wait()
		close(h.done)
		close(h.exited)
	}()
	return h
}

// ready waits for the helper's "ready" line.
func (h *helper) ready() {
	h.t.Helper()
	select {
	case s := <-h.lines:
		if strings.TrimSpace(s) != "ready" {
			h.t.Fatalf("helper said %q, want ready", s)
		}
	case <-h.exited:
		h.t.Fatal("helper exited before it was ready")
	case <-time.After(20 * time.Second):
		h.t.Fatal("helper not ready after 20s")
	}
}

// line waits for the helper's next line of output.
func (h *helper) line() string {
	h.t.Helper()
	select {
	case s := <-h.lines:
		return strings.TrimSpace(s)
	case <-h.exited:
		select {
		case s := <-h.lines:
			return strings.TrimSpace(s)
		default:
		}
		h.t.Fatal("helper exited without a line")
	case <-time.After(20 * time.Second):
		h.t.Fatal("no line from the helper after 20s")
	}
	return ""
}

// release closes the helper's stdin and waits for it to exit cleanly.
func (h *helper) release() {
	h.t.Helper()
	h.stdin.Close()
	h.wait()
}

func (h *helper) wait() {
	h.t.Helper()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("helper: %v", err)
		}
	case <-time.After(5 * time.Minute):
		h.t.Fatal("helper did not exit within 5 minutes")
	}
}

func (h *helper) pid() int { return h.cmd.Process.Pid }

// result is the outcome of a Lock call run in the background.
type result struct {
	unlock func() error
	err    error
	at     time.Time
}

// lockAsync calls l.Lock(ctx) in a goroutine.
func lockAsync(ctx context.Context, l *Lock) <-chan result {
	ch := make(chan result, 1)
	go func() {
		u, err := l.Lock(ctx)
		ch <- result{u, err, time.Now()}
	}()
	return ch
}

// mustBlock checks that the Lock call behind ch is still waiting after d.
func mustBlock(t *testing.T, ch <-chan result, d time.Duration) {
	t.Helper()
	select {
	case r := <-ch:
		if r.unlock != nil {
			r.unlock()
		}
		t.Fatalf("Lock returned (err %v) while another holder held the lock", r.err)
	case <-time.After(d):
	}
}

// mustGet waits up to d for the Lock call behind ch and returns its unlock.
func mustGet(t *testing.T, ch <-chan result, d time.Duration) result {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Lock: %v", r.err)
		}
		t.Cleanup(func() { r.unlock() })
		return r
	case <-time.After(d):
		t.Fatalf("Lock did not return within %v", d)
	}
	panic("unreachable")
}

// lockPath returns the path of a lock file in a new temporary directory.
func lockPath(t testing.TB) string {
	return filepath.Join(testdir.New(t), "cache.lockfile")
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	h := start(t, "exit")
	h.wait()
	return h.pid()
}

func isWindows() bool { return filepath.Separator == '\\' }
