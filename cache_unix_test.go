//go:build unix

package msalcache

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/msalcache/msalcache/internal/testdir"
)

// nobody is the user a root test drops to: a mode of 0500 does not stop root.
const nobody = 65534

// TestReadOnlyCacheDirectory: in a directory the user cannot write, the
// cache still loads, and saving fails with a clear error that names the
// path and leaves the file as it was.
func TestReadOnlyCacheDirectory(t *testing.T) {
	dir := testdir.New(t)
	bin := os.Args[0]
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// Root ignores modes: run the check as nobody, from a copy of the
		// test binary nobody can execute.
		for _, d := range []string{dir, filepath.Dir(dir)} { // testdir's 0700 directories
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		bin = filepath.Join(dir, "msalcache.test")
		data, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: nobody, Gid: nobody}
	}
	cacheDir := filepath.Join(dir, "cache")
	path := filepath.Join(cacheDir, "msal.cache")
	original := []byte(`{"AccessToken":{"k":{"secret":"kept"}}}`)
	if err := os.Mkdir(cacheDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, original, 0o600); err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		for _, p := range []string{cacheDir, path} {
			if err := os.Chown(p, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Chmod(cacheDir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(cacheDir, 0o700) })

	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), envRole+"=read-only", envCache+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("read-only child: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, original) {
		t.Errorf("the cache file changed: %s", got)
	}
	t.Logf("%s", out)
}
