// Package testdir gives tests temporary directories that are also removed
// cleanly when the Windows tests run under Wine.
//
// Go 1.26's os.RemoveAll on Windows deletes through
// NtSetInformationFile(FileDispositionInformationEx), which Wine 8.0 answers
// with "Invalid function", so testing.T.TempDir's cleanup fails there. On
// Windows, New empties and removes the directory itself with plain
// DeleteFile/RemoveDirectory calls (os.Remove) before TempDir's own cleanup
// runs. A file that cannot be removed, for example because a handle to it is
// still open, fails the test: on Windows that is a real bug.
package testdir

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// New returns a new temporary directory that is removed when t ends.
func New(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if runtime.GOOS == "windows" {
		// Cleanups run last-registered first: this one before TempDir's.
		t.Cleanup(func() {
			if err := removeTree(dir); err != nil {
				t.Errorf("testdir: removing %s: %v (is a handle still open?)", dir, err)
			}
		})
	}
	return dir
}

// removeTree removes dir and everything in it, children before parents,
// with os.Remove only.
func removeTree(dir string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range slices.Backward(paths) {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}
