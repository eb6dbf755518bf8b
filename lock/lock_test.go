package lock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/msalcache/msalcache/internal/testdir"
)

// TestProcesses: 8 processes × 250 critical sections; the counter they
// increment by read-modify-write is exact and their O_EXCL marker never
// collides.
func TestProcesses(t *testing.T) {
	const procs, n = 8, 250
	path := lockPath(t)
	dir := filepath.Dir(path)
	var hs []*helper
	for range procs {
		hs = append(hs, start(t, "counter", pathEnv+"="+path, dirEnv+"="+dir, countEnv+"="+strconv.Itoa(n)))
	}
	for _, h := range hs {
		h.wait()
	}
	checkCounter(t, dir, procs*n)
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lock file left behind: %v", err)
	}
}

// TestProcessesLockFileDeleted: two processes of this package count up
// while a third party deletes the lock file by name, as MSAL Python does
// when it leaves the lock after going ahead without it (its 5 s timeout):
// the lock file of the holder is gone, and the next process creates a new
// one. The own lock file still keeps the two apart: the O_EXCL marker never
// collides and the counter is exact. The run must see the lock file
// deleted under a holder, or it tests nothing.
func TestProcessesLockFileDeleted(t *testing.T) {
	const procs, n = 2, 200
	path := lockPath(t)
	dir := filepath.Dir(path)
	var stop atomic.Bool
	var deleted atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			if os.Remove(path) == nil {
				deleted.Add(1)
			}
			time.Sleep(rand.N(time.Millisecond))
		}
	})
	var hs []*helper
	for range procs {
		hs = append(hs, start(t, "deleted", pathEnv+"="+path, dirEnv+"="+dir, countEnv+"="+strconv.Itoa(n)))
	}
	var unlockErrs int
	for _, h := range hs {
		h.wait() // then read its line: under Wine it may take minutes
		line := h.line()
		var k int
		fmt.Sscanf(line, "%d unlock errors", &k)
		unlockErrs += k
		t.Logf("helper %d: %s", h.pid(), line)
		h.wait()
	}
	stop.Store(true)
	wg.Wait()
	checkCounter(t, dir, procs*n)
	t.Logf("the third party deleted the lock file %d times; %d unlocks found theirs deleted", deleted.Load(), unlockErrs)
	if unlockErrs == 0 && runtime.GOOS == "windows" {
		// Our Windows lock handle does not share delete access, so no
		// other program can delete the lock file while we hold it (Wine
		// refuses too): what is left to check is the exclusion, done above.
		t.Log("the lock file cannot be deleted while held on Windows: exclusion checked without deletions")
		return
	}
	if unlockErrs == 0 {
		t.Error("no holder found its lock file deleted: the test did not test anything")
	}
}

// TestOwnFileKept: Lock keeps the own lock file open between calls; Close
// closes it, and Lock still works after Close without keeping it. A kept
// descriptor whose file was deleted meanwhile is not trusted: the process
// that holds the new own lock file makes Lock wait.
func TestOwnFileKept(t *testing.T) {
	path := lockPath(t)
	l := New(path)
	lockUnlock := func() {
		t.Helper()
		unlock, err := l.Lock(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := unlock(); err != nil {
			t.Fatal(err)
		}
	}
	lockUnlock()
	kept := l.kept
	if !keepOwn {
		if kept != nil {
			t.Fatal("the own lock file is kept open where it should not be")
		}
	} else if kept == nil {
		t.Fatal("the own lock file is not kept open after unlock")
	}
	lockUnlock()
	if l.kept != kept {
		t.Error("the second Lock did not use the kept descriptor")
	}

	if err := os.Remove(l.ownPath); err != nil {
		t.Fatal(err)
	}
	h := start(t, "hold-own", pathEnv+"="+path)
	h.ready()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if unlock, err := l.Lock(ctx); err == nil {
		unlock()
		t.Fatal("Lock went by the process that holds the new own lock file, through a descriptor of the deleted one")
	} else if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another process of this package") {
		t.Errorf("error %q: want a timeout that says another process of this package holds the lock", err)
	}
	h.release()
	lockUnlock()

	kept = l.kept
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if kept != nil {
		if _, err := kept.f.Stat(); !errors.Is(err, fs.ErrClosed) {
			t.Errorf("the kept descriptor after Close: %v, want it closed", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	lockUnlock()
	if l.kept != nil {
		t.Error("Lock kept a descriptor after Close")
	}
}

// TestGoroutines: the same with 16 goroutines of one process, half of them
// sharing one *Lock; also a plain variable, for the race detector.
func TestGoroutines(t *testing.T) {
	const goroutines, n = 16, 250
	path := lockPath(t)
	dir := filepath.Dir(path)
	shared := New(path)
	var (
		wg    sync.WaitGroup
		plain int // guarded by the lock only
		errs  = make(chan error, goroutines)
	)
	for g := range goroutines {
		l := shared
		if g%2 == 0 {
			l = New(path)
		}
		wg.Go(func() {
			errs <- countUp(l, dir, n, func() { plain++ })
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if plain != goroutines*n {
		t.Errorf("plain counter = %d, want %d", plain, goroutines*n)
	}
	checkCounter(t, dir, goroutines*n)
}

func checkCounter(t *testing.T, dir string, want int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "counter"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := strconv.Atoi(string(b)); got != want {
		t.Errorf("counter = %d, want %d", got, want)
	}
}

// TestKilledHolder: a holder killed with SIGKILL (TerminateProcess on
// Windows) is taken over within a second. The killed process is not reaped
// before the takeover: on Linux it stays a zombie whose pid kill(2) still
// finds, and it must count as dead.
func TestKilledHolder(t *testing.T) {
	path := lockPath(t)
	reap := make(chan struct{})
	h := startReaping(t, reap, "hold", pathEnv+"="+path)
	defer close(reap)
	h.ready()
	ch := lockAsync(context.Background(), New(path))
	mustBlock(t, ch, 200*time.Millisecond)
	killed := time.Now()
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	r := mustGet(t, ch, 5*time.Second)
	if d := r.at.Sub(killed); d > time.Second {
		t.Errorf("took over %v after the kill, want within 1s", d)
	}
	t.Logf("took over %v after the kill", r.at.Sub(killed))
}

// TestStalePID: a leftover file whose pid is dead, in every sister
// library's format, is adopted at once, and deleted on unlock.
func TestStalePID(t *testing.T) {
	pid := deadPID(t)
	for _, format := range []string{
		"%d",                 // msal-node-extensions
		"%d /usr/bin/python", // MSAL Python
		"%d dotnet\n",        // .NET
		"{%d} {/usr/bin/go}", // AzureAD Go extension
	} {
		t.Run(strings.Fields(format)[0], func(t *testing.T) {
			path := lockPath(t)
			writeFile(t, path, fmt.Sprintf(format, pid), time.Now())
			begin := time.Now()
			unlock, err := New(path, WithTimeout(5*time.Second)).Lock(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(begin); d > 500*time.Millisecond {
				t.Errorf("took %v to adopt a dead holder's file", d)
			}
			if got := readPID(t, path); got != os.Getpid() {
				t.Errorf("lock file names pid %d, want ours %d", got, os.Getpid())
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("lock file not deleted on unlock: %v", err)
			}
		})
	}
}

// TestStaleEmpty: an empty file older than a second is adopted at once;
// a fresh one (its creator has not written its pid yet) is waited for.
func TestStaleEmpty(t *testing.T) {
	t.Run("old", func(t *testing.T) {
		path := lockPath(t)
		writeFile(t, path, "", time.Now().Add(-2*time.Second))
		ch := lockAsync(context.Background(), New(path))
		mustGet(t, ch, 500*time.Millisecond)
	})
	t.Run("fresh", func(t *testing.T) {
		path := lockPath(t)
		writeFile(t, path, "", time.Now())
		begin := time.Now()
		ch := lockAsync(context.Background(), New(path))
		mustBlock(t, ch, 500*time.Millisecond)
		r := mustGet(t, ch, 2*time.Second)
		if d := r.at.Sub(begin); d < 900*time.Millisecond {
			t.Errorf("adopted a fresh empty file after %v, want about 1s", d)
		}
	})
}

// TestLiveWithoutOSLock: a file whose pid is alive but that has no OS lock
// is an O_EXCL holder (msal-node-extensions): wait, never take over, and
// get the lock when the holder deletes the file.
func TestLiveWithoutOSLock(t *testing.T) {
	path := lockPath(t)
	h := start(t, "excl", pathEnv+"="+path)
	h.ready()
	ch := lockAsync(context.Background(), New(path))
	mustBlock(t, ch, 300*time.Millisecond)
	released := time.Now()
	h.release()
	r := mustGet(t, ch, 2*time.Second)
	t.Logf("got the lock %v after the O_EXCL holder deleted its file", r.at.Sub(released))
}

// TestFlockHolder: a holder that uses only the OS lock and deletes the file
// after unlocking (AzureAD's Go extension; MSAL Python with portalocker
// does the same) makes us wait; we get the lock when it lets go.
func TestFlockHolder(t *testing.T) {
	path := lockPath(t)
	h := start(t, "flock", pathEnv+"="+path)
	h.ready()
	ch := lockAsync(context.Background(), New(path))
	mustBlock(t, ch, 300*time.Millisecond)
	h.release()
	mustGet(t, ch, 2*time.Second)
}

// TestExcludesOthers: while we hold the lock, an O_EXCL locker
// (msal-node-extensions, MSAL Python without portalocker) finds the file,
// and an OS-lock locker (gofrs/flock, portalocker, .NET on Unix) finds it
// locked: TryLock says false, without an error (an error, such as a sharing
// violation on Windows, makes gofrs/flock's callers fail instead of wait).
func TestExcludesOthers(t *testing.T) {
	path := lockPath(t)
	unlock, err := New(path).Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); !errors.Is(err, fs.ErrExist) {
		if f != nil {
			f.Close()
		}
		t.Errorf("O_EXCL create while held: %v, want it to exist", err)
	}
	fl := flock.New(path)
	ok, err := fl.TryLock()
	if ok {
		fl.Unlock()
		t.Error("gofrs/flock got the lock while we held it")
	}
	if err != nil {
		t.Errorf("gofrs/flock TryLock while held: %v; want false and no error", err)
	}
}

// TestRelativePath: a Lock made with a relative path locks the file in the
// directory that was current when New was called, whatever the current
// directory is when Lock runs, and creates nothing anywhere else: not in the
// new current directory, not in the temporary directory.
func TestRelativePath(t *testing.T) {
	dir := testdir.New(t)
	elsewhere := testdir.New(t)
	// No temporary directory: a file created through it fails to create.
	for _, v := range []string{"TMPDIR", "TMP", "TEMP"} {
		t.Setenv(v, filepath.Join(elsewhere, "no-such-dir"))
	}
	t.Chdir(dir)
	l := New("cache.lockfile")
	t.Chdir(elsewhere)

	unlock, err := l.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "cache.lockfile")
	if got := readPID(t, want); got != os.Getpid() {
		t.Errorf("%s names pid %d, want ours %d", want, got, os.Getpid())
	}
	if l.Path() != want {
		t.Errorf("Path() = %q, want %q", l.Path(), want)
	}
	// Another process locking the absolute path is excluded.
	h := start(t, "try", pathEnv+"="+want)
	if line := h.line(); line != "busy" {
		t.Errorf("another process locking %s while we hold it: %q, want busy", want, line)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, elsewhere} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if d == dir && e.Name() == "cache.lockfile"+ownSuffix {
				continue // kept: nobody deletes it
			}
			t.Errorf("left behind in %s: %s", d, e.Name())
		}
	}
	if _, err := os.Stat(want + ownSuffix); err != nil {
		t.Errorf("the own lock file: %v", err)
	}
}

// TestMissingDir: the directories of the lock file are created, 0700, and
// the lock file and the own lock file are 0600.
func TestMissingDir(t *testing.T) {
	root := testdir.New(t)
	path := filepath.Join(root, "a", "b", "cache.lockfile")
	unlock, err := New(path).Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if runtime.GOOS == "windows" {
		return // no Unix modes
	}
	for _, c := range []struct {
		path string
		want fs.FileMode
	}{{filepath.Join(root, "a"), 0o700}, {filepath.Join(root, "a", "b"), 0o700}, {path, 0o600}, {path + ownSuffix, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("%s: mode %v, want %v", c.path, got, c.want)
		}
	}
}

// TestReadOnlyDir: a lock file that cannot be created is an error at once,
// not a wait until the timeout.
func TestReadOnlyDir(t *testing.T) {
	path := filepath.Join(readOnlyDir(t), "cache.lockfile")
	begin := time.Now()
	unlock, err := New(path, WithTimeout(10*time.Second)).Lock(context.Background())
	if err == nil {
		unlock()
		t.Fatal("Lock succeeded in a read-only directory")
	}
	if d := time.Since(begin); d > time.Second {
		t.Errorf("took %v to fail", d)
	}
	if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q: want a permission error naming the path", err)
	}
	t.Log(err)
}

// readOnlyDir returns a directory where files cannot be created. A mode of
// 0500 does not stop root or Windows, so try other ways (see
// unwritableDirs).
func readOnlyDir(t *testing.T) string {
	dir := testdir.New(t)
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	makeReadOnly(t, dir)
	for _, d := range append([]string{dir}, unwritableDirs...) {
		f, err := os.CreateTemp(d, "probe")
		if err == nil {
			f.Close()
			os.Remove(f.Name())
			continue
		}
		if errors.Is(err, fs.ErrPermission) {
			return d
		}
	}
	t.Fatalf("found no read-only directory: %s is writable (running as root?), and so are %q", dir, unwritableDirs)
	return ""
}

// TestTimeout: the wait is bounded by WithTimeout or ctx, the time waited is
// right, and the error wraps context.DeadlineExceeded and names the holder.
func TestTimeout(t *testing.T) {
	path := lockPath(t)
	h := start(t, "hold", pathEnv+"="+path)
	h.ready()
	holder := fmt.Sprintf("held by pid %d (for ", h.pid())

	// begin is taken before the ctx's deadline or cancel is set up.
	check := func(t *testing.T, begin time.Time, l *Lock, ctx context.Context, want time.Duration, wantErr error) {
		t.Helper()
		unlock, err := l.Lock(ctx)
		if err == nil {
			unlock()
			t.Fatal("Lock succeeded while held")
		}
		waited := time.Since(begin)
		if waited < want || waited > want+time.Second {
			t.Errorf("waited %v, want %v", waited, want)
		}
		if !errors.Is(err, wantErr) {
			t.Errorf("error %q does not wrap %v", err, wantErr)
		}
		if !strings.Contains(err.Error(), holder) || !strings.HasPrefix(err.Error(), "lock: ") {
			t.Errorf("error %q does not say %q", err, holder)
		}
		t.Log(err)
	}
	t.Run("option", func(t *testing.T) {
		check(t, time.Now(), New(path, WithTimeout(300*time.Millisecond)), context.Background(), 300*time.Millisecond, context.DeadlineExceeded)
	})
	t.Run("deadline", func(t *testing.T) {
		begin := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		check(t, begin, New(path, WithTimeout(time.Hour)), ctx, 200*time.Millisecond, context.DeadlineExceeded)
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		begin := time.Now()
		time.AfterFunc(200*time.Millisecond, cancel)
		check(t, begin, New(path), ctx, 200*time.Millisecond, context.Canceled)
	})
}

// TestGoroutineTimeout: a goroutine waiting for another goroutine of this
// process times out too, and says so.
func TestGoroutineTimeout(t *testing.T) {
	path := lockPath(t)
	unlock, err := New(path).Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	_, err = New(path, WithTimeout(100*time.Millisecond)).Lock(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another goroutine") {
		t.Errorf("error %v: want a timeout naming another goroutine", err)
	}
}

// TestUnlockTwice: a second unlock is an error and does not delete the lock
// file of the next holder (msal-node-extensions' double unlock did).
func TestUnlockTwice(t *testing.T) {
	path := lockPath(t)
	l := New(path)
	unlock, err := l.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	unlock2, err := l.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock2()
	if err := unlock(); err == nil {
		t.Error("second unlock returned nil")
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the next holder's lock file is gone: %v", err)
	}
	ch := lockAsync(context.Background(), New(path))
	mustBlock(t, ch, 100*time.Millisecond)
	unlock2()
	mustGet(t, ch, time.Second)
}

func TestParsePID(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"1234", 1234},
		{"1234 /usr/bin/python3 -m az", 1234},
		{"1234 dotnet\n", 1234},
		{"1234\r\n", 1234},
		{"{1234} {/usr/local/bin/app}", 1234},
		{" 1234 app", 1234}, // ours on Windows
		{"1234} app", 1234}, // AzureAD's read from byte 1 on Windows
		{"", 0},
		{"   ", 0},
		{"0", 0},
		{"-1", 0},
		{"12a4", 0},
		{"{1234 app", 0},
		{"99999999999", 0},
		{"2147483647", 2147483647},
		{"2147483648", 0},
		{"app 1234", 0},
	} {
		if got := parsePID([]byte(c.in)); got != c.want {
			t.Errorf("parsePID(%q) = %d, want %d", c.in, got, c.want)
		}
	}
	if got := parsePID(ownerLine()); got != os.Getpid() {
		t.Errorf("parsePID(ownerLine()) = %d, want %d", got, os.Getpid())
	}
}

func FuzzParsePID(f *testing.F) {
	for _, s := range []string{"1234", "{1} {x}", " 77 y\n", "", "}{"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pid := parsePID(b)
		if pid < 0 {
			t.Fatalf("negative pid %d", pid)
		}
		if pid > 0 && !strings.Contains(string(b), strconv.Itoa(pid)) {
			t.Fatalf("pid %d is not in %q", pid, b)
		}
	})
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	h := start(t, "hold", pathEnv+"="+lockPath(t))
	h.ready()
	if !processAlive(h.pid()) {
		t.Error("a running child is not alive")
	}
	if pid := deadPID(t); processAlive(pid) {
		t.Errorf("exited pid %d is alive", pid)
	}
	for _, pid := range []int{0, -1} {
		if processAlive(pid) {
			t.Errorf("pid %d is alive", pid)
		}
	}
}

func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		// Windows: os.Open does not share delete access, and byte 0 is
		// locked: the pid starts at byte 1.
		f, err2 := openExisting(path)
		if err2 != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b = readHeld(f)
	}
	return parsePID(b)
}
