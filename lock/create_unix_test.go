//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package lock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/msalcache/msalcache/internal/testdir"
)

// TestLockFileNeverEmpty: the lock file has our pid in it from the moment
// it has its name. An empty lock file could be an O_EXCL holder (MSAL Node)
// that has not written its pid yet, so others wait a second before they
// take it over; a holder killed between creating the file and writing its
// pid would leave exactly that. A reader watching the path during many
// acquisitions must never see the file empty. Where the file is made
// without a name (O_TMPFILE on Linux), no other name ever appears in the
// directory either; the fallback, a private named file, must keep the
// first promise and leave nothing behind.
func TestLockFileNeverEmpty(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		dir := testdir.New(t)
		checkNeverEmpty(t, dir, unnamedWorks(t, dir))
	})
	t.Run("fallback", func(t *testing.T) {
		withoutUnnamed(t)
		checkNeverEmpty(t, testdir.New(t), false)
	})
}

// checkNeverEmpty locks and unlocks a lock file in dir 3000 times while a
// reader watches it; with onlyLockFile, the reader also checks that the
// directory never holds any other name.
func checkNeverEmpty(t *testing.T, dir string, onlyLockFile bool) {
	path := filepath.Join(dir, "cache.lockfile")
	l := New(path)
	var stop atomic.Bool
	var seen, empty, listed, others atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			if b, err := os.ReadFile(path); err == nil {
				seen.Add(1)
				if len(b) == 0 {
					empty.Add(1)
				}
			}
			if !onlyLockFile {
				continue
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			listed.Add(1)
			for _, e := range entries {
				if e.Name() != "cache.lockfile" && e.Name() != "cache.lockfile"+ownSuffix {
					others.Add(1)
				}
			}
		}
	})
	for range 3000 {
		unlock, err := l.Lock(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := unlock(); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if empty.Load() > 0 {
		t.Errorf("the lock file was seen empty %d times (of %d reads that found it)", empty.Load(), seen.Load())
	}
	if seen.Load() == 0 {
		t.Error("the reader never saw the lock file: the test proves nothing")
	}
	if others.Load() > 0 {
		t.Errorf("other files appeared in the lock file's directory %d times (in %d listings)", others.Load(), listed.Load())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "cache.lockfile"+ownSuffix { // kept: nobody deletes it
			t.Errorf("file left behind: %s", e.Name())
		}
	}
}

// TestFallbackExcludes: with the private-file fallback, goroutines still
// exclude each other and the counter is exact.
func TestFallbackExcludes(t *testing.T) {
	withoutUnnamed(t)
	const goroutines, n = 8, 100
	path := lockPath(t)
	dir := filepath.Dir(path)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Go(func() { errs <- countUp(New(path), dir, n, nil) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkCounter(t, dir, goroutines*n)
}

// unnamedWorks reports whether createUnnamed works in dir. On Linux it
// must, unless the file system lacks O_TMPFILE (then the test says so).
func unnamedWorks(t *testing.T, dir string) bool {
	t.Helper()
	f, err := createUnnamed(dir, filepath.Join(dir, "probe"), nil)
	if errors.Is(err, errNoUnnamed) {
		t.Logf("no O_TMPFILE files in %s: testing the fallback only", dir)
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Remove(filepath.Join(dir, "probe")); err != nil {
		t.Fatal(err)
	}
	return true
}

// withoutUnnamed makes createExclusive use its fallback until t ends.
func withoutUnnamed(t *testing.T) {
	noUnnamed = true
	t.Cleanup(func() { noUnnamed = false })
}
