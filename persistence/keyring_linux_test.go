package persistence

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/testdir"
	"github.com/zalando/go-keyring"
)

// These tests use the real Secret Service on the session bus: run them under
// scripts/with-keyring.sh (a private bus, a throwaway HOME and an unlocked
// gnome-keyring). Every test uses its own keyring service name and removes
// its items.

func requireSecretService(t *testing.T) {
	t.Helper()
	requireService(t, os.Getenv("DBUS_SESSION_BUS_ADDRESS") != "",
		"a Secret Service (DBUS_SESSION_BUS_ADDRESS is unset; gnome-keyring on a D-Bus session bus)")
}

// testService returns a keyring service name unique to the test, whose items
// are deleted when the test ends.
func testService(t *testing.T) string {
	t.Helper()
	svc := fmt.Sprintf("msalcache-test-%s-%d", regexp.MustCompile(`\W`).ReplaceAllString(t.Name(), "-"), time.Now().UnixNano())
	t.Cleanup(func() { _ = keyring.DeleteAll(svc) })
	return svc
}

// countingStore counts the calls that reach the real keyring.
type countingStore struct {
	secretStore
	gets atomic.Int64
}

func (c *countingStore) Get(service, account string) (string, error) {
	c.gets.Add(1)
	return c.secretStore.Get(service, account)
}

func TestSecretServiceRoundTrip(t *testing.T) {
	requireSecretService(t)
	svc := testService(t)
	ctx := context.Background()
	path := filepath.Join(testdir.New(t), "cache.json")

	if err := Keyring("secret-service", svc, "key").Check(ctx); err != nil {
		t.Fatalf("Check with no key yet: %v", err)
	}
	if _, err := keyring.Get(svc, "key"); !errors.Is(err, keyring.ErrNotFound) {
		t.Fatalf("Check created the key item (Get: %v)", err)
	}

	store := &countingStore{secretStore: osKeyring{}}
	f := mustNewFile(t, path, newKeyring("secret-service", svc, "key", store, sessionBusCheck))
	for i := range 20 {
		content := []byte(fmt.Sprintf(`{"a-very-secret-token":%d}`, i))
		mustWrite(t, f, content)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("a-very-secret")) || DetectFormat(raw) != FormatEnvelope {
			t.Fatalf("the file is not an envelope or holds the plaintext: %.40q", raw)
		}
		got, _, err := f.Read(ctx)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("Read = %q, %v", got, err)
		}
	}
	// The miss, the miss again under the creation lock, then the read-back
	// after creating the key; never again.
	if n := store.gets.Load(); n != 3 {
		t.Errorf("the keyring was read %d times for 20 writes and reads, want 3", n)
	}

	// Another process (a new Protector) reads the file with one keyring read.
	store2 := &countingStore{secretStore: osKeyring{}}
	f2 := mustNewFile(t, path, newKeyring("secret-service", svc, "key", store2, sessionBusCheck))
	for range 20 {
		if _, _, err := f2.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := store2.gets.Load(); n != 1 {
		t.Errorf("a second protector read the keyring %d times, want once", n)
	}
}

func TestSecretServiceItem(t *testing.T) {
	requireSecretService(t)
	if _, err := exec.LookPath("secret-tool"); err != nil {
		requireService(t, false, "secret-tool (Debian package libsecret-tools)")
	}
	svc := testService(t)
	p := Keyring("secret-service", svc, "")
	sealed := mustSeal(t, p, secretJSON)
	if err := p.Probe(context.Background()); err != nil {
		t.Fatalf("Probe: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "secret-tool", "search", "--all", "--unlock", "service", svc).CombinedOutput()
	if err != nil {
		t.Fatalf("secret-tool search: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"attribute.service = " + svc + "\n",
		"attribute.username = " + DefaultKeyringAccount + "\n",
		fmt.Sprintf("label = Password for '%s' on '%s'\n", DefaultKeyringAccount, svc),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the keyring item lacks %q; secret-tool shows:\n%s", want, redactSecret(text))
		}
	}
	if n := strings.Count(text, "attribute.service = "); n != 1 {
		t.Errorf("%d items for the service, want 1 (the probe item must be gone):\n%s", n, redactSecret(text))
	}
	m := regexp.MustCompile(`(?m)^secret = (.*)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no secret shown:\n%s", redactSecret(text))
	}
	raw, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil || len(raw) != 32 {
		t.Fatalf("the item's secret is not the base64 of a 32-byte key (%d bytes, %v)", len(raw), err)
	}
	key, err := newEnvelopeKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := parseEnvelope(sealed)
	if pt, err := key.open(e); err != nil || !bytes.Equal(pt, secretJSON) {
		t.Fatalf("the stored key does not open the file: %v", err)
	}
}

func redactSecret(s string) string {
	return regexp.MustCompile(`(?m)^secret = .*$`).ReplaceAllString(s, "secret = <redacted>")
}

func TestSecretServiceDeletedKey(t *testing.T) {
	requireSecretService(t)
	svc := testService(t)
	path := filepath.Join(testdir.New(t), "cache.json")
	mustWrite(t, mustNewFile(t, path, Keyring("secret-service", svc, "")), secretJSON)
	if err := keyring.Delete(svc, DefaultKeyringAccount); err != nil {
		t.Fatal(err)
	}
	f := mustNewFile(t, path, Keyring("secret-service", svc, ""))
	_, v, err := f.Read(context.Background())
	wantErrIs(t, err, ErrCorrupt)
	if !v.Exists() || !strings.Contains(err.Error(), "not in the keyring") {
		t.Errorf("Read = %+v, %v", v, err)
	}
	// The next write creates a new key; the file is readable again.
	mustWrite(t, f, secretJSON)
	if got, _, err := mustNewFile(t, path, Keyring("secret-service", svc, "")).Read(context.Background()); err != nil || !bytes.Equal(got, secretJSON) {
		t.Fatalf("after a new key: %q, %v", got, err)
	}
}

func TestSecretServiceWrongKey(t *testing.T) {
	requireSecretService(t)
	svc := testService(t)
	path := filepath.Join(testdir.New(t), "cache.json")
	mustWrite(t, mustNewFile(t, path, Keyring("secret-service", svc, "a")), secretJSON)
	p := Keyring("secret-service", svc, "b")
	mustSeal(t, p, nil) // creates key b
	_, _, err := mustNewFile(t, path, p).Read(context.Background())
	wantErrIs(t, err, ErrCorrupt)
}

// sessionConf is a D-Bus session bus configuration without service
// activation: nothing starts a Secret Service (or a prompter) on demand.
const sessionConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`

// TestSecretServiceUnavailable runs the keyring in child processes with no
// session bus, a bus without a Secret Service, and a locked keyring. Each must
// answer ErrUnavailable with a remedy within 2 s (godbus keeps one session
// connection per process, hence the children).
func TestSecretServiceUnavailable(t *testing.T) {
	if os.Getenv(roleEnv) == "keyring-unavailable" {
		unavailableChild(t)
		return
	}
	for _, tool := range []string{"dbus-run-session", "dbus-send", "gnome-keyring-daemon"} {
		if _, err := exec.LookPath(tool); err != nil {
			requireService(t, false, tool+" (Debian packages dbus-daemon, dbus-bin, gnome-keyring)")
		}
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	childArgs := []string{exe, "-test.run=^TestSecretServiceUnavailable$", "-test.v"}

	t.Run("no session bus", func(t *testing.T) {
		dir := testdir.New(t)
		// A dbus-launch that leaves a mark: it must never run.
		bin := filepath.Join(dir, "bin")
		mark := filepath.Join(dir, "dbus-launch-ran")
		if err := os.Mkdir(bin, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "dbus-launch"), []byte("#!/bin/sh\ntouch "+mark+"\nexit 1\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		runtime := filepath.Join(dir, "run")
		if err := os.Mkdir(runtime, 0o700); err != nil {
			t.Fatal(err)
		}
		env := []string{
			"PATH=" + bin + ":" + os.Getenv("PATH"),
			"XDG_RUNTIME_DIR=" + runtime,
			"MSALCACHE_TEST_RUN_USER=" + runtime, // instead of /run/user
			"MSALCACHE_TEST_WANT=no D-Bus session bus",
		}
		runChild(t, childArgs, env, "DBUS_SESSION_BUS_ADDRESS")
		if _, err := os.Stat(mark); err == nil {
			t.Error("dbus-launch was run")
		}
	})

	t.Run("no Secret Service", func(t *testing.T) {
		dir := testdir.New(t)
		conf := filepath.Join(dir, "session.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(sessionConf, dir)), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"dbus-run-session", "--config-file=" + conf, "--"}, childArgs...)
		runChild(t, args, []string{"HOME=" + dir, "MSALCACHE_TEST_WANT=no Secret Service on the session bus"})
	})

	t.Run("locked keyring", func(t *testing.T) {
		dir := testdir.New(t)
		conf := filepath.Join(dir, "session.conf")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(sessionConf, dir)), 0o600); err != nil {
			t.Fatal(err)
		}
		// Create the login keyring with a password, then restart the daemon
		// without it: the keyring exists and is locked.
		script := `set -e
printf pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null
gnome-keyring-daemon --replace --components=secrets --daemonize >/dev/null 2>&1 </dev/null
for i in $(seq 100); do
	if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
		org.freedesktop.DBus.GetNameOwner string:org.freedesktop.secrets >/dev/null 2>&1; then
		exec "$@"
	fi
	sleep 0.05
done
echo "no Secret Service after restart" >&2
exit 2`
		args := append([]string{"dbus-run-session", "--config-file=" + conf, "--", "sh", "-c", script, "sh"}, childArgs...)
		run := filepath.Join(dir, "run")
		if err := os.Mkdir(run, 0o700); err != nil {
			t.Fatal(err)
		}
		runChild(t, args, []string{"HOME=" + dir, "XDG_RUNTIME_DIR=" + run, "MSALCACHE_TEST_WANT=the keyring is locked"})
	})
}

// runChild runs args with the role set and env added (and the variables in
// unset removed), and fails the test with the child's output if it fails.
func runChild(t *testing.T, args, env []string, unset ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, u := range unset {
			keep = keep && name != u
		}
		if keep {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, roleEnv+"=keyring-unavailable")
	cmd.Env = append(cmd.Env, env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS")) {
		t.Fatalf("child %v: %v\n%s", args, err, out)
	}
	t.Logf("child: %s", bytes.TrimSpace(regexp.MustCompile(`(?m)^\s*keyring_linux_test.go:\d+: (.*)$`).Find(out)))
}

// unavailableChild: the keyring must report ErrUnavailable (never ErrCorrupt)
// naming the problem, within 2 s, from Check, Seal, Open and Probe.
func unavailableChild(t *testing.T) {
	if d := os.Getenv("MSALCACHE_TEST_RUN_USER"); d != "" {
		runUserDir = d
	}
	want := os.Getenv("MSALCACHE_TEST_WANT")
	p := Keyring("secret-service", "msalcache-test-unavailable", "")
	sealed := mustSeal(t, memKeyring(newMemStore()), secretJSON)
	ctx := context.Background()
	for name, op := range map[string]func() error{
		"Check": func() error { return p.Check(ctx) },
		"Seal":  func() error { _, err := p.Seal(ctx, secretJSON); return err },
		"Open":  func() error { _, err := p.Open(ctx, sealed); return err },
		"Probe": func() error { return p.Probe(ctx) },
	} {
		start := time.Now()
		err := op()
		d := time.Since(start)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s = %v, want ErrUnavailable", name, err)
			continue
		}
		if d > 2*time.Second {
			t.Errorf("%s took %v, want under 2s", name, d)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q does not say %q", name, err, want)
		}
		if strings.Contains(err.Error(), "msalcache.") || strings.Contains(err.Error(), "With") {
			t.Errorf("%s: error %q names an msalcache option; persistence users have none", name, err)
		}
		if name == "Check" {
			t.Logf("Check answered in %v: %v", d.Round(time.Millisecond), err)
		}
	}
}

// requireService skips the test, naming the missing service, unless
// MSALCACHE_REQUIRE_SERVICES=1 (set where every service is provided), which
// turns the skip into a failure.
func requireService(t *testing.T, ok bool, missing string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
		t.Fatalf("%s is required (MSALCACHE_REQUIRE_SERVICES=1)", missing)
	}
	t.Skipf("%s is not available; run the tests with scripts/with-keyring.sh", missing)
}
