//go:build unix

package persistence

import (
	"github.com/msalcache/msalcache/internal/testdir"

	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFilePermissions(t *testing.T) {
	base := testdir.New(t)
	path := filepath.Join(base, "a", "b", "cache.json")
	f := mustNewFile(t, path, Plaintext())
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	mustWrite(t, f, secretJSON)
	q, err := f.Quarantine()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, q} {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	for _, d := range []string{filepath.Join(base, "a"), filepath.Join(base, "a", "b")} {
		if fi, _ := os.Stat(d); fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
}

func TestNewFileRefusesSymlink(t *testing.T) {
	dir := testdir.New(t)
	target := filepath.Join(dir, "real.json")
	if err := os.WriteFile(target, secretJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "cache.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	_, err := NewFile(link, Plaintext())
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("NewFile(symlink) = %v, want a refusal naming the symbolic link", err)
	}
	// A dangling link too.
	if err := os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFile(filepath.Join(dir, "dangling.json"), Plaintext()); err == nil {
		t.Fatal("NewFile accepted a dangling symbolic link")
	}
}

func TestNewFileRefusesSharedDirectory(t *testing.T) {
	for _, mode := range []os.FileMode{0o770, 0o757, 0o777, 0o777 | os.ModeSticky} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := filepath.Join(testdir.New(t), "shared")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			_, err := NewFile(filepath.Join(dir, "cache.json"), Plaintext())
			if err == nil || !strings.Contains(err.Error(), "writable by group or others") {
				t.Fatalf("NewFile in a %v directory = %v, want a refusal", mode, err)
			}
		})
	}
	// Creating the directory inside a world-writable one is refused too,
	// unless that one is sticky (like /tmp).
	parent := filepath.Join(testdir.New(t), "open")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFile(filepath.Join(parent, "new", "cache.json"), Plaintext()); err == nil {
		t.Fatal("NewFile accepted a new directory inside a world-writable one")
	}
	if err := os.Chmod(parent, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	f := mustNewFile(t, filepath.Join(parent, "new", "cache.json"), Plaintext())
	mustWrite(t, f, secretJSON)
	if fi, _ := os.Stat(filepath.Join(parent, "new")); fi.Mode().Perm() != 0o700 {
		t.Errorf("created directory has mode %v", fi.Mode().Perm())
	}
}

// The writer is SIGKILLed at a random moment of a write loop, 100 times:
// the file always decodes to one complete version.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(roleEnv) == "crash-writer" {
		crashWriter()
		return
	}
	if testing.Short() {
		t.Skip("-short")
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	key := base64.StdEncoding.EncodeToString(raw)
	dir := testdir.New(t)
	path := filepath.Join(dir, "cache.json")
	want := map[string]bool{}
	for _, c := range crashContents() {
		want[c] = true
	}
	for i := range 100 {
		// Odd rounds write envelopes, even ones plaintext.
		p := Plaintext()
		if i%2 == 1 {
			p = memKeyringWithKey(key)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := helperCommand(ctx, t, "TestCrashSafety", "crash-writer",
			"MSALCACHE_TEST_PATH="+path, "MSALCACHE_TEST_KEY="+key, fmt.Sprintf("MSALCACHE_TEST_ENVELOPE=%v", i%2 == 1))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		ready := false
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready = true
				break
			}
		}
		if !ready {
			cancel()
			_ = cmd.Wait()
			t.Fatalf("round %d: the writer did not start", i)
		}
		time.Sleep(time.Duration(mrand.IntN(3000)) * time.Microsecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		cancel()

		b, _, err := mustNewFile(t, path, p).Read(context.Background())
		if err != nil {
			t.Fatalf("round %d: after SIGKILL the file does not decode: %v", i, err)
		}
		if !want[string(b)] {
			t.Fatalf("round %d: after SIGKILL the file holds %.60q", i, b)
		}
		// A killed writer may leave its temp file; the cache file is intact.
		for _, name := range dirNames(t, dir) {
			if name != "cache.json" {
				_ = os.Remove(filepath.Join(dir, name))
			}
		}
	}
}

func memKeyringWithKey(key string) *keyringProtector {
	store := newMemStore()
	store.items[[2]string{DefaultKeyringService, DefaultKeyringAccount}] = key
	return memKeyring(store)
}

func crashContents() []string {
	var cs []string
	for i := range 4 {
		cs = append(cs, fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", 30000*i)))
	}
	return cs
}

// crashWriter writes the cache file in a loop until it is killed.
func crashWriter() {
	p := Plaintext()
	if os.Getenv("MSALCACHE_TEST_ENVELOPE") == "true" {
		p = memKeyringWithKey(os.Getenv("MSALCACHE_TEST_KEY"))
	}
	f, err := NewFile(os.Getenv("MSALCACHE_TEST_PATH"), p)
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	cs := crashContents()
	for i := 0; ; i++ {
		if _, err := f.Write(context.Background(), []byte(cs[i%len(cs)])); err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		if i == 0 {
			fmt.Println("ready")
		}
	}
}
