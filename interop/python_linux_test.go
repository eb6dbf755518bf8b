package interop

// MSAL Python next to msalcache: the Python peer (peer.py on Debian's
// python3-msal and python3-msal-extensions) and the tests that run it. Linux
// only: that is where the test command installs those packages.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/public"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/testdir"
)

// pyInstall is the command that provides what the Python tests need.
const pyInstall = "apt-get install python3-msal python3-msal-extensions"

// requirePython returns the Python peer, or skips (fails when the test
// command promises every service) if no python3 on PATH, nor Debian's
// /usr/bin/python3, imports msal and msal_extensions.
func requirePython(t testing.TB) pyPeer {
	t.Helper()
	peer, err := filepath.Abs("peer.py")
	if err != nil {
		t.Fatal(err)
	}
	var tried []string
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		python, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		out, err := exec.Command(python, "-c", "import msal, msal_extensions; print(msal.__version__, msal_extensions.__version__)").CombinedOutput()
		if err == nil {
			t.Logf("%s: msal and msal_extensions %s", python, strings.TrimSpace(string(out)))
			return pyPeer{python: python, peer: peer}
		}
		tried = append(tried, python)
	}
	msg := fmt.Sprintf("no python3 with MSAL Python and its extensions (tried %s): run `%s`", strings.Join(tried, ", "), pyInstall)
	if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return pyPeer{}
}

// TestPythonConcurrentWriters runs two MSAL Python writers
// (PersistedTokenCache over FilePersistence, TokenCache.add as
// acquire_token_* calls it) next to a msalcache Cache writer and a writer on
// msalcache's lock package, all on one plaintext file, every one writing
// all its entries, and checks what TestConcurrentWriters checks for Node:
// no two processes inside the lock at once (the O_EXCL marker), valid MSAL
// JSON under the lock and at the end, every missing entry removed by a
// Python save (peer.py records what each save drops, read from the file it
// truncates), so msalcache lost none, and each side loads everything.
//
// The "python-only" run is the baseline: what msal-extensions loses among
// its own processes.
func TestPythonConcurrentWriters(t *testing.T) {
	p := peers{python: requirePython(t)}
	runs := []struct {
		name    string
		writers []writer
	}{
		{"python+msalcache", []writer{
			{"python", "p1", 60}, {"python", "p2", 60},
			{"cache", "gc", 60}, {"lock", "gl", 60},
		}},
		{"python-only", []writer{
			{"python", "p1", 60}, {"python", "p2", 60}, {"python", "p3", 60},
		}},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			// Everyone pauses up to 300 ms between writes, as apps do between
			// token requests. Python tries the lock every 250 ms and gives up
			// waiting after 5 s: writers that take the lock back to back
			// starve it (TestPythonLockTimeoutStress, whose promises check
			// still applies if that happens here on a loaded machine).
			rn := run{writers: r.writers, until: untilAll, pause: 300 * time.Millisecond, goOn: true}
			res := runWriters(t, p, rn)
			res.check(t, rn)
			t.Logf("%s: %s", r.name, res.summary())
		})
	}
}

// TestPythonKilledHoldingLock: a Python process killed inside CrossPlatLock
// leaves "<cache>.lockfile" with "pid argv0" and no OS lock (the kernel
// drops its flock). msalcache waits while that process lives (it holds the
// flock) and, once it is dead, takes the file over at once and writes.
// Python then writes on the file again and loads msalcache's entry.
func TestPythonKilledHoldingLock(t *testing.T) {
	py := requirePython(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	c, err := msalcache.New(path, msalcache.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}

	holder := startHolder(t, "python hold", py.cmd(nil, "hold", path))
	content, err := os.ReadFile(path + ".lockfile")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d %s", holder.Process.Pid, py.peer); string(content) != want {
		t.Fatalf("Python's lock file holds %q, want %q", content, want)
	}

	takeOverDeadHolder(t, c, path, holder, "Python")

	rep := py.write(t, path, "p", 1)
	if rep.GaveUp != 0 {
		t.Errorf("Python waited out its lock timeout %d times after msalcache released the lock", rep.GaveUp)
	}
	d := py.dump(t, path)
	if !slices.Equal(d.Secrets, []string{"go-secret-g-0", "py-secret-p-0"}) {
		t.Errorf("Python loads secrets %v, want msalcache's and its own", d.Secrets)
	}
}

// TestCrashedGoHolderSeenByPython: a msalcache process killed while it
// holds the lock leaves "<cache>.lockfile" with its dead pid. MSAL Python
// does not look at the pid: its exclusive create fails for 5 s, then it
// goes on anyway, takes the flock (which nobody holds), writes, and deletes
// the file when done. So a Python app alone pays 5 s once. When a msalcache
// process writes meanwhile, it takes the stale file over at once and deletes
// it on release, and Python goes on at its next try (every 0.25 s), without
// waiting out its timeout.
func TestCrashedGoHolderSeenByPython(t *testing.T) {
	py := requirePython(t)
	t.Run("python alone", func(t *testing.T) {
		path := filepath.Join(testdir.New(t), "msal.cache")
		kill(t, startHolder(t, "go hold", goCmd("hold", envCache+"="+path)))
		if _, err := os.Stat(path + ".lockfile"); err != nil {
			t.Fatalf("the killed msalcache process left no lock file: %v", err)
		}
		start := time.Now()
		rep := py.write(t, path, "p", 1)
		took := time.Since(start)
		if rep.GaveUp != 1 || rep.Writes != 1 {
			t.Errorf("Python with a stale msalcache lock file: %d writes, gave up waiting %d times; want 1 write after giving up once", rep.Writes, rep.GaveUp)
		}
		if took < 5*time.Second {
			t.Errorf("Python went on after %v, want its 5 s timeout", took)
		}
		if _, err := os.Stat(path + ".lockfile"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("lock file after Python went on and left: %v, want none (it deletes it)", err)
		}
		t.Logf("Python alone went on past the stale lock file after %v (longest lock wait %v)", took.Round(time.Millisecond), time.Duration(rep.LockWaitMaxMs)*time.Millisecond)

		c, err := msalcache.New(path, msalcache.WithPlaintext())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := goWrite(ctx, c, &jsonTarget{}, "g", 0); err != nil {
			t.Fatal(err)
		}
		if d := py.dump(t, path); !slices.Equal(d.Secrets, []string{"go-secret-g-0", "py-secret-p-0"}) {
			t.Errorf("Python loads secrets %v, want msalcache's and its own", d.Secrets)
		}
	})
	t.Run("msalcache comes by", func(t *testing.T) {
		path := filepath.Join(testdir.New(t), "msal.cache")
		kill(t, startHolder(t, "go hold", goCmd("hold", envCache+"="+path)))
		gate := path + ".start"
		pr := startProc(t, "python write", py.cmd([]string{"PEER_START=" + gate}, "write", path, "p", "1"))
		waitFile(t, gate+".ready.p", 30*time.Second)
		if err := os.WriteFile(gate, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // Python is retrying its exclusive create
		c, err := msalcache.New(path, msalcache.WithPlaintext())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := goWrite(ctx, c, &jsonTarget{}, "g", 0); err != nil {
			t.Fatalf("msalcache did not recover the lock of its dead process: %v", err)
		}
		if err := pr.wait(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		rep, err := parseReport(pr)
		if err != nil {
			t.Fatal(err)
		}
		if rep.GaveUp != 0 || rep.Writes != 1 {
			t.Errorf("Python after msalcache cleared the stale lock: %d writes, gave up waiting %d times; want 1 write, no give-up", rep.Writes, rep.GaveUp)
		}
		t.Logf("Python waited %v for the lock a msalcache process cleared", time.Duration(rep.LockWaitMaxMs)*time.Millisecond)
		if d := py.dump(t, path); !slices.Equal(d.Secrets, []string{"go-secret-g-0", "py-secret-p-0"}) {
			t.Errorf("Python loads secrets %v, want msalcache's and its own", d.Secrets)
		}
	})
}

// pyClient is what `peer.py client` prints.
type pyClient struct {
	Usernames      []string `json:"usernames"`
	HomeAccountIDs []string `json:"homeAccountIds"`
	Tokens         []struct {
		Scope       string `json:"scope"`
		AccessToken string `json:"accessToken"`
		Error       string `json:"error"`
	} `json:"tokens"`
}

// TestRealMSALPythonBothWays: a real MSAL Go client signs in through
// msalcache against the local identity provider. A real MSAL Python
// PublicClientApplication on the same file (PersistedTokenCache over
// FilePersistence) finds the account, gets MSAL Go's token silently without
// asking the identity provider, and redeems MSAL Go's refresh token for a
// new scope, saving the new token in the file. A fresh MSAL Go client on
// msalcache then finds the account and gets Python's new token silently,
// and its own write keeps Python's entries.
func TestRealMSALPythonBothWays(t *testing.T) {
	py := requirePython(t)
	idp, err := fakeidp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	dir := testdir.New(t)
	path := filepath.Join(dir, "msal.cache")
	cert := filepath.Join(dir, "idp.pem")
	if err := os.WriteFile(cert, idp.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	newApp := func() public.Client {
		t.Helper()
		c, err := msalcache.New(path, msalcache.WithPlaintext())
		if err != nil {
			t.Fatal(err)
		}
		app, err := public.New(clientID, public.WithAuthority(idp.Authority()),
			public.WithInstanceDiscovery(false), public.WithHTTPClient(idp.HTTPClient()), public.WithCache(c))
		if err != nil {
			t.Fatal(err)
		}
		return app
	}

	idp.SetNextUser("alice@contoso.example")
	dc, err := newApp().AcquireTokenByDeviceCode(ctx, []string{"api://interop/read"})
	if err != nil {
		t.Fatal(err)
	}
	login, err := dc.AuthenticationResult(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// MSAL Python reads what MSAL Go wrote, and writes a token of its own.
	before := idp.Requests()
	// requests prefers these variables to the verify argument MSAL passes on.
	trust := []string{"REQUESTS_CA_BUNDLE=" + cert, "CURL_CA_BUNDLE=" + cert}
	pr := startProc(t, "python client", py.cmd(trust, "client", path, idp.Authority(), cert, "api://interop/read", "api://interop/write"))
	if err := pr.wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	var got pyClient
	if err := json.Unmarshal(pr.stdout.Bytes(), &got); err != nil {
		t.Fatalf("python client: %q: %v", pr.stdout.String(), err)
	}
	if !slices.Equal(got.Usernames, []string{"alice@contoso.example"}) || !slices.Equal(got.HomeAccountIDs, []string{login.Account.HomeAccountID}) {
		t.Fatalf("MSAL Python finds accounts %v %v in MSAL Go's cache, want alice (%s)", got.Usernames, got.HomeAccountIDs, login.Account.HomeAccountID)
	}
	if len(got.Tokens) != 2 || got.Tokens[0].AccessToken != login.AccessToken {
		t.Errorf("MSAL Python's silent token for the scope MSAL Go signed in with: %+v; want MSAL Go's cached token", got.Tokens)
	}
	after := idp.Requests()
	if n := after.RefreshTokenGrant - before.RefreshTokenGrant; n != 1 || after.Token-before.Token != 1 {
		t.Errorf("MSAL Python made %d token requests, %d with the refresh token; want exactly 1, redeeming MSAL Go's refresh token for the new scope", after.Token-before.Token, n)
	}
	if len(got.Tokens) != 2 || got.Tokens[1].AccessToken == "" {
		t.Fatalf("MSAL Python could not get a token for a new scope with MSAL Go's refresh token: %+v", got.Tokens)
	}
	pyToken := got.Tokens[1].AccessToken

	// MSAL Go reads what Python wrote.
	app := newApp()
	accounts, err := app.Accounts(ctx)
	if err != nil || len(accounts) != 1 || accounts[0].PreferredUsername != "alice@contoso.example" {
		t.Fatalf("MSAL Go after Python wrote the cache: accounts %v, %v; want alice", accounts, err)
	}
	before = idp.Requests()
	for scope, want := range map[string]string{"api://interop/read": login.AccessToken, "api://interop/write": pyToken} {
		res, err := app.AcquireTokenSilent(ctx, []string{scope}, public.WithSilentAccount(accounts[0]))
		if err != nil || res.AccessToken != want {
			t.Errorf("MSAL Go's silent token for %s after Python wrote the cache: %v; want the one in the file", scope, err)
		}
	}
	if got := idp.Requests(); got.Token != before.Token {
		t.Errorf("MSAL Go asked the identity provider %d times for tokens the cache holds", got.Token-before.Token)
	}

	// msalcache's write keeps Python's entries, and Python loads it.
	if _, err := app.AcquireTokenSilent(ctx, []string{"api://interop/admin"}, public.WithSilentAccount(accounts[0])); err != nil {
		t.Fatalf("MSAL Go redeeming the refresh token Python rewrote: %v", err)
	}
	d := py.dump(t, path)
	if len(d.Secrets) != 3 || !slices.Contains(d.Secrets, pyToken) || !slices.Contains(d.Secrets, login.AccessToken) {
		t.Errorf("MSAL Python loads %d access tokens, want 3 (MSAL Go's 2, its own 1)", len(d.Secrets))
	}
}

// TestPythonLockTimeoutStress: MSAL Python waits at most 5 s for its lock
// file; then it logs "failed to create lock file" and goes on anyway: it
// takes the flock of whatever file the path names (after its holder
// released it, an unlinked file), writes the cache in place with nobody
// excluded, and on leaving deletes the lock file by name, which may be
// another process's. Here a msalcache process holds the lock 7 s, three
// times, while two Python writers, a msalcache Cache writer and two writers
// on msalcache's lock package run, all pausing at most 20 ms between
// writes. What happens is reported (Python's
// give-ups and missed reloads, the lock files it deleted under msalcache,
// what each writer lost); what msalcache promises is checked:
//
//   - the scenario happened: Python gave up waiting at least once;
//   - msalcache's processes never held the lock together (the lock writers
//     and the holder make a marker of their own; the Cache writer's
//     overlaps would show as its losses), although Python deleted their
//     lock file: the lock package's own lock file keeps them apart;
//   - msalcache lost nothing that a Python save did not itself overwrite
//     (peer.py records what each save removes from the file it truncates;
//     its saves take turns under a lock of the test's own, so that what a
//     save reads first is never another Python process's in-place write
//     caught half done, and the check that no save read such a file holds
//     whatever the run). Python's saves without the lock do remove
//     msalcache's entries, and some remove nearly all: a Python process
//     that reloads the file while another one, also without the lock, has
//     just truncated it loads an empty cache (MSAL Python's deserialize
//     takes an empty file for an empty cache), and its next save writes
//     what it holds then over everything;
//   - the Cache writer's Exports did not fail (a lock file deleted under
//     it is logged, not returned: the write is in the file);
//   - at the end every library loads the same, valid file.
func TestPythonLockTimeoutStress(t *testing.T) {
	p := peers{python: requirePython(t)}
	rn := run{
		writers: []writer{
			{"python", "p1", 10}, {"python", "p2", 10},
			{"cache", "gc", 10000}, {"lock", "gl1", 10000}, {"lock", "gl2", 10000},
			{"hold-for", "h", 3},
		},
		until: untilPeers,
		goOn:  true,
		pause: 20 * time.Millisecond,
		hold:  7 * time.Second,
	}
	res := runWriters(t, p, rn)
	t.Logf("stress: %s", res.summary())
	if !res.gaveUp() {
		t.Fatal("no Python writer waited out its 5 s lock timeout: the run did not test what it is for")
	}
	res.check(t, rn)
}

// write runs one Python writer alone and returns its report.
func (p pyPeer) write(t testing.TB, path, id string, count int) report {
	t.Helper()
	pr := startProc(t, "python write "+id, p.cmd(nil, "write", path, id, strconv.Itoa(count)))
	if err := pr.wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	rep, err := parseReport(pr)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) > 0 {
		t.Fatalf("python write %s failed: %s", id, rep.Errors[0])
	}
	return rep
}
