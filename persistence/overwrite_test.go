package persistence

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/internal/testdir"
)

// TestOverwrite: Overwrite replaces a file that cannot be read and keeps it
// under its own copy name (0600), with hard links and without; the newest
// keepCopies copies are kept, and Remove takes them all.
func TestOverwrite(t *testing.T) {
	ctx := context.Background()
	for _, links := range []bool{true, false} {
		t.Run(fmt.Sprintf("hard links %v", links), func(t *testing.T) {
			dir := testdir.New(t)
			path := filepath.Join(dir, "cache.json")
			f := mustNewFile(t, path, Plaintext())
			if !links {
				f.link = func(string, string) error { return &os.LinkError{Op: "link", Err: errNoLinks} }
			}
			// No file: nothing to keep.
			if q, _, err := f.Overwrite(ctx, secretJSON); err != nil || q != "" {
				t.Fatalf("Overwrite of no file = %q, %v; want no copy", q, err)
			}
			var copies []string
			for i := range keepCopies + 3 {
				bad := fmt.Appendf(nil, "\x00garbage %d", i)
				if err := os.WriteFile(path, bad, 0o644); err != nil {
					t.Fatal(err)
				}
				q, v, err := f.Overwrite(ctx, secretJSON)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(q, path+".corrupt-") || slices.Contains(copies, q) {
					t.Fatalf("Overwrite kept %q, want a new %s.corrupt-<time>", q, path)
				}
				if got, _ := os.ReadFile(q); !bytes.Equal(got, bad) {
					t.Errorf("copy %d = %q, want %q", i, got, bad)
				}
				if fi, err := os.Stat(q); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
					t.Errorf("copy %d has mode %v, want 0600", i, fi.Mode().Perm())
				}
				if got, rv, err := f.Read(ctx); err != nil || !bytes.Equal(got, secretJSON) || rv != v {
					t.Errorf("Read = %q, %+v, %v; want the new content at %+v", got, rv, err, v)
				}
				copies = append(copies, q)
			}
			want := []string{"cache.json"}
			for _, q := range copies[len(copies)-keepCopies:] {
				want = append(want, filepath.Base(q))
			}
			if got := dirNames(t, dir); !slices.Equal(got, want) {
				t.Errorf("directory holds %v, want %v", got, want)
			}
			if err := f.Remove(); err != nil {
				t.Fatal(err)
			}
			if got := dirNames(t, dir); len(got) != 0 {
				t.Errorf("after Remove the directory holds %v", got)
			}
		})
	}
}

var errNoLinks = fmt.Errorf("this file system has no hard links")

// TestOverwriteFailureKeepsNothing: an Overwrite that fails leaves the file
// where it was and no copy: one whose Seal fails, and one whose new file
// cannot take the path (another program put a directory there meanwhile).
func TestOverwriteFailureKeepsNothing(t *testing.T) {
	ctx := context.Background()
	bad := []byte("\x00garbage")
	t.Run("seal fails", func(t *testing.T) {
		dir := testdir.New(t)
		path := filepath.Join(dir, "cache.json")
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		f := mustNewFile(t, path, failingProtector{Plaintext()})
		if _, _, err := f.Overwrite(ctx, secretJSON); err == nil {
			t.Fatal("Overwrite succeeded with a Protector that cannot seal")
		}
		if got := dirNames(t, dir); !slices.Equal(got, []string{"cache.json"}) {
			t.Errorf("directory holds %v, want the file alone", got)
		}
	})
	t.Run("rename fails", func(t *testing.T) {
		dir := testdir.New(t)
		path := filepath.Join(dir, "cache.json")
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		f := mustNewFile(t, path, Plaintext())
		f.link = func(oldname, newname string) error {
			if err := os.Link(oldname, newname); err != nil {
				return err
			}
			// Another program moves the file and puts a directory there.
			if err := os.Rename(path, filepath.Join(dir, "moved")); err != nil {
				return err
			}
			return os.MkdirAll(filepath.Join(path, "sub"), 0o700)
		}
		if _, _, err := f.Overwrite(ctx, secretJSON); err == nil {
			t.Fatal("Overwrite succeeded over a directory")
		}
		if got := dirNames(t, dir); !slices.Equal(got, []string{"cache.json", "moved"}) {
			t.Errorf("directory holds %v, want no copy and no temporary file", got)
		}
	})
}
