package interop

// The test harness: the Node peer (peer.mjs on the real msal-node and
// msal-node-extensions from node_modules), Go writer processes (this test
// binary re-executed with a role), and MSAL-shaped cache entries.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/lock"
	"github.com/msalcache/msalcache/persistence"
)

const clientID = "0b6d4f1e-6f0a-4c53-9a39-3f2c1d5e7a11" // the same in peer.mjs

// npmInstall is the command that provides what the Node tests need.
const npmInstall = "cd interop && npm ci --ignore-scripts --no-audit --no-fund"

// Environment of a Go writer process.
const (
	envRole   = "INTEROP_ROLE"
	envCache  = "INTEROP_CACHE"
	envID     = "INTEROP_ID"
	envCount  = "INTEROP_COUNT"
	envMarker = "INTEROP_MARKER" // also passed to Node as PEER_MARKER
	envOurs   = "INTEROP_OURS"   // a second marker that only msalcache's writers make
	envStart  = "INTEROP_START"  // wait for this file before writing; PEER_START for Node
	envStop   = "INTEROP_STOP"   // stop early, before the count, once this file exists
	envGoOn   = "INTEROP_GO_ON"  // "1": record a failed write in the report and go on
	envHold   = "INTEROP_HOLD"   // "hold-for": how long to hold the lock each time
	envPause  = "INTEROP_PAUSE"  // wait 0 to this many ms between writes (else 1 to 5 ms)
)

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		if err := runRole(role); err != nil {
			fmt.Fprintf(os.Stderr, "go %s %s: %v\n", role, os.Getenv(envID), err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// requireNode returns the absolute path of peer.mjs, or skips (fails when
// the test command promises every service) if node or the npm packages are
// missing.
func requireNode(t testing.TB) string {
	t.Helper()
	miss := func(what string) {
		t.Helper()
		msg := fmt.Sprintf("%s: install Node.js 20+ and run `%s`", what, npmInstall)
		if runtime.GOOS == "windows" {
			msg += " (under Wine, scripts/wintest.sh puts a Windows node.exe from WINTEST_NODE_DIR on the PATH)"
		}
		if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("node"); err != nil {
		miss("node is not on PATH")
	}
	for _, pkg := range []string{"@azure/msal-node", "@azure/msal-node-extensions"} {
		if _, err := os.Stat(filepath.Join("node_modules", pkg, "package.json")); err != nil {
			miss("interop/node_modules/" + pkg + " is missing")
		}
	}
	peer, err := filepath.Abs("peer.mjs")
	if err != nil {
		t.Fatal(err)
	}
	return peer
}

// proc is a child process whose stdout is kept and whose stderr is shown
// when the test fails.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func startProc(t testing.TB, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd}
	cmd.Stdout, cmd.Stderr = &p.stdout, &p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() && p.stderr.Len() > 0 {
			t.Logf("%s stderr:\n%s", name, p.stderr.String())
		}
	})
	return p
}

// wait waits for the process, at most d, and returns its error.
func (p *proc) wait(d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w: %s", p.name, err, strings.TrimSpace(p.stderr.String()))
		}
		return nil
	case <-time.After(d):
		p.cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s: still running after %v; killed", p.name, d)
	}
}

// nodeCmd is `node peer.mjs args...` with env added to this environment.
func nodeCmd(peer string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command("node", append([]string{peer}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// pyPeer runs peer.py with a Python that has MSAL Python and its extensions.
type pyPeer struct {
	python string // the interpreter
	peer   string // peer.py
}

// cmd is `python3 peer.py args...` with env added to this environment.
func (p pyPeer) cmd(env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(p.python, append([]string{p.peer}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// dump is the cache as MSAL Python's PersistedTokenCache loads it.
func (p pyPeer) dump(t testing.TB, path string) dump {
	t.Helper()
	pr := startProc(t, "python dump", p.cmd(nil, "dump", path))
	if err := pr.wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	var d dump
	if err := json.Unmarshal(pr.stdout.Bytes(), &d); err != nil {
		t.Fatalf("python dump: %q: %v", pr.stdout.String(), err)
	}
	return d
}

// goCmd is this test binary in a writer role.
func goCmd(role string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{envRole + "=" + role}, env...)...)
	return cmd
}

// startHolder starts a process that takes the lock and reports "locked" on
// its stdout, and waits for that line.
func startHolder(t testing.TB, name string, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
		io.Copy(io.Discard, out)
	}()
	select {
	case s := <-line:
		if s != "locked" {
			t.Fatalf("%s did not take the lock: %q %s", name, s, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not take the lock within 20s: %s", name, stderr.String())
	}
	return cmd
}

// kill kills a process and reaps it, so that its pid is dead.
func kill(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

// report is what a writer prints when it is done: peer.mjs's and peer.py's
// JSON, and the same fields for the Go writers.
type report struct {
	Pid              int      `json:"pid"`
	Writes           int      `json:"writes"`
	Overlaps         int      `json:"overlaps"`
	OurOverlaps      int      `json:"ourOverlaps"` // Go writers: another msalcache process was inside too
	InvalidUnderLock int      `json:"invalidUnderLock"`
	ReloadsSkipped   int      `json:"reloadsSkipped"` // Node
	Destroyed        []string `json:"destroyed"`
	Ms               int64    `json:"ms"` // from the start gate to the last write

	Errors []string `json:"errors"` // failed writes (Go writers with envGoOn, Python)
	MaxMs  int64    `json:"maxMs"`  // the longest write (Go writers)
	// Cache writers: the warnings msalcache logged.
	Warnings []string `json:"warnings"`
	// Lock package writers: unlocks that found the lock file deleted or
	// replaced by another program (MSAL Python, after going ahead without
	// the lock), which the lock package reports; the write stands.
	UnlockErrors []string `json:"unlockErrors"`

	// Python only.
	Written       []int `json:"written"`       // the writes whose access token was saved
	GaveUp        int   `json:"gaveUp"`        // lock entries after its 5 s exclusive create timed out
	LockWaitMaxMs int64 `json:"lockWaitMaxMs"` // the longest wait to enter the lock
	ReloadsMissed int   `json:"reloadsMissed"` // modifies that did not reload a changed file
	// Of those, the ones whose file carried a msalcache stamp (a whole
	// millisecond; meaningful on file systems with fine timestamps).
	ReloadsMissedStamped int   `json:"reloadsMissedStamped"`
	MissedByUs           int64 `json:"missedByUs"` // how far the latest such change's mtime lay before its last save
	Saves                int   `json:"saves"`
	// Reloads that found the file empty after it had held a cache (another
	// in-place writer had just truncated it): MSAL Python takes that for
	// an empty cache.
	EmptyReloads int `json:"emptyReloads"`
	// Saves that found the file they truncate empty after it had held a
	// cache: what they overwrote is not known.
	BlindSaves int `json:"blindSaves"`
}

func parseReport(p *proc) (report, error) {
	var r report
	if err := json.Unmarshal(p.stdout.Bytes(), &r); err != nil {
		return r, fmt.Errorf("%s: report %q: %w", p.name, p.stdout.String(), err)
	}
	return r, nil
}

// The entries the writers add: access tokens with MSAL's keys, one per
// write, named after the writer and the write's number.

// nodeKey is the key msal-node gives peer.mjs's entry i of writer id.
func nodeKey(id string, i int) string {
	return fmt.Sprintf("%s-uid.interop-tenant-login.interop.example-accesstoken-%s-interop-tenant-api://interop/%s/%d-", id, clientID, id, i)
}

// goKey is the key MSAL Go gives such an entry.
func goKey(id string, i int) string {
	return fmt.Sprintf("%s-uid.interop-tenant-login.interop.example-accesstoken-%s-interop-tenant-api://interop/%s/%d", id, clientID, id, i)
}

// goEntry is an access token entry as MSAL Go writes it.
func goEntry(id string, i int) json.RawMessage {
	now := time.Now().Unix()
	b, _ := json.Marshal(map[string]string{
		"home_account_id":     id + "-uid.interop-tenant",
		"environment":         "login.interop.example",
		"credential_type":     "AccessToken",
		"client_id":           clientID,
		"secret":              fmt.Sprintf("go-secret-%s-%d", id, i),
		"realm":               "interop-tenant",
		"target":              fmt.Sprintf("api://interop/%s/%d", id, i),
		"cached_at":           strconv.FormatInt(now, 10),
		"expires_on":          strconv.FormatInt(now+3600, 10),
		"extended_expires_on": strconv.FormatInt(now+3600, 10),
		"token_type":          "Bearer",
	})
	return b
}

// msalJSON is an MSAL cache document: sections of entries, and whatever
// else a library put at the top (kept as is).
type msalJSON map[string]json.RawMessage

// parseMSAL decodes an MSAL cache document; an empty one is empty.
func parseMSAL(data []byte) (msalJSON, error) {
	doc := msalJSON{}
	if len(bytes.TrimSpace(data)) == 0 {
		return doc, nil
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not MSAL cache JSON: %w", err)
	}
	if doc == nil {
		return nil, errors.New("not MSAL cache JSON: null")
	}
	for name, v := range doc {
		if name == "AccessToken" || name == "Account" || name == "RefreshToken" || name == "IdToken" || name == "AppMetadata" {
			var section map[string]json.RawMessage
			if err := json.Unmarshal(v, &section); err != nil {
				return nil, fmt.Errorf("not MSAL cache JSON: section %s: %w", name, err)
			}
		}
	}
	return doc, nil
}

// section returns the entries of one section.
func (d msalJSON) section(name string) map[string]json.RawMessage {
	s := map[string]json.RawMessage{}
	json.Unmarshal(d[name], &s)
	return s
}

// add adds an entry to a section.
func (d msalJSON) add(name, key string, entry json.RawMessage) {
	s := d.section(name)
	s[key] = entry
	d[name], _ = json.Marshal(s)
}

func (d msalJSON) bytes() []byte {
	b, _ := json.Marshal(d)
	return b
}

// readMSAL reads and decodes a cache file without any lock.
// loadMSAL loads the cache at path the way a fresh msalcache process does.
func loadMSAL(t testing.TB, ctx context.Context, path string) msalJSON {
	t.Helper()
	c, err := msalcache.New(path, msalcache.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	target := &jsonTarget{}
	if err := c.Replace(ctx, target, cache.ReplaceHints{}); err != nil {
		t.Fatal(err)
	}
	d, err := parseMSAL(target.data)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func readMSAL(t testing.TB, path string) msalJSON {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseMSAL(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return d
}

// jsonTarget stands for MSAL Go's cache object: it keeps the JSON it was
// given (cache.Unmarshaler) and hands it back (cache.Marshaler).
type jsonTarget struct{ data []byte }

func (j *jsonTarget) Unmarshal(b []byte) error {
	j.data = append([]byte(nil), b...)
	return nil
}

func (j *jsonTarget) Marshal() ([]byte, error) {
	if len(j.data) == 0 {
		return []byte("{}"), nil
	}
	return j.data, nil
}

// addGo adds entry i of writer id to the target as MSAL Go would after a
// token response.
func (j *jsonTarget) addGo(id string, i int) error {
	d, err := parseMSAL(j.data)
	if err != nil {
		return err
	}
	d.add("AccessToken", goKey(id, i), goEntry(id, i))
	j.data = d.bytes()
	return nil
}

// goWrite adds entries through a msalcache.Cache the way MSAL Go does:
// Replace before, Export after.
func goWrite(ctx context.Context, c *msalcache.Cache, t *jsonTarget, id string, i int) error {
	if err := c.Replace(ctx, t, cache.ReplaceHints{}); err != nil {
		return err
	}
	if err := t.addGo(id, i); err != nil {
		return err
	}
	return c.Export(ctx, t, cache.ExportHints{})
}

func runRole(role string) error {
	path, id := os.Getenv(envCache), os.Getenv(envID)
	count, _ := strconv.Atoi(os.Getenv(envCount))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	switch role {
	case "hold": // a msalcache process that takes the lock and is killed
		if _, err := lock.New(path + ".lockfile").Lock(ctx); err != nil {
			return err
		}
		fmt.Println("locked")
		<-ctx.Done()
		return ctx.Err()
	case "cache-writer":
		return cacheWriter(ctx, path, id, count)
	case "lock-writer":
		return lockWriter(ctx, path, id, count)
	case "hold-for": // a msalcache process that holds the lock for a while, count times
		return holdFor(ctx, path, count)
	}
	return fmt.Errorf("unknown role %q", role)
}

// waitStart says this writer is ready ("<gate>.ready.<id>") and waits for
// the start gate, so that all writers begin together.
func waitStart(ctx context.Context) error {
	gate := os.Getenv(envStart)
	if gate != "" {
		if err := os.WriteFile(gate+".ready."+os.Getenv(envID), nil, 0o600); err != nil {
			return err
		}
	}
	for gate != "" {
		if _, err := os.Stat(gate); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the start gate: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// cacheWriter adds count entries through msalcache.Cache (plaintext).
func cacheWriter(ctx context.Context, path, id string, count int) error {
	var r report
	c, err := msalcache.New(path, msalcache.WithPlaintext(), msalcache.WithLogger(slog.New(warnings{&r})))
	if err != nil {
		return err
	}
	if err := waitStart(ctx); err != nil {
		return err
	}
	r.Pid = os.Getpid()
	start := time.Now()
	t := &jsonTarget{}
	for i := 0; i < count && !stopped(); i++ {
		ws := time.Now()
		err := goWrite(ctx, c, t, id, i)
		r.MaxMs = max(r.MaxMs, time.Since(ws).Milliseconds())
		if err != nil {
			if err := failed(&r, i, err); err != nil {
				return err
			}
		}
		r.Writes++
		pause(i)
	}
	r.Ms = time.Since(start).Milliseconds()
	return json.NewEncoder(os.Stdout).Encode(r)
}

// warnings is a slog.Handler that records the messages of warnings in a
// report (the writer's goroutine is the only one that logs).
type warnings struct{ r *report }

func (w warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w warnings) Handle(_ context.Context, rec slog.Record) error {
	w.r.Warnings = append(w.r.Warnings, rec.Message)
	return nil
}
func (w warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w warnings) WithGroup(string) slog.Handler      { return w }

// stopped reports whether the stop file exists.
func stopped() bool {
	stop := os.Getenv(envStop)
	if stop == "" {
		return false
	}
	_, err := os.Stat(stop)
	return err == nil
}

// failed records a failed write i when the writer goes on after failures,
// and otherwise returns the error that ends the writer. A writer that goes
// on still counts the write: MSAL keeps the entry in memory and the next
// successful Export saves it.
func failed(r *report, i int, err error) error {
	if os.Getenv(envGoOn) != "1" {
		return fmt.Errorf("write %d: %w", i, err)
	}
	r.Errors = append(r.Errors, fmt.Sprintf("write %d: %v", i, err))
	return nil
}

// holdFor takes the lock count times and holds it each time for the
// duration in envHold, marking its time inside like the writers, with a
// short break in between: an app on a sister library that holds the lock
// across a slow network call.
func holdFor(ctx context.Context, path string, count int) error {
	d, err := time.ParseDuration(os.Getenv(envHold))
	if err != nil {
		return err
	}
	if err := waitStart(ctx); err != nil {
		return err
	}
	var r report
	r.Pid = os.Getpid()
	l := lock.New(path + ".lockfile")
	for range count {
		unlock, err := l.Lock(ctx)
		if err != nil {
			return err
		}
		unmark, err := mark(&r)
		if err != nil {
			unlock()
			return err
		}
		time.Sleep(d)
		unmark()
		if err := unlock(); err != nil {
			r.UnlockErrors = append(r.UnlockErrors, err.Error())
		}
		r.Writes++
		time.Sleep(d / 4)
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// mark creates the marker files inside the lock: the one every writer
// makes, and the one only msalcache's writers make. If one exists, another
// process is inside too, and that is counted. The returned func removes the
// markers this process created.
func mark(r *report) (unmark func(), err error) {
	unmarkAll, err := markOne(os.Getenv(envMarker), &r.Overlaps)
	if err != nil {
		return nil, err
	}
	unmarkOurs, err := markOne(os.Getenv(envOurs), &r.OurOverlaps)
	if err != nil {
		unmarkAll()
		return nil, err
	}
	return func() { unmarkOurs(); unmarkAll() }, nil
}

func markOne(marker string, overlaps *int) (unmark func(), err error) {
	if marker == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(marker, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		f.Close()
		return func() { os.Remove(marker) }, nil
	case errors.Is(err, fs.ErrExist):
		*overlaps++
		return func() {}, nil
	}
	return nil, err
}

// lockWriter adds count entries with msalcache's lock package and its own
// read-modify-write, marking its critical section with the marker files.
// A file that is not MSAL JSON under the lock, or empty (the run seeds it,
// so it is empty only while a writer that ignores the lock rewrites it in
// place), is counted and not written over: that write is tried again.
func lockWriter(ctx context.Context, path, id string, count int) error {
	l := lock.New(path + ".lockfile")
	if err := waitStart(ctx); err != nil {
		return err
	}
	var r report
	r.Pid = os.Getpid()
	start := time.Now()
	for i := 0; i < count && !stopped(); {
		ws := time.Now()
		unlock, err := l.Lock(ctx)
		if err != nil {
			return err
		}
		wrote := false
		err = func() error {
			unmark, err := mark(&r)
			if err != nil {
				return err
			}
			defer unmark()
			data, err := os.ReadFile(path)
			missing := errors.Is(err, fs.ErrNotExist)
			if err != nil && !missing {
				return err
			}
			d, err := parseMSAL(data)
			if err != nil || !missing && len(bytes.TrimSpace(data)) == 0 {
				r.InvalidUnderLock++
				return nil
			}
			d.add("AccessToken", goKey(id, i), goEntry(id, i))
			if err := writeAtomic(path, d.bytes()); err != nil {
				return err
			}
			wrote = true
			return nil
		}()
		if uerr := unlock(); uerr != nil {
			r.UnlockErrors = append(r.UnlockErrors, uerr.Error())
		}
		r.MaxMs = max(r.MaxMs, time.Since(ws).Milliseconds())
		if err != nil {
			if err := failed(&r, i, err); err != nil {
				return err
			}
			wrote = true // counted, as failed says
		}
		if wrote {
			r.Writes++
			i++
		}
		pause(i)
	}
	r.Ms = time.Since(start).Milliseconds()
	return json.NewEncoder(os.Stdout).Encode(r)
}

// pause lets the other writers in now and then, as an app between token
// requests would: a Node process polls for the lock every few milliseconds,
// a Python process every 250 ms (envPause makes room for it).
func pause(i int) {
	if ms, err := strconv.Atoi(os.Getenv(envPause)); err == nil && ms > 0 {
		time.Sleep(rand.N(time.Duration(ms) * time.Millisecond))
		return
	}
	time.Sleep(time.Duration(1+i%5) * time.Millisecond)
}

// writeAtomic replaces path with data the way msalcache does (on Windows
// that includes retrying a rename that a reader's open handle refuses).
func writeAtomic(path string, data []byte) error {
	f, err := persistence.NewFile(path, persistence.Plaintext())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = f.Write(ctx, data)
	return err
}

// dump is what `node peer.mjs dump` prints: the cache as msal-node loads it.
type dump struct {
	HomeAccountIDs []string `json:"homeAccountIds"` // of the accounts getAllAccounts returns
	Usernames      []string `json:"usernames"`      // of the account entities in memory
	AccessTokens   []string `json:"accessTokens"`
	Secrets        []string `json:"secrets"`
}

func nodeDump(t testing.TB, peer, path string) dump {
	t.Helper()
	p := startProc(t, "node dump", nodeCmd(peer, nil, "dump", path))
	if err := p.wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	var d dump
	if err := json.Unmarshal(p.stdout.Bytes(), &d); err != nil {
		t.Fatalf("node dump: %q: %v", p.stdout.String(), err)
	}
	return d
}
