package persistence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/testdir"
)

// protectors returns the protectors that need no OS service, by name.
func protectors() map[string]func() Protector {
	return map[string]func() Protector{
		"plaintext": Plaintext,
		"envelope":  func() Protector { return memKeyring(newMemStore()) },
	}
}

func TestFileRoundTrip(t *testing.T) {
	for name, newP := range protectors() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(testdir.New(t), "sub", "dir", "cache.json")
			f := mustNewFile(t, path, newP())
			if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatal("NewFile created something")
			}
			v := mustWrite(t, f, secretJSON)
			if !v.Exists() || v.Size() == 0 {
				t.Fatalf("Write returned %+v", v)
			}
			got, rv, fm, err := f.ReadFormat(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, secretJSON) {
				t.Fatalf("Read = %q", got)
			}
			if rv != v {
				t.Errorf("Read's Version %+v differs from Write's %+v", rv, v)
			}
			if sv, err := f.Stat(); err != nil || sv != v {
				t.Errorf("Stat = %+v, %v; want Write's %+v", sv, err, v)
			}
			if fm != f.Format() {
				t.Errorf("Read found format %q, Write makes %q", fm, f.Format())
			}
			raw, _ := os.ReadFile(path)
			if name != "plaintext" && bytes.Contains(raw, []byte("a-very-secret")) {
				t.Error("the file holds the plaintext")
			}
			if got := dirNames(t, filepath.Dir(path)); !slices.Equal(got, []string{"cache.json"}) {
				t.Errorf("directory holds %v, want only the cache file", got)
			}
		})
	}
}

func TestFileMissing(t *testing.T) {
	f := mustNewFile(t, filepath.Join(testdir.New(t), "cache.json"), Plaintext())
	if v, err := f.Stat(); err != nil || v != (Version{}) || v.Exists() {
		t.Errorf("Stat of a missing file = %+v, %v", v, err)
	}
	b, v, err := f.Read(context.Background())
	if b != nil || v != (Version{}) || err != nil {
		t.Errorf("Read of a missing file = %q, %+v, %v", b, v, err)
	}
	if err := f.Remove(); err != nil {
		t.Errorf("Remove of a missing file: %v", err)
	}
	if _, err := f.Quarantine(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Quarantine of a missing file = %v, want ErrNotExist", err)
	}
}

func TestFileRemove(t *testing.T) {
	f := mustNewFile(t, filepath.Join(testdir.New(t), "cache.json"), Plaintext())
	mustWrite(t, f, secretJSON)
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Stat(); v.Exists() {
		t.Fatal("file still exists")
	}
}

// Every Write is noticed by Stat, even with the same bytes written in a
// tight loop (same size, possibly the same clock tick).
func TestFileVersionChangesOnEveryWrite(t *testing.T) {
	for name, newP := range protectors() {
		t.Run(name, func(t *testing.T) {
			f := mustNewFile(t, filepath.Join(testdir.New(t), "cache.json"), newP())
			seen := map[Version]int{}
			for i := range 50 {
				v := mustWrite(t, f, secretJSON)
				if j, ok := seen[v]; ok {
					t.Fatalf("write %d has the Version of write %d: %+v", i, j, v)
				}
				seen[v] = i
				if sv, _ := f.Stat(); sv != v {
					t.Fatalf("Stat after write %d = %+v, want %+v", i, sv, v)
				}
			}
		})
	}
}

// TestWriteStampPastReaders: checkStampPastReaders where the tests run.
func TestWriteStampPastReaders(t *testing.T) {
	checkStampPastReaders(t, testdir.New(t), false)
}

// checkStampPastReaders: a sister library rewrites the file in place and
// reads the wall clock right after (its last sync); Write follows at once,
// 100 times. Each time the new file's mtime is later than that reading, as
// MSAL Python's reload check compares them (mtime > time.time()), and in a
// later millisecond, as MSAL Node's does (mtime in ms > Date.now()):
// otherwise they skip the reload and their next save drops this write.
// The stamp does not hide changes from Stat: a rewrite in place of the same
// size right after Write gets another Version (on a file system that keeps
// whole seconds, a rewrite in the second the stamp names would not, as a
// rewrite in the second of the write would not without the stamp; that
// part is checked unless wholeSeconds).
func checkStampPastReaders(t *testing.T, dir string, wholeSeconds bool) {
	t.Helper()
	path := filepath.Join(dir, "cache.json")
	f := mustNewFile(t, path, Plaintext())
	missed, ahead := 0, time.Duration(0)
	for i := range 100 {
		if err := os.WriteFile(path, []byte(`{"AccessToken":{}}`), 0o600); err != nil { // in place, as Python saves
			t.Fatal(err)
		}
		lastSync := time.Now()
		v := mustWrite(t, f, secretJSON)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		mtime := fi.ModTime()
		if !wholeSeconds {
			same := bytes.Replace(secretJSON, []byte("secret"), []byte("SECRET"), 1)
			if err := os.WriteFile(path, same, 0o600); err != nil {
				t.Fatal(err)
			}
			if sv, err := f.Stat(); err != nil || sv == v {
				t.Fatalf("write %d: a rewrite in place of the same size right after Write keeps its Version (%v)", i, err)
			}
		}
		if !mtime.After(lastSync) || mtime.UnixMilli() <= lastSync.UnixMilli() {
			if missed == 0 {
				t.Errorf("write %d: the new file's mtime %s is not past the reader's clock reading %s taken before the write", i, mtime.Format(time.RFC3339Nano), lastSync.Format(time.RFC3339Nano))
			}
			missed++
		}
		ahead = max(ahead, time.Until(mtime))
	}
	if missed > 0 {
		t.Errorf("%d of 100 writes carry an mtime a reader that synced before them takes for older than its sync", missed)
	}
	t.Logf("the mtime lay at most %v ahead of the clock right after the write", ahead)
}

// A file written by the plaintext fallback is read by the encrypted
// protection and rewritten encrypted: the user stays signed in.
func TestFileFormatUpgrade(t *testing.T) {
	path := filepath.Join(testdir.New(t), "cache.json")
	mustWrite(t, mustNewFile(t, path, Plaintext()), secretJSON)

	f := mustNewFile(t, path, memKeyring(newMemStore()))
	got, _, fm, err := f.ReadFormat(context.Background())
	if err != nil {
		t.Fatalf("reading a plaintext file with the envelope protection: %v", err)
	}
	if fm != FormatPlaintext || f.Format() != FormatEnvelope {
		t.Errorf("format %q, Format() %q", fm, f.Format())
	}
	if !bytes.Equal(got, secretJSON) {
		t.Fatalf("Read = %q", got)
	}
	mustWrite(t, f, got)
	raw, _ := os.ReadFile(path)
	if DetectFormat(raw) != FormatEnvelope || bytes.Contains(raw, []byte("a-very-secret")) {
		t.Fatal("the file was not rewritten encrypted")
	}
	if got, _, fm, err := f.ReadFormat(context.Background()); err != nil || fm != FormatEnvelope || !bytes.Equal(got, secretJSON) {
		t.Fatalf("after the upgrade: %q, %q, %v", got, fm, err)
	}

	// The other way round is refused: the plaintext protection cannot open an
	// envelope, and says what the file is. The file is not corrupt: a
	// process with the keyring reads it, so it must not be overwritten.
	_, v, fm, err := mustNewFile(t, path, Plaintext()).ReadFormat(context.Background())
	wantErrIs(t, err, ErrUnavailable)
	if errors.Is(err, ErrCorrupt) {
		t.Errorf("an envelope read without the keyring is called corrupt: %v", err)
	}
	if !strings.Contains(err.Error(), "envelope") || fm != FormatEnvelope || !v.Exists() {
		t.Errorf("error %q, format %q, version %+v", err, fm, v)
	}
}

// TestFileEmpty: an empty file, as MSAL Node and Python create before their
// first write, is an empty cache, not a corrupt one, whatever the protection.
func TestFileEmpty(t *testing.T) {
	for name, newP := range protectors() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(testdir.New(t), "cache.json")
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			b, v, fm, err := mustNewFile(t, path, newP()).ReadFormat(context.Background())
			if err != nil || len(b) != 0 || !v.Exists() || fm != FormatNone {
				t.Errorf("ReadFormat of an empty file = %q, %+v, %q, %v; want empty, its Version, FormatNone, nil", b, v, fm, err)
			}
		})
	}
}

func TestFileCorrupt(t *testing.T) {
	dpapiBlob := append(bytes.Clone(dpapiPrefix), make([]byte, 100)...)
	tests := []struct {
		name     string
		content  []byte
		format   Format
		mentions string
	}{
		{"garbage", []byte("\x00\x01garbage"), FormatUnknown, "unrecognized"},
		{"truncated JSON", secretJSON[:20], FormatPlaintext, "JSON"},
		{"JSON with trailing garbage", append(bytes.Clone(secretJSON), "}}"...), FormatPlaintext, "JSON"},
		{"truncated envelope", []byte("MSALCENV\x01abc"), FormatEnvelope, "truncated"},
		{"DPAPI blob", dpapiBlob, FormatDPAPI, "DPAPI"},
	}
	for _, tt := range tests {
		for name, newP := range protectors() {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				p := newP()
				if tt.name == "truncated envelope" && name != "envelope" {
					tt.mentions = "envelope"
				}
				path := filepath.Join(testdir.New(t), "cache.json")
				if err := os.WriteFile(path, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
				f := mustNewFile(t, path, p)
				b, v, fm, err := f.ReadFormat(context.Background())
				if tt.format != FormatUnknown && tt.format != FormatPlaintext && tt.format != formatOf(p) {
					// Sealed by another protection: not corrupt, unavailable here.
					wantErrIs(t, err, ErrUnavailable)
				} else {
					wantErrIs(t, err, ErrCorrupt)
				}
				if b != nil || !v.Exists() || fm != tt.format {
					t.Errorf("ReadFormat = %q, %+v, %q; want nil, the file's Version, %q", b, v, fm, tt.format)
				}
				if !strings.Contains(err.Error(), tt.mentions) {
					t.Errorf("error %q does not mention %q", err, tt.mentions)
				}
				if sv, _ := f.Stat(); sv != v {
					t.Errorf("Version of the corrupt file %+v differs from Stat's %+v", v, sv)
				}
			})
		}
	}
}

func TestFileReadsBOMAndSpace(t *testing.T) {
	path := filepath.Join(testdir.New(t), "cache.json")
	content := append([]byte("\xef\xbb\xbf \n"), secretJSON...)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	got, _, err := mustNewFile(t, path, memKeyring(newMemStore())).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got, secretJSON) || bytes.HasPrefix(got, []byte("\xef")) {
		t.Errorf("Read = %q", got)
	}
}

func TestFileQuarantine(t *testing.T) {
	dir := testdir.New(t)
	path := filepath.Join(dir, "cache.json")
	f := mustNewFile(t, path, Plaintext())
	var copies []string
	for i := range keepCopies + 3 {
		bad := fmt.Appendf(nil, "\x00garbage %d", i)
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		q, err := f.Quarantine()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(q, path+".corrupt-") || slices.Contains(copies, q) {
			t.Fatalf("Quarantine = %q, want a new %s.corrupt-<time>", q, path)
		}
		if got, _ := os.ReadFile(q); !bytes.Equal(got, bad) {
			t.Errorf("copy %d = %q", i, got)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, bad) {
			t.Error("Quarantine changed the cache file")
		}
		copies = append(copies, q)
	}
	// The newest keepCopies are kept, the older ones removed.
	want := []string{"cache.json"}
	for _, q := range copies[len(copies)-keepCopies:] {
		want = append(want, filepath.Base(q))
	}
	if got := dirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("directory holds %v, want %v", got, want)
	}
	// Remove takes the copies (and an earlier version's single copy) too.
	if err := os.WriteFile(path+".corrupt", []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("after Remove the directory holds %v", got)
	}
}

// TestFileQuarantineOversized: a file over the size limit is moved aside,
// not copied, and a clear error says why it is not read.
func TestFileQuarantineOversized(t *testing.T) {
	dir := testdir.New(t)
	path := filepath.Join(dir, "cache.json")
	if err := os.WriteFile(path, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, maxFileSize+1); err != nil {
		t.Fatal(err)
	}
	f := mustNewFile(t, path, Plaintext())
	_, _, err := f.Read(context.Background())
	wantErrIs(t, err, ErrCorrupt)
	if !strings.Contains(err.Error(), "too large") || !strings.Contains(err.Error(), "limit") {
		t.Errorf("Read error %q does not say the file is over the limit", err)
	}
	q, err := f.Quarantine()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the oversized file is still in place: %v", err)
	}
	fi, err := os.Stat(q)
	if err != nil || fi.Size() != maxFileSize+1 {
		t.Fatalf("the oversized file was not moved to %s: %v", q, err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", q, fi.Mode().Perm())
	}
	mustWrite(t, f, secretJSON)
	if got, _, err := f.Read(context.Background()); err != nil || !bytes.Equal(got, secretJSON) {
		t.Errorf("Read after the write = %q, %v", got, err)
	}
}

// failingProtector fails to seal.
type failingProtector struct{ Protector }

func (failingProtector) Seal(context.Context, []byte) ([]byte, error) {
	return nil, fmt.Errorf("%w: test", ErrUnavailable)
}

func TestFileWriteFailureLeavesNothing(t *testing.T) {
	dir := testdir.New(t)
	path := filepath.Join(dir, "cache.json")
	f := mustNewFile(t, path, Plaintext())
	mustWrite(t, f, []byte(`{"old":1}`))

	_, err := mustNewFile(t, path, failingProtector{Plaintext()}).Write(context.Background(), secretJSON)
	wantErrIs(t, err, ErrUnavailable)
	if got, _ := os.ReadFile(path); string(got) != `{"old":1}` {
		t.Errorf("a failed Seal changed the file: %q", got)
	}

	// The rename fails: the path became a non-empty directory.
	path2 := filepath.Join(dir, "cache2.json")
	f2 := mustNewFile(t, path2, Plaintext())
	if err := os.MkdirAll(filepath.Join(path2, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := f2.Write(context.Background(), secretJSON); err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"cache.json", "cache2.json"}) {
		t.Errorf("after failed writes the directory holds %v; temp files must be removed", got)
	}
}

func TestFileVerify(t *testing.T) {
	for name, newP := range protectors() {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(testdir.New(t), "new")
			f := mustNewFile(t, filepath.Join(dir, "cache.json"), newP())
			if err := f.Verify(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := dirNames(t, dir); len(got) != 0 {
				t.Errorf("Verify left %v behind", got)
			}
			mustWrite(t, f, secretJSON)
			v, _ := f.Stat()
			if err := f.Verify(context.Background()); err != nil {
				t.Fatal(err)
			}
			if v2, _ := f.Stat(); v2 != v {
				t.Error("Verify touched the cache file")
			}
		})
	}
}

func TestFileVerifyProbeFails(t *testing.T) {
	store := newMemStore()
	store.err = errors.New("failed to unlock correct collection")
	err := mustNewFile(t, filepath.Join(testdir.New(t), "c.json"), memKeyring(store)).Verify(context.Background())
	wantErrIs(t, err, ErrUnavailable)
	if !strings.Contains(err.Error(), "probe") {
		t.Errorf("error %q does not say which step failed", err)
	}
}

func TestNewFile(t *testing.T) {
	if _, err := NewFile("", Plaintext()); err == nil {
		t.Error("NewFile accepted an empty path")
	}
	if _, err := NewFile("x.json", nil); err == nil {
		t.Error("NewFile accepted a nil Protector")
	}
	dir := testdir.New(t)
	t.Chdir(dir)
	f := mustNewFile(t, "rel.json", Plaintext())
	if want := filepath.Join(dir, "rel.json"); f.Path() != want {
		t.Errorf("Path = %q, want %q", f.Path(), want)
	}
	if f.Protection().Name() != "plaintext" {
		t.Error("Protection")
	}
	if _, err := NewFile(dir, Plaintext()); err == nil {
		t.Error("NewFile accepted a directory")
	}
}

// Concurrent writers and lock-free readers: every read decodes to one of the
// written contents.
func TestFileConcurrentReadWrite(t *testing.T) {
	for name, newP := range protectors() {
		t.Run(name, func(t *testing.T) {
			p := newP()
			path := filepath.Join(testdir.New(t), "cache.json")
			contents := map[string]bool{}
			for i := range 4 {
				contents[fmt.Sprintf(`{"writer":%d,"pad":"%s"}`, i, strings.Repeat("x", 1000*i))] = true
			}
			var wg sync.WaitGroup
			for c := range contents {
				wg.Add(1)
				go func() {
					defer wg.Done()
					f := mustNewFile(t, path, p)
					for range 30 {
						if _, err := f.Write(context.Background(), []byte(c)); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					f := mustNewFile(t, path, p)
					for range 60 {
						b, _, err := f.Read(context.Background())
						if err != nil {
							t.Error(err)
							return
						}
						if b != nil && !contents[string(b)] {
							t.Errorf("read a torn file: %.40q", b)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

func TestDetectFormat(t *testing.T) {
	for in, want := range map[string]Format{
		"":                             FormatUnknown,
		"{}":                           FormatPlaintext,
		" \r\n\t{":                     FormatPlaintext,
		"\xef\xbb\xbf{}":               FormatPlaintext,
		"[]":                           FormatUnknown,
		"MSALCENV":                     FormatEnvelope,
		string(dpapiPrefix):            FormatDPAPI,
		string(dpapiPrefix[:19]):       FormatUnknown,
		"\x01\x00\x00\x00\xd0\x8c\x9d": FormatUnknown,
	} {
		if got := DetectFormat([]byte(in)); got != want {
			t.Errorf("DetectFormat(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWriteSweepsStaleTemps: a temporary file left by a writer killed before
// its rename is removed by a later write once it is old; a recent one (a
// write in progress) is left alone.
func TestWriteSweepsStaleTemps(t *testing.T) {
	dir := testdir.New(t)
	path := filepath.Join(dir, "cache.json")
	f := mustNewFile(t, path, Plaintext())
	stale := filepath.Join(dir, ".cache.json"+tempInfix+"111")
	fresh := filepath.Join(dir, ".cache.json"+tempInfix+"222")
	other := filepath.Join(dir, ".other.json"+tempInfix+"333")
	for _, p := range []string{stale, fresh, other} {
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-time.Hour)
	for _, p := range []string{stale, other} {
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Write(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file still there: %v", err)
	}
	for _, p := range []string{fresh, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
}
