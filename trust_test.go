package msalcache

// Tests of the promises that hold in every interleaving: no argument MSAL's
// interfaces allow panics, the merge base is never lost, Replace never waits
// behind another call's lock wait, a file caught mid-rewrite is not taken for
// an empty cache, Export merges against what is on disk now, a completed
// write is a success, and Close releases what a Cache holds.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache/internal/testdir"
	"github.com/msalcache/msalcache/lock"
)

// valueTarget is a cache object with value receivers whose type is not
// comparable (it holds a slice): MSAL's interfaces allow it.
type valueTarget struct {
	got *[]byte // where Unmarshal stores what it is given
	out []byte  // what Marshal returns
}

func (v valueTarget) Unmarshal(b []byte) error {
	*v.got = append((*v.got)[:0], b...)
	return nil
}

func (v valueTarget) Marshal() ([]byte, error) { return v.out, nil }

// bytesTarget is the smallest such type: a byte slice with value receivers.
type bytesTarget []byte

func (b bytesTarget) Marshal() ([]byte, error) { return b, nil }
func (b bytesTarget) Unmarshal([]byte) error   { return nil }

// noPanic runs f and turns a panic into a test failure.
func noPanic(t *testing.T, what string, f func() error) error {
	t.Helper()
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("%s panicked: %v", what, r)
			}
		}()
		err = f()
	}()
	return err
}

// TestValueReceiverTargets: cache objects that are values of a type that
// is not comparable work: no panic. Without an identity to remember them
// by, what the file holds wins every conflict, and Export says so in its
// error; entries the file lacks are added.
func TestValueReceiverTargets(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	ctx := testCtx(t)
	if err := os.WriteFile(path, []byte(`{"AccessToken":{"theirs":{"secret":"file"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := openCache(t, path, plaintextMode)
	var got []byte
	v := valueTarget{got: &got}
	for i := range 3 {
		got = nil
		if err := noPanic(t, "Replace of a value", func() error { return c.Replace(ctx, v, cache.ReplaceHints{}) }); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(got, []byte(`"file"`)) {
			t.Fatalf("Replace %d handed the value %q", i, got)
		}
	}
	v.out = []byte(`{"AccessToken":{"theirs":{"secret":"stale"},"ours":{"secret":"new"}}}`)
	err := noPanic(t, "Export of a value", func() error { return c.Export(ctx, v, cache.ExportHints{}) })
	if err == nil || !strings.Contains(err.Error(), "1 entries of the exported cache (AccessToken: 1) were not written") {
		t.Fatalf("Export of a value that changed an entry the file holds: %v; want an error saying it was not written", err)
	}
	b := bytesTarget(`{"AccessToken":{"bytes":{"secret":"b"}}}`)
	if err := noPanic(t, "Replace of a []byte", func() error { return c.Replace(ctx, b, cache.ReplaceHints{}) }); err != nil {
		t.Fatal(err)
	}
	if err := noPanic(t, "Export of a []byte", func() error { return c.Export(ctx, b, cache.ExportHints{}) }); err != nil {
		t.Fatal(err)
	}
	at := readCacheJSON(t, c).Sections["AccessToken"]
	if !strings.Contains(at["theirs"], `"file"`) || !strings.Contains(at["ours"], `"new"`) || !strings.Contains(at["bytes"], `"b"`) {
		t.Errorf("file after the values' Exports: %v; want theirs kept, ours and bytes added", at)
	}
}

// hooked is a Cache that runs a function once, just before the next
// Export: what another goroutine or process does between an MSAL client's
// Replace and its Export.
type hooked struct {
	*Cache
	mu           sync.Mutex
	beforeExport func()
}

func (h *hooked) Export(ctx context.Context, m cache.Marshaler, hints cache.ExportHints) error {
	h.mu.Lock()
	f := h.beforeExport
	h.beforeExport = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return h.Cache.Export(ctx, m, hints)
}

func (h *hooked) setBeforeExport(f func()) {
	h.mu.Lock()
	h.beforeExport = f
	h.mu.Unlock()
}

// TestManyClientsKeepMergeBase: 200 MSAL clients share one Cache. Between
// one client's Replace and its Export, another process rotates the refresh
// token and the other clients read the cache. The rotated token survives
// the client's Export: it did not change that token, so the file's stands.
func TestManyClientsKeepMergeBase(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	c := openCache(t, path, plaintextMode)
	h := &hooked{Cache: c}
	x := mustApp(t, s, h)
	mustLogin(t, x, scope("u1"))
	ctx := testCtx(t)
	clients := make([]public.Client, 200)
	readAll := func() {
		for i, app := range clients {
			if a, err := app.Accounts(ctx); err != nil || len(a) != 1 {
				t.Fatalf("client %d: accounts %d, %v", i, len(a), err)
			}
		}
	}
	for i := range clients {
		clients[i] = mustApp(t, s, c)
	}
	readAll()
	h.setBeforeExport(func() {
		runChildren(t, s, path, plaintextMode, "rotate", "")
		readAll()
	})
	mustLogin(t, x, scope("u2")) // a second user: x changes nothing of the first
	rts := readCacheJSON(t, c).Sections["RefreshToken"]
	rotated := 0
	for _, rt := range rts {
		if strings.Contains(rt, `-rotated"`) {
			rotated++
		}
	}
	if len(rts) != 2 || rotated != 1 {
		t.Errorf("refresh tokens after the Export: %d, %d rotated; want 2, the first user's rotated:\n%v", len(rts), rotated, rts)
	}
}

// TestClearBetweenReplaceAndExport: a Clear in this process between an MSAL
// client's Replace and its Export signs out for good: the Export brings
// none of the cleared accounts back.
func TestClearBetweenReplaceAndExport(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	c := openCache(t, path, plaintextMode)
	h := &hooked{Cache: c}
	x := mustApp(t, s, h)
	first := mustLogin(t, x, scope("u1")).Account
	ctx := testCtx(t)
	h.setBeforeExport(func() {
		if err := c.Clear(ctx); err != nil {
			t.Error(err)
		}
	})
	mustLogin(t, x, scope("u2"))
	for i, app := range []public.Client{mustApp(t, s, openCache(t, path, plaintextMode)), x} {
		accounts, err := app.Accounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range accounts {
			if a.HomeAccountID == first.HomeAccountID {
				t.Errorf("client %d: the cleared account %s is back", i, a.PreferredUsername)
			}
		}
	}
}

// TestViewsBounded: 20,000 short-lived cache objects leave a bounded
// number of remembered views, while a live client keeps its merge base.
func TestViewsBounded(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	ctx := testCtx(t)
	c := openCache(t, path, plaintextMode)
	live := &countingTarget{}
	if err := c.Replace(ctx, live, cache.ReplaceHints{}); err != nil {
		t.Fatal(err)
	}
	live.data = []byte(`{"AccessToken":{"live":{"secret":"1"},"gone":{"secret":"1"}}}`)
	if err := c.Export(ctx, live, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 20000 {
		if err := c.Replace(ctx, &countingTarget{}, cache.ReplaceHints{}); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			runtime.GC()
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	c.mu.Lock()
	n := len(c.views.m)
	c.mu.Unlock()
	t.Logf("views after 20,000 short-lived objects: %d; heap in use %+d KB", n, (int64(after.HeapInuse)-int64(before.HeapInuse))/1024)
	if n > 2048 {
		t.Errorf("%d views remembered after 20,000 short-lived cache objects; want them forgotten", n)
	}
	// The live client still merges against its base: another process
	// removes an entry and adds one; the live client adds one of its own.
	// The removal stands and both additions stay.
	other := openCache(t, path, plaintextMode)
	ot := &countingTarget{}
	if err := other.Replace(ctx, ot, cache.ReplaceHints{}); err != nil {
		t.Fatal(err)
	}
	ot.data = []byte(`{"AccessToken":{"live":{"secret":"1"},"other":{"secret":"2"}}}`)
	if err := other.Export(ctx, ot, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	live.data = []byte(`{"AccessToken":{"live":{"secret":"1"},"gone":{"secret":"1"},"mine":{"secret":"3"}}}`)
	if err := c.Export(ctx, live, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	at := readCacheJSON(t, c).Sections["AccessToken"]
	if _, back := at["gone"]; back || len(at) != 3 {
		t.Errorf("after the live client's Export: %v; want live, other and mine", at)
	}
	runtime.KeepAlive(live)
}

// TestReplaceNotBehindLockWait: while one goroutine's Export waits for the
// lock another process holds, Replace calls with a 50 ms ctx on an unchanged
// file return at once, and one that must take the lock gives up with its
// ctx.
func TestReplaceNotBehindLockWait(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	c := openCache(t, path, plaintextMode)
	ctx := testCtx(t)
	synced := &countingTarget{}
	if err := c.Replace(ctx, synced, cache.ReplaceHints{}); err != nil {
		t.Fatal(err)
	}
	synced.data = []byte(`{"AccessToken":{"k":{"secret":"s"}}}`)
	if err := c.Export(ctx, synced, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}

	holder := child(t, s, path, plaintextMode, "hold-lock", "")
	holder.Stdout = nil
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	release, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(out, make([]byte, 6)); err != nil {
		t.Fatalf("the lock holder did not start: %v", err)
	}

	exported := make(chan error, 1)
	go func() {
		ectx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		exported <- c.Export(ectx, &countingTarget{data: []byte(`{"AccessToken":{"k2":{"secret":"s2"}}}`)}, cache.ExportHints{})
	}()
	for i := range 40 {
		rctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		start := time.Now()
		err := c.Replace(rctx, synced, cache.ReplaceHints{})
		d := time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("Replace %d on an unchanged file: %v", i, err)
		}
		if d > time.Second {
			t.Fatalf("Replace %d with a 50ms ctx took %v while an Export waited for the lock", i, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A file that does not decode is read again under the lock: that wait
	// ends with the ctx.
	if err := os.WriteFile(path+".tmp", []byte(`{"AccessToken":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	start := time.Now()
	err = c.Replace(rctx, synced, cache.ReplaceHints{})
	d := time.Since(start)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || d > time.Second {
		t.Errorf("Replace of a torn file with the lock held elsewhere: %v after %v; want the ctx's deadline", err, d)
	}
	select {
	case err := <-exported:
		t.Fatalf("Export returned while the lock was held: %v", err)
	default:
	}
	release.Close()
	if err := holder.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := <-exported; err != nil {
		t.Errorf("Export after the holder let go: %v", err)
	}
}

// inPlaceWriter is another MSAL library's writer (Node, Python): under the
// lock it reads the file, adds an access token, truncates the file and
// writes it again in place, in two halves.
func inPlaceWriter(ctx context.Context, path string, rounds int) error {
	l := lock.New(path + ".lockfile")
	for i := range rounds {
		unlock, err := l.Lock(ctx)
		if err != nil {
			return err
		}
		err = func() error {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			top := map[string]map[string]json.RawMessage{}
			if err := json.Unmarshal(data, &top); err != nil {
				return fmt.Errorf("round %d: %w", i, err)
			}
			if top["AccessToken"] == nil {
				top["AccessToken"] = map[string]json.RawMessage{}
			}
			entry := accessTokenJSON(100000+i, "writer")
			key, value, _ := strings.Cut(entry, ":{")
			top["AccessToken"][strings.Trim(key, `"`)] = json.RawMessage("{" + value)
			data, err = json.Marshal(top)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				return err
			}
			time.Sleep(time.Millisecond) // a slow writer: the file stays empty a while
			half := len(data) / 2
			_, err1 := f.Write(data[:half])
			time.Sleep(time.Millisecond)
			_, err2 := f.Write(data[half:])
			return errors.Join(err1, err2, f.Close())
		}()
		if uerr := unlock(); err == nil {
			err = uerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// TestInPlaceRewriter: while another library rewrites the file in place
// under the lock, in a loop, MSAL clients on msalcache never see an empty
// cache, and no entry of either side is lost.
func TestInPlaceRewriter(t *testing.T) {
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	mustLogin(t, mustApp(t, s, openCache(t, path, plaintextMode)), scope("login"))
	ctx := testCtx(t)
	const rounds, clients, scopes = 150, 3, 15

	var stop atomic.Bool
	writerDone := make(chan error, 1)
	go func() { writerDone <- inPlaceWriter(ctx, path, rounds) }()
	var wg sync.WaitGroup
	var empty, failed atomic.Int64
	for g := range clients {
		wg.Go(func() {
			app := mustApp(t, s, openCache(t, path, plaintextMode))
			for j := 0; j < scopes || !stop.Load(); j++ {
				accounts, err := app.Accounts(ctx)
				if err != nil || len(accounts) != 1 {
					empty.Add(1)
					continue
				}
				if j >= scopes {
					continue // keep reading until the writer is done
				}
				if _, err := app.AcquireTokenSilent(ctx, []string{scope(fmt.Sprintf("g%d-%d", g, j))}, public.WithSilentAccount(accounts[0])); err != nil {
					failed.Add(1)
					t.Logf("client %d, scope %d: %v", g, j, err)
				}
			}
		})
	}
	if err := <-writerDone; err != nil {
		t.Error(err)
	}
	stop.Store(true)
	wg.Wait()
	if n, f := empty.Load(), failed.Load(); n > 0 || f > 0 {
		t.Errorf("while the file was rewritten in place: %d reads found no account, %d silent calls failed", n, f)
	}

	snap := readCacheJSON(t, openCache(t, path, plaintextMode))
	lost := 0
	for i := range rounds {
		key, _, _ := strings.Cut(accessTokenJSON(100000+i, "writer"), ":{")
		if _, ok := snap.Sections["AccessToken"][strings.Trim(key, `"`)]; !ok {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of the in-place writer's %d entries were lost", lost, rounds)
	}
	fresh := mustApp(t, s, openCache(t, path, plaintextMode))
	accounts, err := fresh.Accounts(ctx)
	if err != nil || len(accounts) != 1 {
		t.Fatalf("accounts at the end: %v, %v", accounts, err)
	}
	before := s.Requests().Token
	for g := range clients {
		for j := range scopes {
			if _, err := fresh.AcquireTokenSilent(ctx, []string{scope(fmt.Sprintf("g%d-%d", g, j))}, public.WithSilentAccount(accounts[0])); err != nil {
				t.Error(err)
			}
		}
	}
	if n := s.Requests().Token - before; n != 0 {
		t.Errorf("%d of the MSAL clients' tokens were lost", n)
	}
}

// checkMergeAgainstDiskNow: a sister library rewrites an entry in place
// under the lock with content of the same size, and the file's size, mtime
// and identity stay what they were (one timestamp tick, as on file systems
// with coarse timestamps). The next Export merges against the new content:
// the sister's change survives. chtimes says whether the test may set the
// mtime back itself when the clock ticked between the two writes.
func checkMergeAgainstDiskNow(t *testing.T, dir string, chtimes bool) {
	ctx := testCtx(t)
	for attempt := 0; ; attempt++ {
		path := filepath.Join(dir, fmt.Sprintf("msal%d.cache", attempt))
		c := openCache(t, path, plaintextMode)
		ours := &countingTarget{}
		if err := c.Replace(ctx, ours, cache.ReplaceHints{}); err != nil {
			t.Fatal(err)
		}
		ours.data = []byte(`{"AccessToken":{"k1":{"secret":"ours-1"},"k2":{"secret":"ours-2"}}}`)
		if err := c.Export(ctx, ours, cache.ExportHints{}); err != nil {
			t.Fatal(err)
		}
		sister := lock.New(path + ".lockfile")
		t.Cleanup(func() { sister.Close() }) // before the file system is unmounted
		unlock, err := sister.Lock(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before := statFile(t, path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// Our write stamps the file past the tick it was written in
		// (persistence.File.Write): a rewrite in place keeps the mtime
		// when it lands in the tick the stamp names (the kernel's clock
		// for timestamps lags the wall clock by up to a scheduler tick).
		time.Sleep(time.Until(before.ModTime().Add(20 * time.Millisecond)))
		if err := os.WriteFile(path, bytes.Replace(data, []byte("ours-1"), []byte("sist-1"), 1), 0o600); err != nil {
			t.Fatal(err)
		}
		after := statFile(t, path)
		if !after.ModTime().Equal(before.ModTime()) {
			if !chtimes {
				unlock()
				if attempt < 10 {
					continue // the clock ticked between the writes: again
				}
				t.Fatalf("the mtime changed on every attempt (%v -> %v): not a coarse-timestamp file system", before.ModTime(), after.ModTime())
			}
			if err := os.Chtimes(path, time.Time{}, before.ModTime()); err != nil {
				t.Fatal(err)
			}
		}
		if err := unlock(); err != nil {
			t.Fatal(err)
		}
		if after := statFile(t, path); !os.SameFile(before, after) || after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
			t.Fatal("the sister's rewrite is not stat-equal to the file it replaced")
		}
		ours.data = []byte(`{"AccessToken":{"k1":{"secret":"ours-1"},"k2":{"secret":"ours-3"}}}`)
		if err := c.Export(ctx, ours, cache.ExportHints{}); err != nil {
			t.Fatal(err)
		}
		at := readCacheJSON(t, c).Sections["AccessToken"]
		if !strings.Contains(at["k1"], "sist-1") || !strings.Contains(at["k2"], "ours-3") {
			t.Errorf("after the Export: k1 %s, k2 %s; want the sister's k1 and our k2", at["k1"], at["k2"])
		}
		return
	}
}

// TestMergeAgainstDiskNow runs checkMergeAgainstDiskNow in a temporary
// directory, setting the mtime back to make the rewrite stat-equal.
// TestMergeAgainstDiskNowCoarse (Linux, root) does it on a file system
// with one-second timestamps, where it happens by itself.
func TestMergeAgainstDiskNow(t *testing.T) {
	checkMergeAgainstDiskNow(t, testdir.New(t), true)
}

// deleteLockOnWarning is a slog.Handler that deletes the cache's lock file
// the first time a warning is logged while the lock file exists: another
// program (MSAL Python after its timeout) removing our lock while we hold it.
type deleteLockOnWarning struct {
	slog.Handler
	lockPath string
	deleted  *atomic.Bool
}

func (h deleteLockOnWarning) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn && !h.deleted.Load() {
		if os.Remove(h.lockPath) == nil {
			h.deleted.Store(true)
		}
	}
	return h.Handler.Handle(ctx, r)
}

// TestLockFileDeletedWhileHeld: another program deletes the lock file
// while Export holds it; the write is complete, so Export reports success
// (and, on Unix, logs a warning).
func TestLockFileDeletedWhileHeld(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	if err := os.WriteFile(path, []byte("not a cache"), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	deleted := &atomic.Bool{}
	h := deleteLockOnWarning{Handler: slog.NewTextHandler(&log, nil), lockPath: path + ".lockfile", deleted: deleted}
	c := openCache(t, path, plaintextMode, WithLogger(slog.New(h)))
	ctx := testCtx(t)
	target := &countingTarget{data: []byte(`{"AccessToken":{"k":{"secret":"s"}}}`)}
	if err := c.Export(ctx, target, cache.ExportHints{}); err != nil {
		t.Errorf("Export whose lock file was deleted after it wrote: %v", err)
	}
	if !deleted.Load() {
		t.Fatal("the lock file was not deleted while Export held it")
	}
	if at := readCacheJSON(t, c).Sections["AccessToken"]; len(at) != 1 {
		t.Errorf("the file after Export: %v", at)
	}
	// On Unix the release notices that the file is gone (on Windows it
	// deletes through its own handle, which cannot tell): a warning.
	if runtime.GOOS != "windows" && !strings.Contains(log.String(), path+".lockfile") {
		t.Errorf("no warning naming the lock file:\n%s", log.String())
	}
}

// TestClose: Close is idempotent; every call after it returns an error
// matching fs.ErrClosed, and none panics.
func TestClose(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	c := openCache(t, path, plaintextMode)
	ctx := testCtx(t)
	target := &countingTarget{data: []byte(`{"AccessToken":{"k":{"secret":"s"}}}`)}
	if err := c.Export(ctx, target, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Replace(ctx, target, cache.ReplaceHints{}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := c.Close(); err != nil {
			t.Errorf("Close %d: %v", i+1, err)
		}
	}
	for name, call := range map[string]func() error{
		"Replace": func() error { return c.Replace(ctx, target, cache.ReplaceHints{}) },
		"Export":  func() error { return c.Export(ctx, target, cache.ExportHints{}) },
		"Clear":   func() error { return c.Clear(ctx) },
		"Verify":  func() error { return c.Verify(ctx) },
	} {
		if err := noPanic(t, name+" after Close", call); !errors.Is(err, fs.ErrClosed) {
			t.Errorf("%s after Close: %v; want an error matching fs.ErrClosed", name, err)
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Clear after Close touched the file: %v", err)
	}
}

// TestConcurrentCallsOneCache: goroutines Replace, change and Export their
// own cache objects on one Cache while another clears it, under -race:
// every call returns without error, and each object's export after the
// last Clear is in the file.
func TestConcurrentCallsOneCache(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	c := openCache(t, path, plaintextMode)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	var stop atomic.Bool
	for g := range 4 {
		wg.Go(func() {
			target := &countingTarget{}
			round := func(i int) bool {
				if err := c.Replace(ctx, target, cache.ReplaceHints{}); err != nil {
					t.Error(err)
					return false
				}
				var top map[string]map[string]json.RawMessage
				if err := json.Unmarshal(target.data, &top); err != nil || top == nil {
					top = map[string]map[string]json.RawMessage{}
				}
				if top["AccessToken"] == nil {
					top["AccessToken"] = map[string]json.RawMessage{}
				}
				top["AccessToken"][fmt.Sprintf("g%d", g)] = json.RawMessage(fmt.Sprintf(`{"secret":"%d"}`, i))
				target.data, _ = json.Marshal(top)
				if err := c.Export(ctx, target, cache.ExportHints{}); err != nil {
					t.Error(err)
					return false
				}
				return true
			}
			i := 0
			for ; !stop.Load(); i++ {
				if !round(i) {
					return
				}
			}
			round(i) // after the last Clear
		})
	}
	for range 20 {
		if err := c.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	at := readCacheJSON(t, c).Sections["AccessToken"]
	for g := range 4 {
		if _, ok := at[fmt.Sprintf("g%d", g)]; !ok {
			t.Errorf("goroutine %d's entry is missing after its last Export: %v", g, at)
		}
	}
}

// TestRewriteWithoutLock: a writer that does not take the lock (MSAL
// Python after its own timeout) truncates the file and writes it again in
// place while an Export holds the lock. The Export waits for the file to
// hold a cache again and merges into that: nothing of the writer's is lost.
func TestRewriteWithoutLock(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	ctx := testCtx(t)
	entries := make([]string, 50)
	for i := range entries {
		entries[i] = accessTokenJSON(i, "python")
	}
	if err := os.WriteFile(path, tokensJSON(entries), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	c := openCache(t, path, plaintextMode, WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	ours := &countingTarget{}
	if err := c.Replace(ctx, ours, cache.ReplaceHints{}); err != nil {
		t.Fatal(err)
	}

	// The writer truncates now, and writes its new state once our Export
	// holds the lock and has had the time to read the empty file.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	written := make(chan error, 1)
	go func() {
		defer f.Close()
		for {
			if _, err := os.Stat(path + ".lockfile"); err == nil {
				break
			}
			if ctx.Err() != nil {
				written <- ctx.Err()
				return
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		_, err := f.Write(tokensJSON(append(entries, accessTokenJSON(50, "python"))))
		written <- err
	}()
	ours.data = tokensJSON(append(entries, accessTokenJSON(51, "go")))
	if err := c.Export(ctx, ours, cache.ExportHints{}); err != nil {
		t.Fatal(err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if n := len(readCacheJSON(t, c).Sections["AccessToken"]); n != 52 {
		t.Errorf("after the Export: %d access tokens, want 52 (the writer's 51 and ours)", n)
	}
	if !strings.Contains(log.String(), "does not hold the lock") {
		t.Errorf("no warning about the writer that ignores the lock:\n%s", log.String())
	}
}
