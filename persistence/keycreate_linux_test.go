package persistence

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	const rounds, procs = 6, 6
	for round := range rounds {
		svc := testService(t)
		dir := testdir.New(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		start := filepath.Join(dir, "start")
		cmds := make([]*exec.Cmd, procs)
		outs := make([]bytes.Buffer, procs)
		for i := range cmds {
			cmds[i] = helperCommand(ctx, t, "TestKeyCreatedOnceAcrossProcesses", "key-create",
				"MSALCACHE_TEST_SERVICE="+svc,
				"MSALCACHE_TEST_CACHE="+filepath.Join(dir, fmt.Sprintf("cache%d.json", i)),
				"MSALCACHE_TEST_READY="+filepath.Join(dir, fmt.Sprintf("ready%d", i)),
				"MSALCACHE_TEST_START="+start,
				"MSALCACHE_TEST_ID="+strconv.Itoa(i))
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
			path := filepath.Join(dir, fmt.Sprintf("cache%d.json", i))
			got, _, err := mustNewFile(t, path, fresh).Read(context.Background())
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
