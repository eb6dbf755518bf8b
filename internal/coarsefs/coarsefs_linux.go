package coarsefs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envChild marks the child that InNamespace starts.
const envChild = "MSALCACHE_COARSEFS_CHILD"

// Require skips t (or fails it where MSALCACHE_REQUIRE_SERVICES=1 promises
// every service) unless this process can loop-mount a file system.
func Require(t testing.TB) {
	t.Helper()
	var missing string
	if os.Geteuid() != 0 {
		missing = "root (to loop-mount a file system)"
	}
	for _, tool := range []string{"mkfs.ext2", "mount", "umount", "truncate"} {
		if _, err := exec.LookPath(tool); err != nil && missing == "" {
			missing = tool + " (packages e2fsprogs, mount, coreutils)"
		}
	}
	if missing != "" {
		msg := "a coarse-timestamp file system needs " + missing
		if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// InNamespace runs the test named test again, in a child of this test
// binary in a mount namespace of its own, with env added to its
// environment, and fails t if it does not pass there. It reports whether
// the caller is that child (then it does nothing): the child mounts with
// Dir and runs the test's body.
func InNamespace(t *testing.T, test string, env ...string) bool {
	t.Helper()
	if os.Getenv(envChild) == test {
		return true
	}
	Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(append(os.Environ(), envChild+"="+test), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // Go makes its mounts private
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+test)) {
		t.Fatalf("in a mount namespace of its own: %v\n%s", err, out)
	}
	t.Logf("in a mount namespace of its own:\n%s", out)
	return false
}

// Grain is how coarse a file system's timestamps are.
type Grain int

const (
	// Tick: ext2 as mkfs.ext2 makes it (256-byte inodes), which stores
	// nanoseconds but stamps files from the kernel's coarse clock: it
	// advances once per scheduler tick (1 to 10 ms) and lags the wall
	// clock by up to a tick, as on ext4 before Linux 6.13.
	Tick Grain = iota
	// Second: ext2 with 128-byte inodes, which store whole seconds only
	// (like ext3 of old, or ext4 made with small inodes).
	Second
)

func (g Grain) String() string {
	if g == Second {
		return "ext2, 1 s timestamps"
	}
	return "ext2, timestamps from the coarse clock"
}

// Dir mounts a new file system with timestamps of grain g and returns a
// directory on it (0700), unmounted when t ends. Call it only in a mount
// namespace of the test's own.
func Dir(t testing.TB, g Grain) string {
	t.Helper()
	Require(t)
	work := t.TempDir()
	img, dir := filepath.Join(work, "ext2.img"), filepath.Join(work, "mnt")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	run("truncate", "-s", "16M", img)
	mkfs := []string{"-q", "-F", img}
	if g == Second {
		mkfs = []string{"-q", "-F", "-I", "128", img} // 128-byte inodes: timestamps in whole seconds
	}
	run("mkfs.ext2", mkfs...)
	run("mount", "-o", "loop", img, dir)
	t.Cleanup(func() {
		var out []byte
		var err error
		for range 50 {
			if out, err = exec.Command("umount", dir).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("umount %s: %v\n%s", dir, err, out)
		exec.Command("umount", "-l", dir).Run()
	})
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
