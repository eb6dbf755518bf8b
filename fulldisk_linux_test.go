package msalcache

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCorruptFileOnFullDisk: on a 1 MiB file system holding a 600 KB cache
// file that cannot be read, there is no room for a copy of it, but the new
// cache fits: sign-in works, and the unreadable file is kept aside all the
// same (0600, removed by Clear). The test runs again in a child in a
// private mount namespace, which mounts the file system: when the child
// ends, however it ends, the mount goes with its namespace.
func TestCorruptFileOnFullDisk(t *testing.T) {
	if os.Getenv(envInNamespace) != "1" {
		if os.Geteuid() != 0 {
			msg := "mounting a small file system needs root"
			if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCorruptFileOnFullDisk$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), envInNamespace+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // Go makes its mounts private
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestCorruptFileOnFullDisk")) {
			t.Fatalf("in a mount namespace of its own: %v\n%s", err, out)
		}
		return
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	path := filepath.Join(dir, "msal.cache")
	bad := make([]byte, 600<<10)
	rand.Read(bad)
	bad[0] = 0 // neither JSON nor an envelope
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}

	s := startIDP(t)
	app := mustApp(t, s, openCache(t, path, plaintextMode))
	for i := range 2 {
		if _, err := login(testCtx(t), app, scope(fmt.Sprint("full", i))); err != nil {
			t.Fatalf("sign-in %d on a nearly full disk with an unreadable cache file: %v", i, err)
		}
	}
	if accounts, err := mustApp(t, s, openCache(t, path, plaintextMode)).Accounts(testCtx(t)); err != nil || len(accounts) != 2 {
		t.Errorf("a new process sees accounts %v, %v; want the two signed in", accounts, err)
	}
	copies := quarantined(t, path)
	if len(copies) != 1 {
		t.Fatalf("copies of the unreadable file: %v, want one", copies)
	}
	if got, err := os.ReadFile(copies[0]); err != nil || !bytes.Equal(got, bad) {
		t.Errorf("the copy holds %d bytes (%v), not the unreadable file's %d", len(got), err, len(bad))
	}
	if fi, err := os.Stat(copies[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the copy: %v, %v; want mode 0600", fi, err)
	}
	if err := openCache(t, path, plaintextMode).Clear(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if copies := quarantined(t, path); len(copies) != 0 {
		t.Errorf("Clear left the copies of bad files (they hold tokens): %v", copies)
	}
}
