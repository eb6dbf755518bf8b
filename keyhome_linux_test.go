package msalcache

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/msalcache/msalcache/internal/testdir"
	"github.com/msalcache/msalcache/persistence"
)

// TestKeyringWithoutHome: with HOME and XDG_CACHE_HOME unset, or a HOME that
// cannot be written (a path under a regular file: the tests run as root,
// which permissions do not stop), the process has no per-user cache
// directory; the keyring key is still created on the first sign-in,
// against the real Secret Service, and the cache is encrypted with it.
func TestKeyringWithoutHome(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  func(t *testing.T)
	}{
		{"HOME and XDG_CACHE_HOME unset", func(t *testing.T) {
			unsetenv(t, "HOME")
			unsetenv(t, "XDG_CACHE_HOME")
		}},
		{"HOME under a regular file", func(t *testing.T) {
			file := filepath.Join(testdir.New(t), "a-file")
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("HOME", filepath.Join(file, "home"))
			unsetenv(t, "XDG_CACHE_HOME")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := platformMode(t) // an item of its own: no key yet
			s := startIDP(t)
			path := filepath.Join(testdir.New(t), "msal.cache")
			tc.env(t)
			if dir, err := os.UserCacheDir(); err == nil && os.MkdirAll(dir, 0o700) == nil {
				t.Fatalf("the environment still has a usable per-user cache directory: %s", dir)
			}
			mustLogin(t, mustApp(t, s, openCache(t, path, m)), scope("a"))
			accounts, err := mustApp(t, s, openCache(t, path, m)).Accounts(testCtx(t))
			if err != nil || len(accounts) != 1 {
				t.Errorf("another Cache sees accounts %v, %v; want the one signed in", accounts, err)
			}
			if b, err := os.ReadFile(path); err != nil || persistence.DetectFormat(b) != persistence.FormatEnvelope {
				t.Errorf("the cache file is not an envelope: %v", err)
			}
		})
	}
}

// unsetenv unsets name for the rest of the test.
func unsetenv(t *testing.T, name string) {
	t.Setenv(name, "") // restores it when the test ends
	os.Unsetenv(name)
}
