package persistence

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// inMountNamespace runs test again in a child in a mount namespace of its
// own (role "mount-namespace") and fails if it does not pass there; it
// reports whether the caller is that child. Mounts made in the child go
// with its namespace when it ends, however it ends. It needs root: without
// it the test skips, or fails where MSALCACHE_REQUIRE_SERVICES=1 promises
// every service.
func inMountNamespace(t *testing.T, test string) bool {
	t.Helper()
	if os.Getenv(roleEnv) == "mount-namespace" {
		return true
	}
	if os.Geteuid() != 0 {
		msg := "mounting a small file system needs root"
		if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	cmd := helperCommand(context.Background(), t, test, "mount-namespace")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // Go makes its mounts private
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+test)) {
		t.Fatalf("in a mount namespace of its own: %v\n%s", err, out)
	}
	return false
}

// smallTmpfs mounts a tmpfs of size bytes (mode 0700) and unmounts it when
// t ends. Call it only in a mount namespace of the test's own.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestOverwriteFullDisk: on a 1 MiB file system holding a 600 KB file that
// cannot be read, there is no room for a copy of it, yet Overwrite replaces
// it and keeps it: as a hard link, or, where the file system has no hard
// links, by renaming it aside.
func TestOverwriteFullDisk(t *testing.T) {
	if !inMountNamespace(t, "TestOverwriteFullDisk") {
		return
	}
	for _, links := range []bool{true, false} {
		name := map[bool]string{true: "hard links", false: "no hard links"}[links]
		t.Run(name, func(t *testing.T) {
			dir := smallTmpfs(t, "1m")
			path := filepath.Join(dir, "cache.json")
			bad := make([]byte, 600<<10)
			rand.Read(bad)
			bad[0] = 0 // not JSON, not an envelope
			if err := os.WriteFile(path, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			f := mustNewFile(t, path, Plaintext())
			if !links {
				f.link = func(string, string) error { return &os.LinkError{Op: "link", Err: syscall.EPERM} }
			}
			// A copy of the bytes does not fit.
			if _, err := f.copyAside(context.Background()); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("copying the file on the small file system: %v, want ENOSPC", err)
			}
			copyPath, v, err := f.Overwrite(context.Background(), secretJSON)
			if err != nil {
				t.Fatalf("Overwrite on a nearly full disk: %v", err)
			}
			if got, rv, err := f.Read(context.Background()); err != nil || !bytes.Equal(got, secretJSON) || rv != v {
				t.Errorf("Read after Overwrite = %q, %+v, %v; want the new content at %+v", got, rv, err, v)
			}
			checkCopy(t, copyPath, bad)
		})
	}
}

// checkCopy checks that the copy at path holds want, with mode 0600.
func checkCopy(t *testing.T, path string, want []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("the copy: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the copy has mode %v, want 0600", fi.Mode().Perm())
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
		t.Errorf("the copy holds %d bytes (%v), not the %d of the replaced file", len(got), err, len(want))
	}
}
