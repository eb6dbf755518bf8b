package persistence

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zalando/go-keyring"

	"github.com/msalcache/msalcache/internal/testdir"
)

// TestKeyCreatedOnceAcrossProcesses: processes that open different cache
// files sharing one keyring item, when the item does not exist yet, all end
// up with one key: every file they wrote decrypts with the key the keyring
// holds. Each round starts the processes together on a fresh item, against
// the real Secret Service.
func TestKeyCreatedOnceAcrossProcesses(t *testing.T) {
	if os.Getenv(roleEnv) == "key-create" {
		keyCreateChild(t)
		return
	}
	requireSecretService(t)
	testKeyCreatedOnce(t, "TestKeyCreatedOnceAcrossProcesses", func(int) []string { return nil })
}

// TestKeyCreatedOnceWithoutHome: the same, with the processes' cache files
// in directories of their own and a third of them with HOME and
// XDG_CACHE_HOME unset, a third with a HOME that cannot be written (a path
// under a regular file: the tests run as root, which permissions do not
// stop): there is no per-user cache directory for them, yet they create the
// key, and one key among them all.
func TestKeyCreatedOnceWithoutHome(t *testing.T) {
	if os.Getenv(roleEnv) == "key-create" {
		keyCreateChild(t)
		return
	}
	requireSecretService(t)
	notDir := filepath.Join(testdir.New(t), "home-is-a-file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	testKeyCreatedOnce(t, "TestKeyCreatedOnceWithoutHome", func(i int) []string {
		switch i % 3 {
		case 1:
			return []string{"HOME", "XDG_CACHE_HOME"} // unset
		case 2:
			return []string{"HOME=" + filepath.Join(notDir, "home"), "XDG_CACHE_HOME"}
		}
		return nil
	})
}

// testKeyCreatedOnce runs the rounds of the tests above. env(i) changes the
// environment of child i: "NAME=value" sets, "NAME" unsets.
func testKeyCreatedOnce(t *testing.T, test string, env func(i int) []string) {
	const rounds, procs = 6, 6
	for round := range rounds {
		svc := testService(t)
		dir := testdir.New(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		start := filepath.Join(dir, "start")
		cmds := make([]*exec.Cmd, procs)
		outs := make([]bytes.Buffer, procs)
		for i := range cmds {
			cmds[i] = helperCommand(ctx, t, test, "key-create",
				"MSALCACHE_TEST_SERVICE="+svc,
				"MSALCACHE_TEST_CACHE="+cachePath(dir, i),
				"MSALCACHE_TEST_READY="+filepath.Join(dir, fmt.Sprintf("ready%d", i)),
				"MSALCACHE_TEST_START="+start,
				"MSALCACHE_TEST_ID="+strconv.Itoa(i))
			cmds[i].Env = changeEnv(cmds[i].Env, env(i))
			cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
			if err := cmds[i].Start(); err != nil {
				t.Fatal(err)
			}
		}
		// Start them together once each has its D-Bus connection up.
		for i := range procs {
			waitForFile(ctx, t, filepath.Join(dir, fmt.Sprintf("ready%d", i)))
		}
		if err := os.WriteFile(start, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i, cmd := range cmds {
			wg.Go(func() {
				if err := cmd.Wait(); err != nil || !bytes.Contains(outs[i].Bytes(), []byte("--- PASS")) {
					t.Errorf("round %d child %d: %v\n%s", round, i, err, outs[i].String())
				}
			})
		}
		wg.Wait()
		cancel()

		// One key, and every file decrypts with it in a fresh process state.
		fresh := Keyring("secret-service", svc, "")
		for i := range procs {
			got, _, err := mustNewFile(t, cachePath(dir, i), fresh).Read(context.Background())
			want := fmt.Sprintf(`{"written-by":%d}`, i)
			if err != nil || string(got) != want {
				t.Errorf("round %d: file %d does not decrypt with the key in the keyring: %q, %v", round, i, got, err)
			}
		}
		if t.Failed() {
			return
		}
	}
}

// cachePath is child i's cache file: each in a directory of its own.
func cachePath(dir string, i int) string {
	return filepath.Join(dir, fmt.Sprintf("dir%d", i), "cache.json")
}

// changeEnv returns env with each change applied: "NAME=value" sets NAME,
// "NAME" removes it.
func changeEnv(env, changes []string) []string {
	for _, c := range changes {
		name, _, _ := strings.Cut(c, "=")
		env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, name+"=") })
		if strings.Contains(c, "=") {
			env = append(env, c)
		}
	}
	return env
}

// keyCreateChild opens its own cache file on the shared item, says it is
// ready, waits for the start signal and writes.
func keyCreateChild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A keyring that takes a while to store (as a loaded machine's does)
	// widens the window in which two processes both find no key.
	p := newKeyring("secret-service", os.Getenv("MSALCACHE_TEST_SERVICE"), "",
		slowSetStore{osKeyring{}}, sessionBusCheck)
	if err := p.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.Get(os.Getenv("MSALCACHE_TEST_SERVICE"), DefaultKeyringAccount); !errors.Is(err, keyring.ErrNotFound) {
		t.Fatalf("the key exists before the start: %v", err)
	}
	f := mustNewFile(t, os.Getenv("MSALCACHE_TEST_CACHE"), p)
	if err := os.WriteFile(os.Getenv("MSALCACHE_TEST_READY"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitForFile(ctx, t, os.Getenv("MSALCACHE_TEST_START"))
	if _, err := f.Write(ctx, fmt.Appendf(nil, `{"written-by":%s}`, os.Getenv("MSALCACHE_TEST_ID"))); err != nil {
		t.Fatal(err)
	}
}

// slowSetStore is the real keyring with a random delay before each Set.
type slowSetStore struct{ secretStore }

func (s slowSetStore) Set(service, account, secret string) error {
	time.Sleep(rand.N(30 * time.Millisecond))
	return s.secretStore.Set(service, account, secret)
}

// waitForFile polls until path exists, failing the test when ctx ends.
func waitForFile(ctx context.Context, t *testing.T, path string) {
	t.Helper()
	for {
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", path, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// TestKeyLockOnSessionBus: the key creation lock on the session bus
// excludes other holders (other connections, other processes) until it is
// released, and the bus frees it when its holder dies. It needs no HOME.
func TestKeyLockOnSessionBus(t *testing.T) {
	if os.Getenv(roleEnv) == "hold-key-lock" {
		unlock, err := busCreationLock(context.Background(), os.Getenv("MSALCACHE_TEST_SERVICE"), "acct")
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		fmt.Println("holding")
		time.Sleep(time.Minute) // until killed
		return
	}
	requireSecretService(t)
	t.Setenv("HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	svc := testService(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lockWithin := func(d time.Duration) (func() error, error) {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return busCreationLock(ctx, svc, "acct")
	}

	unlock, err := lockWithin(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if u, err := lockWithin(300 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		if u != nil {
			u()
		}
		t.Fatalf("a second holder while the first holds the lock: %v, want a timeout", err)
	}
	if u, err := busCreationLock(ctx, svc, "other-acct"); err != nil {
		t.Errorf("another item's lock: %v", err)
	} else {
		u()
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	unlock, err = lockWithin(5 * time.Second)
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	unlock()

	// Another process holds it and dies: the bus frees it.
	cmd := helperCommand(ctx, t, "TestKeyLockOnSessionBus", "hold-key-lock", "MSALCACHE_TEST_SERVICE="+svc)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	for lines.Scan() && lines.Text() != "holding" {
	}
	if lines.Text() != "holding" {
		t.Fatalf("the child does not hold the lock: %v", lines.Err())
	}
	if u, err := lockWithin(300 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		if u != nil {
			u()
		}
		t.Fatalf("while another process holds the lock: %v, want a timeout", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	start := time.Now()
	unlock, err = lockWithin(5 * time.Second)
	if err != nil {
		t.Fatalf("after its holder was killed: %v", err)
	}
	unlock()
	t.Logf("taken %v after the holder was killed", time.Since(start))
}

// TestKeyLockFailureIsUnavailable: when the key creation lock cannot be
// taken (here: the lock file, with no per-user cache directory), Seal fails
// with an error wrapping ErrUnavailable, which WithPlaintextFallback acts
// on, and nothing is stored.
func TestKeyLockFailureIsUnavailable(t *testing.T) {
	t.Setenv("HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	store := newMemStore()
	p := memKeyring(store)
	p.creationLock = fileCreationLock
	_, err := p.Seal(context.Background(), secretJSON)
	wantErrIs(t, err, ErrUnavailable)
	if !strings.Contains(err.Error(), "creating the key") {
		t.Errorf("the error does not say what failed: %v", err)
	}
	if keys := store.keys(); len(keys) != 0 {
		t.Errorf("a key was stored without the lock: %v", keys)
	}
}

// TestKeyLockWithoutBus: where the session bus cannot give the lock (here:
// there is none), the lock file in the user's cache directory serves; with
// neither, the error says why both failed.
func TestKeyLockWithoutBus(t *testing.T) {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	old := runUserDir
	runUserDir = testdir.New(t)
	t.Cleanup(func() { runUserDir = old })
	home := testdir.New(t)
	t.Setenv("HOME", home)
	t.Setenv("XDG_CACHE_HOME", "")
	unlock, err := platformCreationLock(context.Background(), "svc", "acct")
	if err != nil {
		t.Fatalf("without a session bus: %v", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, ".cache", "msalcache")); err != nil {
		t.Errorf("the lock file's directory: %v", err)
	}

	t.Setenv("HOME", "")
	_, err = platformCreationLock(context.Background(), "svc", "acct")
	if err == nil || !strings.Contains(err.Error(), "session bus") || !strings.Contains(err.Error(), "HOME") {
		t.Errorf("with neither a bus nor a per-user directory: %v", err)
	}
}
