package msalcache

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/msalcache/msalcache/internal/testdir"
)

// quarantined lists the copies of bad cache files kept next to path, oldest
// first.
func quarantined(t testing.TB, path string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var copies []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), filepath.Base(path)+".corrupt") {
			copies = append(copies, filepath.Join(filepath.Dir(path), e.Name()))
		}
	}
	slices.Sort(copies)
	return copies
}

// TestQuarantineCopiesKeptAndBounded: every bad file that is overwritten
// leaves its own copy (0600), the newest few are kept, and Clear removes
// them with the cache.
func TestQuarantineCopiesKeptAndBounded(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	const rounds = 8
	for i := range rounds {
		bad := fmt.Appendf(nil, "\x00bad cache file number %d", i)
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		app := mustApp(t, s, openCache(t, path, plaintextMode))
		mustLogin(t, app, scope(fmt.Sprint("round", i)))
	}
	copies := quarantined(t, path)
	if len(copies) != 5 {
		t.Fatalf("%d copies kept after %d bad files, want the newest 5: %v", len(copies), rounds, copies)
	}
	for i, p := range copies {
		got, err := os.ReadFile(p)
		want := fmt.Appendf(nil, "\x00bad cache file number %d", rounds-len(copies)+i)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("copy %s holds %q (%v), want %q", filepath.Base(p), got, err, want)
		}
		if fi, err := os.Stat(p); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
			t.Errorf("copy %s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	if err := openCache(t, path, plaintextMode).Clear(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if copies := quarantined(t, path); len(copies) != 0 {
		t.Errorf("Clear left the copies of bad files (they hold tokens): %v", copies)
	}
}

// TestOversizedCacheFile: a file over the size limit is not read, the
// warning says why, and the next sign-in writes a new cache (the big file is
// set aside) instead of failing every write.
func TestOversizedCacheFile(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse where the file system allows: no disk is spent.
	if _, err := fh.WriteString(`{"AccessToken":{`); err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(300 << 20); err != nil {
		t.Fatal(err)
	}
	fh.Close()

	var log bytes.Buffer
	c := openCache(t, path, plaintextMode, WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	app := mustApp(t, s, c)
	if accounts, err := app.Accounts(testCtx(t)); err != nil || len(accounts) != 0 {
		t.Fatalf("Accounts on an oversized file = %v, %v; want none and no error", accounts, err)
	}
	if !strings.Contains(log.String(), "too large") || !strings.Contains(log.String(), "limit") {
		t.Errorf("the warning does not say the file is over the size limit: %s", log.String())
	}
	for i := range 2 {
		if _, err := login(testCtx(t), app, scope(fmt.Sprint("after", i))); err != nil {
			t.Fatalf("sign-in %d after an oversized file: %v", i, err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() > 1<<20 {
		t.Fatalf("cache file after sign-in: %v, %v; want a small new cache", fi, err)
	}
	if accounts, err := mustApp(t, s, openCache(t, path, plaintextMode)).Accounts(testCtx(t)); err != nil || len(accounts) != 2 {
		t.Errorf("a new process sees accounts %v, %v; want the two signed in", accounts, err)
	}
	if copies := quarantined(t, path); len(copies) != 1 {
		t.Errorf("the oversized file was not set aside once: %v", copies)
	}
}
