package interop

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testdir"
)

// TestEmptyFileFromNode: msal-node-extensions' FilePersistence.create makes
// an empty cache file when a Node app starts on a new cache. That is an
// empty cache, not a corrupt one: msalcache writes over it without a warning
// and without setting it aside as "<path>.corrupt-<time>".
func TestEmptyFileFromNode(t *testing.T) {
	peer := requireNode(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	nodeDump(t, peer, path) // starts on a new cache: creates the empty file
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Fatalf("after a Node app started on a new cache: %v, %v; want an empty file", fi, err)
	}

	var log bytes.Buffer
	c, err := msalcache.New(path, msalcache.WithPlaintext(),
		msalcache.WithLogger(slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := goWrite(ctx, c, &jsonTarget{}, "g", 0); err != nil {
		t.Fatal(err)
	}
	if log.Len() > 0 {
		t.Errorf("msalcache warned about the empty file Node created:\n%s", log.String())
	}
	if copies, _ := filepath.Glob(path + ".corrupt*"); len(copies) > 0 {
		t.Errorf("msalcache kept the empty file Node created as %v", copies)
	}
	if d := nodeDump(t, peer, path); len(d.Secrets) != 1 || d.Secrets[0] != "go-secret-g-0" {
		t.Errorf("Node loads %v, want msalcache's entry", d.Secrets)
	}
}
