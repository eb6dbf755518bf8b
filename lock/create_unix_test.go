//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package lock

import (
	"context"
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
// acquisitions must never see the file empty.
func TestLockFileNeverEmpty(t *testing.T) {
	dir := testdir.New(t)
	path := filepath.Join(dir, "cache.lockfile")
	l := New(path)
	var stop atomic.Bool
	var seen, empty atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			if b, err := os.ReadFile(path); err == nil {
				seen.Add(1)
				if len(b) == 0 {
					empty.Add(1)
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
	if matches, _ := filepath.Glob(filepath.Join(dir, ".cache.lockfile.new-*")); len(matches) > 0 {
		t.Errorf("private files left behind: %v", matches)
	}
}
