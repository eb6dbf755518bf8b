package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/testdir"
	"github.com/msalcache/msalcache/lock"
)

// TestCommands runs login, token, accounts and logout as separate
// processes against the local identity provider, on a plaintext cache and
// on the platform protection.
func TestCommands(t *testing.T) {
	for _, name := range []string{"plaintext", "platform"} {
		t.Run(name, func(t *testing.T) {
			s := newSite(t, name == "platform")

			s.idp.SetNextUser("alice@contoso.example")
			r := cli(t, nil, s.args("login")...).want(t, exitOK)
			if !strings.Contains(r.stderr, "enter the code") || !strings.Contains(r.stderr, s.idp.Authority()) {
				t.Errorf("login did not show the verification URL and code on stderr:\n%s", r.stderr)
			}
			if !strings.Contains(r.stdout, "Signed in as alice@contoso.example") {
				t.Errorf("login stdout:\n%s", r.stdout)
			}
			raw, err := os.ReadFile(s.cache)
			if err != nil {
				t.Fatal(err)
			}
			if clear := bytes.Contains(raw, []byte(`"AccessToken"`)); clear != (name == "plaintext") {
				t.Errorf("%s cache file holds MSAL's JSON in clear: %v", name, clear)
			}
			if fi, err := os.Stat(s.cache); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
				t.Errorf("cache file mode %04o, want 0600", fi.Mode().Perm())
			}

			// The token comes from the cache: not a single request.
			before := s.idp.Requests()
			r = cli(t, nil, s.args("token", "--json")...).want(t, exitOK)
			if n := s.idp.Requests().Sub(before); n != (fakeidp.Counts{}) {
				t.Errorf("token made requests to the identity provider: %+v; want none", n)
			}
			var tok tokenJSON
			if err := json.Unmarshal([]byte(r.stdout), &tok); err != nil {
				t.Fatalf("token --json: %v\n%s", err, r.stdout)
			}
			if tok.AccessToken == "" || tok.Account.Username != "alice@contoso.example" || !tok.ExpiresOn.After(time.Now()) {
				t.Errorf("token --json = %+v", tok)
			}
			r = cli(t, nil, s.args("token")...).want(t, exitOK)
			if r.stdout != tok.AccessToken+"\n" {
				t.Errorf("token printed %q, want the cached access token and a newline", r.stdout)
			}
			// A new scope redeems the refresh token, once.
			before = s.idp.Requests()
			cli(t, nil, s.args("token", "--scopes", "api://cli-test/write")...).want(t, exitOK)
			if n := s.idp.Requests().Sub(before); n.RefreshTokenGrant != 1 || n.Token != 1 {
				t.Errorf("token for a new scope: %+v; want one refresh token grant", n)
			}

			s.idp.SetNextUser("bob@contoso.example")
			cli(t, nil, s.args("login")...).want(t, exitOK)
			r = cli(t, nil, s.args("accounts")...).want(t, exitOK)
			if !strings.Contains(r.stdout, "alice@contoso.example") || !strings.Contains(r.stdout, "bob@contoso.example") {
				t.Errorf("accounts:\n%s", r.stdout)
			}
			r = cli(t, nil, s.args("token")...).want(t, exitUsage)
			if !strings.Contains(r.stderr, "--account") {
				t.Errorf("token with two accounts: %s", r.stderr)
			}
			cli(t, nil, s.args("token", "--account", "bob@contoso.example")...).want(t, exitOK)

			r = cli(t, nil, s.args("logout", "alice@contoso.example")...).want(t, exitOK)
			r = cli(t, nil, s.args("accounts", "--json")...).want(t, exitOK)
			var list []accountJSON
			if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 || list[0].Username != "bob@contoso.example" {
				t.Errorf("accounts --json after logout alice = %s (%v)", r.stdout, err)
			}
			r = cli(t, nil, s.args("token", "--account", "alice@contoso.example")...).want(t, exitSignIn)
			if !strings.Contains(r.stderr, "run 'cli-login login'") {
				t.Errorf("token for a signed-out user said:\n%s", r.stderr)
			}

			// --all needs no client ID: it removes the cache file.
			cli(t, nil, append([]string{"logout", "--all", "--cache", s.cache}, s.mode...)...).want(t, exitOK)
			if _, err := os.Stat(s.cache); !os.IsNotExist(err) {
				t.Errorf("cache file after logout --all: %v", err)
			}
			r = cli(t, nil, s.args("token")...).want(t, exitSignIn)
			if !strings.Contains(r.stderr, "not signed in: run 'cli-login login'") {
				t.Errorf("token after logout --all said:\n%s", r.stderr)
			}
			if _, err := os.Stat(s.cache + ".lockfile"); !os.IsNotExist(err) {
				t.Errorf("lock file left behind: %v", err)
			}
		})
	}
}

// TestUsage checks argument handling, environment variables and --help,
// in this process.
func TestUsage(t *testing.T) {
	ctx := context.Background()
	cache := filepath.Join(testdir.New(t), "msal.cache")
	for _, tc := range []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{"no command", nil, nil, exitUsage, "Usage"},
		{"unknown command", nil, []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"no client id", nil, []string{"login", "--cache", cache}, exitUsage, "--client-id is required"},
		{"tenant and authority", nil, []string{"token", "--client-id", "x", "--tenant", "contoso.example", "--authority", "https://127.0.0.1:1/t"}, exitUsage, "not both"},
		{"tenant env and authority", map[string]string{envTenant: "contoso.example"}, []string{"token", "--client-id", "x", "--authority", "https://127.0.0.1:1/t"}, exitUsage, "not both"},
		{"http authority", nil, []string{"token", "--client-id", "x", "--authority", "http://127.0.0.1:1/t"}, exitUsage, "want an https URL"},
		{"unknown flag", nil, []string{"token", "--frob"}, exitUsage, "flag provided but not defined"},
		{"extra argument", nil, []string{"accounts", "--client-id", "x", "bob"}, exitUsage, `unexpected argument "bob"`},
		{"bad boolean env", map[string]string{envPlaintext: "maybe"}, []string{"doctor"}, exitUsage, "MSALCACHE_PLAINTEXT=\"maybe\""},
		{"bad keyring item", nil, []string{"doctor", "--keyring-item", "x"}, exitUsage, "want SERVICE/ACCOUNT"},
		{"logout all and user", nil, []string{"logout", "--all", "bob"}, exitUsage, "not both"},
		// Flags from the environment: client ID, cache and plaintext; the
		// empty cache needs a sign-in (and no network).
		{"env flags", map[string]string{envClientID: "x", envCache: cache, envPlaintext: "1", envAuthority: "https://127.0.0.1:1/t"},
			[]string{"token"}, exitSignIn, "not signed in: run 'cli-login login'"},
		{"flags after arguments", nil, []string{"logout", "bob", "--cache", cache, "--plaintext", "--all"}, exitUsage, "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runIn(ctx, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, want %d; stderr %q, want it to contain %q", code, tc.code, stderr, tc.stderr)
			}
		})
	}
	for _, cmd := range []string{"--help", "login", "token", "accounts", "logout", "doctor", "demo"} {
		t.Run("help "+cmd, func(t *testing.T) {
			args := []string{cmd, "--help"}
			if cmd == "--help" {
				args = args[:1]
			}
			code, stdout, _ := runIn(ctx, nil, args...)
			if code != exitOK || !strings.Contains(stdout, "Exit status") || !strings.Contains(stdout, "3    sign-in needed") {
				t.Errorf("%v: exit %d, stdout:\n%s", args, code, stdout)
			}
			if cmd != "--help" && !strings.Contains(stdout, "MSALCACHE_") {
				t.Errorf("%v does not name the environment variables:\n%s", args, stdout)
			}
		})
	}
}

// TestDoctor: healthy with a Secret Service (or DPAPI), unhealthy and
// quick with advice without one, and it checks permissions.
func TestDoctor(t *testing.T) {
	t.Run("platform", func(t *testing.T) {
		mode := platformFlags(t)
		cache := filepath.Join(testdir.New(t), "msal.cache")
		r := cli(t, nil, append([]string{"doctor", "--cache", cache}, mode...)...).want(t, exitOK)
		want := map[string]string{"linux": "secret-service", "windows": "dpapi"}[runtime.GOOS]
		for _, s := range []string{"protection       " + want, "verify           ok", "result           healthy", cache + ".lockfile"} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("doctor output lacks %q:\n%s", s, r.stdout)
			}
		}
		if runtime.GOOS == "linux" && !strings.Contains(r.stdout, "Secret Service   available") {
			t.Errorf("doctor does not report the Secret Service:\n%s", r.stdout)
		}
		if _, err := os.Stat(cache); !os.IsNotExist(err) {
			t.Errorf("doctor created the cache file: %v", err)
		}
	})
	t.Run("no Secret Service", func(t *testing.T) {
		env := noSessionBus(t)
		cache := filepath.Join(testdir.New(t), "msal.cache")
		r := cli(t, env, "doctor", "--cache", cache, "--plaintext-fallback").want(t, exitUnhealthy)
		for _, s := range []string{"D-Bus session    ABSENT", "protection       UNAVAILABLE", "gnome-keyring", "dbus-run-session",
			"--plaintext-fallback", "NOT HEALTHY", "UNENCRYPTED"} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("doctor output lacks %q:\n%s", s, r.stdout)
			}
		}
		if r.took > 10*time.Second {
			t.Errorf("doctor took %v without a session bus; want it quick", r.took)
		}
	})
	t.Run("plaintext", func(t *testing.T) {
		cache := filepath.Join(testdir.New(t), "msal.cache")
		r := cli(t, nil, "doctor", "--cache", cache, "--plaintext").want(t, exitOK)
		if !strings.Contains(r.stdout, "protection       plaintext") || !strings.Contains(r.stdout, "healthy") {
			t.Errorf("doctor --plaintext:\n%s", r.stdout)
		}
	})
	t.Run("permissions", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("Windows protects the file with the profile's ACLs; there are no mode bits to check")
		}
		dir := testdir.New(t)
		cache := filepath.Join(dir, "msal.cache")
		if err := os.WriteFile(cache, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(cache, 0o644); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr := runIn(context.Background(), nil, "doctor", "--cache", cache, "--plaintext")
		if code != exitUnhealthy || !strings.Contains(stderr, "chmod 600") || !strings.Contains(stdout, "mode 0644") {
			t.Errorf("doctor on a 0644 cache file: exit %d\n%s\n%s", code, stdout, stderr)
		}
	})
}

// TestDemo runs the demo as a user would; it re-executes itself for the
// second process.
func TestDemo(t *testing.T) {
	t.Run("platform", func(t *testing.T) {
		mode := platformFlags(t)
		var env []string
		if len(mode) == 2 {
			env = []string{envKeyringItem + "=" + mode[1]}
		}
		r := cli(t, env, "demo").want(t, exitOK)
		for _, s := range []string{"LOCAL DEMO identity provider", "Signed in as alice@contoso.example",
			"received 0 requests", "encrypted cache file", "holds no token in clear", "exits with status 3", "Done."} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("demo output lacks %q:\n%s\nstderr:\n%s", s, r.stdout, r.stderr)
			}
		}
		if strings.Contains(r.stdout+r.stderr, "WARNING") {
			t.Errorf("demo warned with the platform protection available:\n%s\n%s", r.stdout, r.stderr)
		}
	})
	t.Run("no Secret Service", func(t *testing.T) {
		r := cli(t, noSessionBus(t), "demo").want(t, exitOK)
		for _, s := range []string{"WARNING: no platform protection here", "UNENCRYPTED", "received 0 requests", "Done."} {
			if !strings.Contains(r.stdout, s) {
				t.Errorf("demo output lacks %q:\n%s", s, r.stdout)
			}
		}
		if !strings.Contains(r.stderr, "WARNING: platform protection unavailable") {
			t.Errorf("the library's warning is not shown:\n%s", r.stderr)
		}
		if r.took > 20*time.Second {
			t.Errorf("the demo took %v without a Secret Service", r.took)
		}
	})
}

// TestInterrupt: cancelling (Ctrl-C) ends a login that waits for approval
// and a command that waits for the lock, with status 130, and leaves no
// lock behind.
func TestInterrupt(t *testing.T) {
	t.Run("device code wait", func(t *testing.T) {
		s := newSite(t, false, fakeidp.WithManualApproval())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan int, 1)
		go func() {
			code, _, _ := runIn(ctx, nil, s.args("login")...)
			done <- code
		}()
		waitFor(t, "a pending device code", func() bool { return len(s.idp.Pending()) > 0 })
		cancel()
		select {
		case code := <-done:
			if code != exitInterrupted {
				t.Errorf("exit %d, want %d", code, exitInterrupted)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("login did not return within 5 s of the cancel")
		}
		if _, err := os.Stat(s.cache + ".lockfile"); !os.IsNotExist(err) {
			t.Errorf("lock file after the interrupt: %v", err)
		}
	})
	t.Run("lock wait", func(t *testing.T) {
		cache := filepath.Join(testdir.New(t), "msal.cache")
		if err := os.WriteFile(cache, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		unlock, err := lock.New(cache + ".lockfile").Lock(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		code, _, stderr := runIn(ctx, nil, "logout", "--all", "--cache", cache, "--plaintext")
		if code != exitInterrupted || time.Since(start) > 5*time.Second {
			t.Errorf("logout --all waiting for a held lock, cancelled: exit %d after %v (%s); want %d at once",
				code, time.Since(start), stderr, exitInterrupted)
		}
		if _, err := os.Stat(cache); err != nil {
			t.Errorf("the cache file was removed without the lock: %v", err)
		}
		if _, err := os.Stat(cache + ".lockfile"); err != nil {
			t.Errorf("the holder's lock file is gone: %v", err)
		}
	})
	t.Run("Ctrl-C", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("Go cannot send Ctrl-C to another process on Windows; the cancellation itself is tested above")
		}
		s := newSite(t, false, fakeidp.WithManualApproval())
		cmd := exec.Command(os.Args[0], s.args("login")...)
		cmd.Env = baseEnv()
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill()
				<-exited
			}
		})
		waitFor(t, "the device code prompt", func() bool { return strings.Contains(stderr.String(), "Waiting for the sign-in") })
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			t.Fatal("login did not exit within 5 s of Ctrl-C")
		}
		if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || !strings.Contains(stderr.String(), "interrupted") {
			t.Errorf("exit %d, want %d; stderr:\n%s", code, exitInterrupted, stderr.String())
		}
	})
}
