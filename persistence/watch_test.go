package persistence

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/testdir"
)

// TestStatSeesEveryChange: Stat, which on Unix fstats a file it keeps open,
// notices every way the file at the path can change: an atomic replacement
// by another writer, a replacement while the file has another hard link, an
// in-place rewrite of the same size, and a removal.
func TestStatSeesEveryChange(t *testing.T) {
	ctx := context.Background()
	dir := testdir.New(t)
	path := filepath.Join(dir, "cache.json")
	f := mustNewFile(t, path, Plaintext())
	other := mustNewFile(t, path, Plaintext())
	changed := func(what string, change func()) {
		t.Helper()
		waitKept(t, f) // what is checked is the kept file, where there is one
		before, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := f.Stat(); again != before {
			t.Fatalf("%s: Stat changed with nothing done", what)
		}
		change()
		after, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if after == before {
			t.Errorf("%s: Stat did not notice", what)
		}
		if want, _ := statVersion(path); after != want {
			t.Errorf("%s: Stat = %+v, want the path's %+v", what, after, want)
		}
	}
	if _, err := f.Write(ctx, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	changed("another writer's atomic replacement", func() {
		if _, err := other.Write(ctx, []byte(`{"a":2}`)); err != nil {
			t.Fatal(err)
		}
	})
	changed("an in-place rewrite of the same size", func() {
		before, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(`{"a":3}`), 0o600); err != nil {
			t.Fatal(err)
		}
		// A rewrite within one timestamp tick keeps the mtime: Stat cannot
		// see that (Export reads the file under the lock for that reason).
		// Here the writer's clock has moved on by a second.
		if err := os.Chtimes(path, time.Time{}, before.ModTime().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	})
	if runtime.GOOS != "windows" {
		link := filepath.Join(dir, "hardlink")
		if err := os.Link(path, link); err != nil {
			t.Fatal(err)
		}
		changed("a replacement while another hard link exists", func() {
			if _, err := other.Write(ctx, []byte(`{"a":4}`)); err != nil {
				t.Fatal(err)
			}
		})
		os.Remove(link)
	}
	changed("a removal", func() {
		if err := other.Remove(); err != nil {
			t.Fatal(err)
		}
	})
	if v, err := f.Stat(); err != nil || v.Exists() {
		t.Errorf("after the removal: %+v, %v", v, err)
	}
}
