package persistence

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/msalcache/msalcache/internal/testdir"
)

// TestCloseReleasesDescriptor: Close releases the descriptors Stat keeps
// open (the file and its directory), and Stat still sees every change afterwards, with nothing kept open.
// It counts the descriptors in /proc/self/fd, which only Linux has.
func TestCloseReleasesDescriptor(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(testdir.New(t), "cache.json")
	fds := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	f := mustNewFile(t, path, Plaintext())
	if _, err := f.Write(ctx, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	before := fds()
	waitKept(t, f)
	v1, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if n := fds(); n != before+2 {
		t.Fatalf("Stat keeps %d descriptors open, want 2", n-before)
	}
	for range 2 {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := fds(); n != before {
		t.Errorf("after Close: %d descriptors more than before Stat", n-before)
	}
	if _, err := mustNewFile(t, path, Plaintext()).Write(ctx, []byte(`{"a":22}`)); err != nil {
		t.Fatal(err)
	}
	if v2, err := f.Stat(); err != nil || v2 == v1 {
		t.Errorf("Stat after Close: %+v, %v; want the new version", v2, err)
	}
	if n := fds(); n != before {
		t.Errorf("Stat after Close kept %d descriptors open", n-before)
	}
}
