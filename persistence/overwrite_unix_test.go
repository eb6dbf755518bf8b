//go:build unix

package persistence

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/msalcache/msalcache/internal/testdir"
)

// TestOverwriteNeverLeavesThePathEmpty: a reader without the lock, reading
// while Overwrite replaces bad files, always finds a file (with hard links:
// the old file stays at the path until the new one takes it). Unix only:
// on Windows a rename over a file that a reader holds open is refused
// (Write retries it), so the test's own renames would fail.
func TestOverwriteNeverLeavesThePathEmpty(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(testdir.New(t), "cache.json")
	f := mustNewFile(t, path, Plaintext())
	reader := mustNewFile(t, path, Plaintext())
	if err := os.WriteFile(path, []byte("\x00garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	var missing atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, v, err := reader.ReadRaw(ctx); err != nil || !v.Exists() {
				missing.Add(1)
			}
		}
	}()
	for range 200 {
		if _, _, err := f.Overwrite(ctx, secretJSON); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".next", []byte("\x00garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".next", path); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if n := missing.Load(); n > 0 {
		t.Errorf("a reader found no file at the path %d times while bad files were overwritten", n)
	}
}
