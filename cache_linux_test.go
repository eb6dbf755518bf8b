package msalcache

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"
	"github.com/zalando/go-keyring"

	"github.com/msalcache/msalcache/internal/coarsefs"
	"github.com/msalcache/msalcache/internal/testdir"
	"github.com/msalcache/msalcache/persistence"
)

// TestNoSessionBus: on a headless Linux box New fails fast with
// ErrUnavailable and advice, unless WithPlaintextFallback was given, which
// logs a warning naming the file. No dbus-launch is spawned.
func TestNoSessionBus(t *testing.T) {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	t.Setenv("XDG_RUNTIME_DIR", testdir.New(t))
	t.Setenv("PATH", testdir.New(t)) // no dbus-launch to spawn, should anything try
	if _, err := os.Stat("/run/user/" + strconv.Itoa(os.Getuid()) + "/bus"); err == nil {
		t.Skip("this machine has a per-user session bus socket; the headless case cannot be staged here")
	}
	path := filepath.Join(testdir.New(t), "msal.cache")
	start := time.Now()
	_, err := New(path, WithKeyringItem("msalcache-test", "no-bus"))
	if !errors.Is(err, persistence.ErrUnavailable) || !strings.Contains(err.Error(), "WithPlaintextFallback") {
		t.Errorf("New without a session bus: %v; want ErrUnavailable naming WithPlaintextFallback", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("New took %v to notice there is no session bus", d)
	}

	var log bytes.Buffer
	c, err := New(path, WithKeyringItem("msalcache-test", "no-bus"), WithPlaintextFallback(),
		WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if c.Protection() != "plaintext" || !strings.Contains(log.String(), "WARN") || !strings.Contains(log.String(), path) {
		t.Errorf("fallback: protection %q, log %q", c.Protection(), log.String())
	}
}

// TestUpgradeFromPlaintext: a cache written by the plaintext fallback is
// read by a Cache with the Secret Service (the user stays signed in) and
// rewritten encrypted by its next write.
func TestUpgradeFromPlaintext(t *testing.T) {
	m := platformMode(t)
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	mustLogin(t, mustApp(t, s, openCache(t, path, plaintextMode)), scope("a"))

	c := openCache(t, path, m)
	if c.Protection() != "secret-service" {
		t.Fatalf("Protection() = %q", c.Protection())
	}
	app := mustApp(t, s, c)
	ctx := testCtx(t)
	accounts, err := app.Accounts(ctx)
	if err != nil || len(accounts) != 1 {
		t.Fatalf("after the switch to the Secret Service: accounts %v, %v; want still signed in", accounts, err)
	}
	// A silent call that changes nothing still converts the file.
	if _, err := app.AcquireTokenSilent(ctx, []string{scope("a")}, public.WithSilentAccount(accounts[0])); err != nil {
		t.Fatal(err)
	}
	if err := app.RemoveAccount(ctx, public.Account{HomeAccountID: "nobody.nowhere"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f := persistence.DetectFormat(raw); f != persistence.FormatEnvelope || bytes.Contains(raw, []byte("RefreshToken")) {
		t.Errorf("after a write the file is %s; want the encrypted envelope", f)
	}
	if a, err := mustApp(t, s, openCache(t, path, m)).Accounts(ctx); err != nil || len(a) != 1 {
		t.Errorf("a fresh encrypted Cache: accounts %v, %v", a, err)
	}
	if n := s.Requests().Token; n != 1 {
		t.Errorf("token requests = %d, want 1: the user had to sign in again", n)
	}
}

// TestWrongKeyIsCorrupt: a file encrypted under another keyring item's key
// cannot be decrypted: a warning, an empty cache, a copy kept on overwrite.
func TestWrongKeyIsCorrupt(t *testing.T) {
	m := platformMode(t)
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	mustLogin(t, mustApp(t, s, openCache(t, path, m)), scope("a"))
	original, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	var log bytes.Buffer
	other := openCache(t, path, platformMode(t), WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	app := mustApp(t, s, other)
	if a, err := app.Accounts(testCtx(t)); err != nil || len(a) != 0 {
		t.Fatalf("with the wrong key: accounts %v, %v; want none and no error", a, err)
	}
	if !strings.Contains(log.String(), "WARN") {
		t.Errorf("no warning: %q", log.String())
	}
	mustLogin(t, app, scope("b"))
	if copies := quarantined(t, path); len(copies) != 1 {
		t.Errorf("the undecryptable file was not kept once: %v", copies)
	} else if kept, err := os.ReadFile(copies[0]); err != nil || !bytes.Equal(kept, original) {
		t.Errorf("the undecryptable file was not kept: %v", err)
	}
}

// TestPlaintextFallbackKeepsEncryptedCache: a desktop process of the app
// keeps the cache encrypted with the Secret Service; a process of the same
// app in a session without one (SSH: no session bus) is on the plaintext
// fallback. It cannot open the file and must not take it for corrupt: its
// calls fail with an error that says what to do (the headless role checks
// them), the file is neither copied aside nor overwritten, and the desktop
// user's tokens are still served.
func TestPlaintextFallbackKeepsEncryptedCache(t *testing.T) {
	m := platformMode(t)
	if _, err := os.Stat("/run/user/" + strconv.Itoa(os.Getuid()) + "/bus"); err == nil {
		t.Skip("this machine has a per-user session bus socket; a session without the keyring cannot be staged here")
	}
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	desktop := mustLogin(t, mustApp(t, s, openCache(t, path, m)), scope("desktop"))
	before, err := os.ReadFile(path)
	if err != nil || persistence.DetectFormat(before) != persistence.FormatEnvelope {
		t.Fatalf("the desktop's cache file: %v; want an envelope", err)
	}

	headless := child(t, s, path, m, "headless", "")
	headless.Env = append(headless.Env, "DBUS_SESSION_BUS_ADDRESS=", "XDG_RUNTIME_DIR="+testdir.New(t))
	if err := headless.Run(); err != nil {
		t.Errorf("the process on the plaintext fallback: %v", err)
	}

	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
		t.Errorf("the process on the plaintext fallback changed the encrypted file (%v): now %d bytes, %s", err, len(after), persistence.DetectFormat(after))
	}
	if copies := quarantined(t, path); len(copies) != 0 {
		t.Errorf("the encrypted file was copied aside as corrupt: %v", copies)
	}
	app := mustApp(t, s, openCache(t, path, m))
	ctx := testCtx(t)
	accounts, err := app.Accounts(ctx)
	if err != nil || len(accounts) != 1 || accounts[0].HomeAccountID != desktop.Account.HomeAccountID {
		t.Fatalf("a new desktop process sees accounts %v, %v; want the desktop user", accounts, err)
	}
	tokens := s.Requests().Token
	if _, err := app.AcquireTokenSilent(ctx, []string{scope("desktop")}, public.WithSilentAccount(accounts[0])); err != nil {
		t.Errorf("the desktop user's silent call: %v", err)
	}
	if n := s.Requests().Token - tokens; n != 0 {
		t.Errorf("the desktop user's silent call made %d token requests; want the cached token", n)
	}
}

// TestClearKeepsKey: Clear signs everyone out by removing the file; the
// encryption key stays in the keyring, so other caches sharing the keyring
// item keep working.
func TestClearKeepsKey(t *testing.T) {
	m := platformMode(t)
	s := startIDP(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	c := openCache(t, path, m)
	mustLogin(t, mustApp(t, s, c), scope("a"))
	service, account, _ := strings.Cut(string(m), "/")
	before, err := keyring.Get(service, account)
	if err != nil {
		t.Fatalf("the key is not in the keyring after a login: %v", err)
	}
	if err := c.Clear(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if after, err := keyring.Get(service, account); err != nil || after != before {
		t.Errorf("after Clear the keyring item is gone or changed: %v", err)
	}
}

// envInNamespace marks the child of a test that runs in a mount namespace
// of its own.
const envInNamespace = "MSALCACHE_TEST_MOUNT_NAMESPACE"

// TestMergeAgainstDiskNowCoarse: checkMergeAgainstDiskNow on a file system
// with one-second timestamps, where a sister library's rewrite in place is
// stat-equal to the file it rewrote by itself. The test runs again in a
// child in a private mount namespace, which mounts the file system: when
// the child ends, however it ends, the mount goes with its namespace.
func TestMergeAgainstDiskNowCoarse(t *testing.T) {
	if coarsefs.InNamespace(t, "TestMergeAgainstDiskNowCoarse") {
		checkMergeAgainstDiskNow(t, coarsefs.Dir(t, coarsefs.Second), false)
	}
}

// TestCloseReleasesDescriptors: 10,000 Caches opened, used and closed
// leave no file descriptor behind, nor do 1,000 that took the lock.
func TestCloseReleasesDescriptors(t *testing.T) {
	path := filepath.Join(testdir.New(t), "msal.cache")
	ctx := testCtx(t)
	if err := os.WriteFile(path, []byte(`{"AccessToken":{"k":{"secret":"s"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	fds := func() int {
		entries, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	kept := make([]*Cache, 0, 10000) // reachable: no finalizer closes anything
	before := fds()
	for range 10000 {
		c, err := New(path, WithPlaintext())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Replace(ctx, &countingTarget{}, cache.ReplaceHints{}); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, c)
	}
	if after := fds(); after > before+2 {
		t.Errorf("descriptors: %d before, %d after 10,000 Caches were opened and closed", before, after)
	}
	// And 1,000 that take the lock, which keeps a file open between calls.
	for range 1000 {
		c, err := New(path, WithPlaintext())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, c)
	}
	if after := fds(); after > before+2 {
		t.Errorf("descriptors: %d before, %d after 1,000 Caches took the lock and were closed", before, after)
	}
	runtime.KeepAlive(kept)
}
