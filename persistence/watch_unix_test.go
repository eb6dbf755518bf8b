//go:build unix

package persistence

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/testdir"
)

// waitKept calls Stat until f keeps the file open, that is, until the file
// and its directory are older than a tick of the file system's clock. A
// file with other hard links is never kept: then it returns at once.
func waitKept(t testing.TB, f *File) {
	t.Helper()
	if fi, err := os.Stat(f.Path()); err == nil && fi.Sys().(*syscall.Stat_t).Nlink > 1 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := f.Stat(); err != nil {
			t.Fatal(err)
		}
		if f.watch.kept.Load() != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Stat did not keep the file open within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStatSeesFileMovedAway: a cache file renamed away (mv, a backup tool, a
// directory swap) keeps its one link, but Stat, which trusts the kept file,
// still notices at once that the path holds another file, or none; an
// ancestor directory swapped is noticed within recheckEvery.
func TestStatSeesFileMovedAway(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// move moves the file at path away and returns where it went.
		move func(t *testing.T, path string) string
		// rewrite: another process then writes a new file at the path.
		rewrite bool
		// within: how long noticing may take.
		within time.Duration
	}{
		{name: "renamed away", move: renameFile},
		{name: "renamed away, then a new file written", move: renameFile, rewrite: true},
		{name: "renamed to another directory, then a new file written", rewrite: true,
			move: func(t *testing.T, path string) string {
				to := filepath.Join(testdir.New(t), "elsewhere")
				mustRename(t, path, to)
				return to
			}},
		{name: "its directory swapped", rewrite: true,
			move: func(t *testing.T, path string) string {
				dir := filepath.Dir(path)
				mustRename(t, dir, dir+".old")
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(dir+".old", filepath.Base(path))
			}},
		{name: "an ancestor directory swapped", rewrite: true, within: recheckEvery + time.Second,
			move: func(t *testing.T, path string) string {
				dir := filepath.Dir(path)
				anc := filepath.Dir(dir)
				mustRename(t, anc, anc+".old")
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(anc+".old", filepath.Base(dir), filepath.Base(path))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(testdir.New(t), "a", "b", "cache.json")
			f := mustNewFile(t, path, Plaintext())
			old := mustWrite(t, f, []byte(`{"a":"old"}`))
			waitKept(t, f)
			if v, err := f.Stat(); err != nil || v != old {
				t.Fatalf("Stat = %+v, %v; want the written %+v", v, err, old)
			}
			moved := tc.move(t, path)
			want := Version{}
			if tc.rewrite {
				want = mustWrite(t, mustNewFile(t, path, Plaintext()), []byte(`{"a":"new"}`))
			}
			deadline := time.Now().Add(tc.within)
			for {
				v, err := f.Stat()
				if err != nil {
					t.Fatal(err)
				}
				if v == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Stat = %+v (the moved file is %+v); want the path's %+v", v, statOf(t, moved), want)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if tc.rewrite {
				if b, _, err := f.Read(ctx); err != nil || string(b) != `{"a":"new"}` {
					t.Errorf("Read = %q, %v", b, err)
				}
				waitKept(t, f) // and the new file is kept in turn
				if v, err := f.Stat(); err != nil || v != want {
					t.Errorf("Stat of the kept new file = %+v, %v; want %+v", v, err, want)
				}
			}
		})
	}
}

func renameFile(t *testing.T, path string) string {
	mustRename(t, path, path+".bak")
	return path + ".bak"
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func statOf(t *testing.T, path string) Version {
	t.Helper()
	v, err := statVersion(path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestStatDoesNotWaitForHungPath: while one Stat hangs in a stat or open
// of the path (a hung NFS or FUSE mount), other Stats, and Close, do not
// wait for it.
func TestStatDoesNotWaitForHungPath(t *testing.T) {
	for _, op := range []string{"stat", "open dir", "open"} {
		t.Run(op, func(t *testing.T) {
			path := filepath.Join(testdir.New(t), "cache.json")
			f := mustNewFile(t, path, Plaintext())
			mustWrite(t, f, []byte(`{"a":1}`))
			waitKept(t, f)                    // the file and its directory are settled,
			f.watch.drop(f.watch.kept.Load()) // and found at the path again by the next Stat

			hung, release := make(chan struct{}), make(chan struct{})
			var first atomic.Bool
			f.watch.pathIO = func(got string) {
				if got == op && first.CompareAndSwap(false, true) {
					close(hung)
					<-release
				}
			}
			done := make(chan error, 1)
			go func() { _, err := f.Stat(); done <- err }()
			select {
			case <-hung:
			case <-time.After(5 * time.Second):
				t.Fatalf("the first Stat never reached %q", op)
			}
			within := func(what string, fn func() error) {
				t.Helper()
				errc := make(chan error, 1)
				go func() { errc <- fn() }()
				select {
				case err := <-errc:
					if err != nil {
						t.Errorf("%s: %v", what, err)
					}
				case <-time.After(2 * time.Second):
					t.Errorf("%s waits for the Stat hung in %q", what, op)
				}
			}
			within("another Stat", func() error { _, err := f.Stat(); return err })
			within("Close", f.Close)
			within("a Stat after Close", func() error { _, err := f.Stat(); return err })
			close(release)
			if err := <-done; err != nil {
				t.Errorf("the hung Stat, released: %v", err)
			}
			if f.watch.kept.Load() != nil {
				t.Error("a file is kept open after Close")
			}
		})
	}
}

// TestStatConcurrentWithWritesAndClose: Stats from many goroutines, while
// the file is replaced, moved away and the File closed, always give the
// Version of a file that was at the path, and leave nothing open (run with
// -race).
func TestStatConcurrentWithWritesAndClose(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(testdir.New(t), "cache.json")
	f := mustNewFile(t, path, Plaintext())
	other := mustNewFile(t, path, Plaintext())
	mustWrite(t, other, []byte(`{"n":0}`))
	waitKept(t, f)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := f.Stat(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 50 {
		if i%10 == 9 {
			os.Rename(path, path+".bak")
		}
		if _, err := other.Write(ctx, []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
		if i == 25 {
			f.Close()
		}
	}
	close(stop)
	wg.Wait()
	if v, err := f.Stat(); err != nil || v != statOf(t, path) {
		t.Errorf("Stat = %+v, %v; want the path's %+v", v, err, statOf(t, path))
	}
	if f.watch.kept.Load() != nil {
		t.Error("a file is kept open after Close")
	}
}
