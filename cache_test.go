package msalcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/internal/testdir"
	"github.com/msalcache/msalcache/lock"
	"github.com/msalcache/msalcache/persistence"
)

// TestNoLostUpdates: one login, then six processes at once each acquire
// tokens for ten scopes of their own (each a refresh-token redemption and
// an Export). A fresh client then gets all sixty silently, with no request
// to the identity provider.
func TestNoLostUpdates(t *testing.T) {
	for _, name := range []string{"plaintext", "platform"} {
		t.Run(name, func(t *testing.T) {
			m := plaintextMode
			if name == "platform" {
				m = platformMode(t)
			}
			s := startIDP(t)
			path := filepath.Join(testdir.New(t), "msal.cache")
			mustLogin(t, mustApp(t, s, openCache(t, path, m)), scope("login"))

			procs := []string{"0", "1", "2", "3", "4", "5"}
			runChildren(t, s, path, m, "silent", procs...)
			if got := s.Requests().RefreshTokenGrant; got != 60 {
				t.Errorf("refresh token grants = %d, want 60", got)
			}

			fresh := mustApp(t, s, openCache(t, path, m))
			ctx := testCtx(t)
			accounts, err := fresh.Accounts(ctx)
			if err != nil || len(accounts) != 1 {
				t.Fatalf("accounts = %v, %v; want one", accounts, err)
			}
			before := s.Requests().Token
			for _, p := range procs {
				for j := range 10 {
					sc := scope(fmt.Sprintf("p%s-s%d", p, j))
					if _, err := fresh.AcquireTokenSilent(ctx, []string{sc}, public.WithSilentAccount(accounts[0])); err != nil {
						t.Errorf("%s: %v", sc, err)
					}
				}
			}
			if n := s.Requests().Token - before; n != 0 {
				t.Errorf("a fresh client made %d token requests for tokens the children cached; want 0 (tokens were lost)", n)
			}
		})
	}
}

// TestConcurrentAccountChurn: two processes remove accounts and sign in new
// ones at the same time; every change of each survives.
func TestConcurrentAccountChurn(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	app := mustApp(t, s, openCache(t, path, plaintextMode))
	ctx := testCtx(t)
	homeIDs := map[string]string{}
	for _, u := range []string{"a1", "a2", "b1", "b2", "keep"} {
		//lint:ignore SA1019 the password grant signs test users in without the device code wait
		res, err := app.AcquireTokenByUsernamePassword(ctx, []string{scope("x")}, u+"@contoso.example", "pw")
		if err != nil {
			t.Fatal(err)
		}
		homeIDs[u] = res.Account.HomeAccountID
	}
	runChildren(t, s, path, plaintextMode, "churn",
		"remove:a1@contoso.example,add:a3@contoso.example,remove:a2@contoso.example,add:a4@contoso.example,add:a5@contoso.example",
		"add:b3@contoso.example,remove:b1@contoso.example,add:b4@contoso.example,remove:b2@contoso.example,add:b5@contoso.example")

	fresh := mustApp(t, s, openCache(t, path, plaintextMode))
	accounts, err := fresh.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range accounts {
		got = append(got, strings.TrimSuffix(a.PreferredUsername, "@contoso.example"))
	}
	slices.Sort(got)
	want := []string{"a3", "a4", "a5", "b3", "b4", "b5", "keep"}
	if !slices.Equal(got, want) {
		t.Errorf("accounts after concurrent churn = %v, want %v", got, want)
	}
	// Nothing of a removed account is left behind.
	for name, section := range readCacheJSON(t, openCache(t, path, plaintextMode)).Sections {
		for key, entry := range section {
			for _, gone := range []string{"a1", "a2", "b1", "b2"} {
				if strings.Contains(entry, homeIDs[gone]) {
					t.Errorf("%s entry %s of removed user %s survived", name, key, gone)
				}
			}
		}
	}
}

// countingTarget stands for MSAL's cache object and counts Unmarshal calls.
type countingTarget struct {
	unmarshals atomic.Int64
	data       []byte
}

func (c *countingTarget) Unmarshal(b []byte) error {
	c.unmarshals.Add(1)
	c.data = append(c.data[:0], b...)
	return nil
}

func (c *countingTarget) Marshal() ([]byte, error) { return c.data, nil }

// TestReplaceUnchangedFile: 2000 Replace calls on an unchanged file call
// Unmarshal once; a change by another process is seen at once.
func TestReplaceUnchangedFile(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	writer := openCache(t, path, plaintextMode)
	ctx := testCtx(t)
	w := &countingTarget{data: []byte(`{"AccessToken":{"k":{"secret":"s1"}}}`)}
	if err := writer.Export(ctx, w, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}

	c := openCache(t, path, plaintextMode)
	target := &countingTarget{}
	for range 2000 {
		if err := c.Replace(ctx, target, cache.ReplaceHints{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := target.unmarshals.Load(); n != 1 {
		t.Errorf("Unmarshal called %d times over 2000 Replace calls on an unchanged file, want 1", n)
	}

	// Another writer changes the file: the next Replace must see it.
	w.data = []byte(`{"AccessToken":{"k":{"secret":"s2"}}}`)
	if err := writer.Export(ctx, w, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Replace(ctx, target, cache.ReplaceHints{}); err != nil {
		t.Fatal(err)
	}
	if n := target.unmarshals.Load(); n != 2 || !bytes.Contains(target.data, []byte("s2")) {
		t.Errorf("after another writer's change: %d unmarshals, data %s", n, target.data)
	}

	// A second MSAL cache object on the same Cache gets its own Unmarshal.
	other := &countingTarget{}
	for range 3 {
		if err := c.Replace(ctx, other, cache.ReplaceHints{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := other.unmarshals.Load(); n != 1 {
		t.Errorf("second target: %d unmarshals, want 1", n)
	}
}

// TestReplaceUnchangedThroughMSAL counts the file reads behind 2000 silent
// token calls of a real MSAL client: one.
func TestReplaceUnchangedThroughMSAL(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	mustLogin(t, mustApp(t, s, openCache(t, path, plaintextMode)), scope("a"))

	c := openCache(t, path, plaintextMode)
	app := mustApp(t, s, c)
	ctx := testCtx(t)
	accounts, err := app.Accounts(ctx)
	if err != nil || len(accounts) != 1 {
		t.Fatal(accounts, err)
	}
	first := c.state.snap
	for range 2000 {
		if _, err := app.AcquireTokenSilent(ctx, []string{scope("a")}, public.WithSilentAccount(accounts[0])); err != nil {
			t.Fatal(err)
		}
	}
	if c.state.snap != first {
		t.Error("the cache file was read again although nothing changed")
	}
	if n := s.Requests().Token; n != 1 {
		t.Errorf("token requests = %d, want 1 (the login)", n)
	}
}

// shuffledTarget marshals the same cache with its entries in another order
// each time, as MSAL Go does.
type shuffledTarget struct{ entries []string }

func (s *shuffledTarget) Marshal() ([]byte, error) {
	e := slices.Clone(s.entries)
	rand.Shuffle(len(e), func(i, j int) { e[i], e[j] = e[j], e[i] })
	return []byte(`{"AccessToken":{` + strings.Join(e, ",") + `}}`), nil
}

// TestExportSameContentNoWrite: exporting the same cache in another key
// order writes nothing (the file keeps its inode and mtime), and so does
// MSAL's RemoveAccount of an account that is not there.
func TestExportSameContentNoWrite(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	c := openCache(t, path, plaintextMode)
	ctx := testCtx(t)
	var entries []string
	for i := range 50 {
		entries = append(entries, fmt.Sprintf(`"k%d":{"secret":"s%d","target":"a b","extra":{"x":%d,"y":"z"}}`, i, i, i))
	}
	target := &shuffledTarget{entries: entries}
	if err := c.Export(ctx, target, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	before := statFile(t, path)
	time.Sleep(20 * time.Millisecond) // a write now would show in the mtime
	for range 20 {
		if err := c.Export(ctx, target, cache.ExportHints{}); err != nil {
			t.Fatal(err)
		}
	}
	// A second Cache (another process) that read the file exports it back.
	c2 := openCache(t, path, plaintextMode)
	t2 := &countingTarget{}
	if err := c2.Replace(ctx, t2, cache.ReplaceHints{}); err != nil {
		t.Fatal(err)
	}
	if err := c2.Export(ctx, &shuffledTarget{entries: slices.Clone(entries)}, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	if after := statFile(t, path); !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Errorf("an Export of unchanged content rewrote the file (mtime %v -> %v)", before.ModTime(), after.ModTime())
	}

	// The same through real MSAL: RemoveAccount of an unknown account.
	s := startIDP(t)
	app := mustApp(t, s, c)
	mustLogin(t, app, scope("r"))
	before = statFile(t, path)
	time.Sleep(20 * time.Millisecond)
	if err := app.RemoveAccount(ctx, public.Account{HomeAccountID: "nobody.nowhere", Environment: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if after := statFile(t, path); !os.SameFile(before, after) || !before.ModTime().Equal(after.ModTime()) {
		t.Error("RemoveAccount that changed nothing rewrote the file")
	}
}

func statFile(t testing.TB, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestMergedStateReachesMSAL: after Export merged another process's
// entries, the next Replace hands MSAL the merged state.
func TestMergedStateReachesMSAL(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	ctx := testCtx(t)
	a, b := openCache(t, path, plaintextMode), openCache(t, path, plaintextMode)
	ta, tb := &countingTarget{}, &countingTarget{}
	for _, x := range []struct {
		c *Cache
		t *countingTarget
	}{{a, ta}, {b, tb}} {
		if err := x.c.Replace(ctx, x.t, cache.ReplaceHints{}); err != nil {
			t.Fatal(err)
		}
	}
	ta.data = []byte(`{"AccessToken":{"from-a":{"secret":"1"}}}`)
	tb.data = []byte(`{"AccessToken":{"from-b":{"secret":"2"}}}`)
	if err := a.Export(ctx, ta, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Export(ctx, tb, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Replace(ctx, tb, cache.ReplaceHints{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(tb.data, []byte("from-a")) || !bytes.Contains(tb.data, []byte("from-b")) {
		t.Errorf("after the merge, MSAL holds %s; want both entries", tb.data)
	}
}

// TestCrashWhileWriting: writers killed at random moments, 50 times; the
// cache always loads, and the lock is free within a second (three on
// Windows: see below).
func TestCrashWhileWriting(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	mustLogin(t, mustApp(t, s, openCache(t, path, plaintextMode)), scope("login"))
	rounds := 50
	if testing.Short() {
		rounds = 10
	}
	for i := range rounds {
		cmd := child(t, s, path, plaintextMode, "write-forever", fmt.Sprint("r", i))
		cmd.Stdout = nil
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make([]byte, 6)
		if _, err := io.ReadFull(stdout, ready); err != nil {
			t.Fatalf("round %d: child did not start: %v", i, err)
		}
		time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		cmd.Process.Kill() // SIGKILL; TerminateProcess on Windows
		cmd.Wait()

		var warnings bytes.Buffer
		c := openCache(t, path, plaintextMode, WithLogger(slog.New(slog.NewTextHandler(&warnings, nil))))
		target := &countingTarget{}
		if err := c.Replace(testCtx(t), target, cache.ReplaceHints{}); err != nil {
			t.Fatalf("round %d: the cache does not load after a crash: %v", i, err)
		}
		if c.state.corrupt || warnings.Len() > 0 || !bytes.Contains(target.data, []byte("RefreshToken")) {
			t.Fatalf("round %d: after a crash the cache is damaged: %s %s", i, warnings.String(), target.data)
		}
		// On Windows a writer killed between creating the lock file and
		// writing its pid leaves an empty file, which the protocol gives a
		// second of grace (MSAL Node may be writing its pid): then it is
		// adopted. On Unix the file is linked into place with the pid in it.
		bound := time.Second
		if runtime.GOOS == "windows" {
			bound = 3 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		l := lock.New(path + ".lockfile")
		unlock, err := l.Lock(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: the lock is not free within %v of the crash: %v", i, bound, err)
		}
		unlock()
		l.Close()
	}
}

// TestBadFiles: a corrupt or truncated file is a warning and an empty
// cache, never an error; a copy is kept before it is overwritten. (A file
// sealed by another protection is not corrupt: TestOtherProtectionsFile.)
func TestBadFiles(t *testing.T) {
	valid := []byte(`{"AccessToken":{"k":{"secret":"s"}}}`)
	tests := []struct {
		name string
		data []byte
	}{
		{"garbage", []byte("\x00\x17not a cache at all\xff")},
		{"truncated JSON", valid[:len(valid)/2]},
		{"JSON of another shape", []byte(`[{"AccessToken":1}]`)},
		{"an entry MSAL cannot load", []byte(`{"AccessToken":{"k":"not an object"}}`)},
		{"a section MSAL cannot load", []byte(`{"Account":[1,2,3]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startIDP(t)
			path := filepath.Join(testdir.New(t), "msal.cache")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			c := openCache(t, path, plaintextMode, WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
			app := mustApp(t, s, c)
			accounts, err := app.Accounts(testCtx(t))
			if err != nil || len(accounts) != 0 {
				t.Fatalf("Accounts on a bad file = %v, %v; want none and no error", accounts, err)
			}
			if !strings.Contains(log.String(), "WARN") || !strings.Contains(log.String(), path) {
				t.Errorf("no warning naming the file: %q", log.String())
			}
			mustLogin(t, app, scope("after"))
			copies := quarantined(t, path)
			if len(copies) != 1 {
				t.Fatalf("copies of the bad file: %v; want one", copies)
			}
			kept, err := os.ReadFile(copies[0])
			if err != nil || !bytes.Equal(kept, tt.data) {
				t.Errorf("copy of the bad file: %q, %v; want the original bytes", kept, err)
			}
			if accounts, err := mustApp(t, s, openCache(t, path, plaintextMode)).Accounts(testCtx(t)); err != nil || len(accounts) != 1 {
				t.Errorf("after signing in again: accounts %v, %v", accounts, err)
			}
		})
	}
}

func dpapiBlobLike() []byte {
	return append([]byte{1, 0, 0, 0, 0xd0, 0x8c, 0x9d, 0xdf, 0x01, 0x15, 0xd1, 0x11, 0x8c, 0x7a, 0x00, 0xc0, 0x4f, 0xc2, 0x97, 0xeb}, bytes.Repeat([]byte{7}, 100)...)
}

// TestConcurrentGoroutines: one Cache shared by many goroutines and two
// MSAL clients in one process, under -race.
func TestConcurrentGoroutines(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	c := openCache(t, path, plaintextMode)
	app1, app2 := mustApp(t, s, c), mustApp(t, s, c)
	mustLogin(t, app1, scope("login"))
	ctx := testCtx(t)
	accounts, err := app2.Accounts(ctx)
	if err != nil || len(accounts) != 1 {
		t.Fatal(accounts, err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		app := app1
		if g%2 == 1 {
			app = app2
		}
		wg.Go(func() {
			for j := range 5 {
				if _, err := app.AcquireTokenSilent(ctx, []string{scope(fmt.Sprintf("g%d-%d", g, j))}, public.WithSilentAccount(accounts[0])); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	fresh := mustApp(t, s, openCache(t, path, plaintextMode))
	before := s.Requests().Token
	for g := range 8 {
		for j := range 5 {
			if _, err := fresh.AcquireTokenSilent(ctx, []string{scope(fmt.Sprintf("g%d-%d", g, j))}, public.WithSilentAccount(accounts[0])); err != nil {
				t.Error(err)
			}
		}
	}
	if n := s.Requests().Token - before; n != 0 {
		t.Errorf("%d tokens were lost", n)
	}
}

// TestClear signs out everywhere: another process's client sees no account.
func TestClear(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	c1, c2 := openCache(t, path, plaintextMode), openCache(t, path, plaintextMode)
	app1, app2 := mustApp(t, s, c1), mustApp(t, s, c2)
	mustLogin(t, app1, scope("a"))
	ctx := testCtx(t)
	if a, _ := app2.Accounts(ctx); len(a) != 1 {
		t.Fatalf("second client sees %d accounts, want 1", len(a))
	}
	if err := c1.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cache file after Clear: %v", err)
	}
	for i, app := range []public.Client{app1, app2} {
		if a, err := app.Accounts(ctx); err != nil || len(a) != 0 {
			t.Errorf("client %d after Clear: %d accounts, %v", i+1, len(a), err)
		}
	}
}

// TestContextHonoured: a held lock makes Export wait only as long as ctx,
// or WithLockTimeout when ctx has no deadline; the error names the holder.
func TestContextHonoured(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	c := openCache(t, path, plaintextMode, WithLockTimeout(300*time.Millisecond))
	hold, err := lock.New(path + ".lockfile").Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	target := &countingTarget{data: []byte(`{"AccessToken":{"k":{"secret":"s"}}}`)}
	start := time.Now()
	err = c.Export(context.Background(), target, cache.ExportHints{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), path+".lockfile") ||
		!strings.Contains(err.Error(), "held by") {
		t.Errorf("Export with the lock held: %v; want a deadline error naming the lock file and its holder", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("Export waited %v with WithLockTimeout(300ms)", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := c.Export(ctx, target, cache.ExportHints{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Export with a 100ms ctx: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Export waited %v with a 100ms ctx", d)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed Export created the cache file")
	}
}

// TestNewValidates: bad options fail before any side effect.
func TestNewValidates(t *testing.T) {
	dir := testdir.New(t)
	for _, tt := range []struct {
		name string
		path string
		opts []Option
	}{
		{"empty path", "", []Option{WithPlaintext()}},
		{"zero lock timeout", filepath.Join(dir, "c"), []Option{WithPlaintext(), WithLockTimeout(0)}},
		{"empty keyring item", filepath.Join(dir, "c"), []Option{WithPlaintext(), WithKeyringItem("", "x")}},
		{"nil logger", filepath.Join(dir, "c"), []Option{WithPlaintext(), WithLogger(nil)}},
	} {
		if _, err := New(tt.path, tt.opts...); err == nil {
			t.Errorf("%s: New succeeded", tt.name)
		}
	}
	c, err := New(filepath.Join(dir, "sub", "c"), WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	if c.Protection() != "plaintext" {
		t.Errorf("Protection() = %q", c.Protection())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("New created %v", entries)
	}
}

var _ = persistence.ErrUnavailable

// TestExportErrorReachesCaller: when saving fails after a successful token
// request, MSAL's caller gets the error, saying what failed.
func TestExportErrorReachesCaller(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	app := mustApp(t, s, openCache(t, path, plaintextMode, WithLockTimeout(300*time.Millisecond)))
	res := mustLogin(t, app, scope("a"))
	hold, err := lock.New(path + ".lockfile").Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer hold()
	// No deadline on ctx: WithLockTimeout bounds the wait.
	_, err = app.AcquireTokenSilent(context.Background(), []string{scope("new")}, public.WithSilentAccount(res.Account))
	if err == nil || !errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "msalcache: saving the token cache") || !strings.Contains(err.Error(), "held by") {
		t.Errorf("AcquireTokenSilent with the cache lock held elsewhere: %v; want msalcache's lock timeout", err)
	}
	if n := s.Requests().RefreshTokenGrant; n != 1 {
		t.Errorf("refresh token grants = %d, want 1 (the token request itself succeeded)", n)
	}
}
