// Package testdir gives tests temporary directories that are also removed
// cleanly when the Windows tests run under Wine.
//
// testing.T.TempDir's cleanup calls os.RemoveAll, which fails under Wine
// (see package removeall). On Windows, New empties and removes the directory
// itself with removeall.RemoveAll before TempDir's own cleanup runs. A file that cannot be removed, for example because a handle to it is
// still open, fails the test: on Windows that is a real bug.
package testdir

import (
	"runtime"
	"testing"

	"github.com/msalcache/msalcache/internal/removeall"
)

// New returns a new temporary directory that is removed when t ends.
func New(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if runtime.GOOS == "windows" {
		// Cleanups run last-registered first: this one before TempDir's.
		t.Cleanup(func() {
			if err := removeall.RemoveAll(dir); err != nil {
				t.Errorf("testdir: removing %s: %v (is a handle still open?)", dir, err)
			}
		})
	}
	return dir
}
