//go:build !windows

// Real replicas (separate processes) on a real redis-server, driven by a
// real browser. Not under Wine: no Chromium or redis-server there.

package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/msalcache/msalcache/internal/fakeidp"
	"github.com/msalcache/msalcache/internal/redistest"
)

// replicaProcs is the identity provider and web-app replicas running as
// separate processes on one Redis.
type replicaProcs struct {
	idp    *fakeidp.Server
	redis  *redistest.Server
	caFile string
	key    string
	urls   []string
	procs  []*proc
}

// startReplicas starts the identity provider and `web-app serve` twice, A
// and B, on redis.
func startReplicas(t *testing.T, redis *redistest.Server) *replicaProcs {
	t.Helper()
	rp := startReplicasOn(t, "--redis", redis.URL())
	rp.redis = redis
	return rp
}

// startReplicasOn starts the identity provider and `web-app serve` twice, A
// and B, on the store that storeArgs name.
func startReplicasOn(t *testing.T, storeArgs ...string) *replicaProcs {
	t.Helper()
	idp, err := fakeidp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	rp := &replicaProcs{idp: idp, caFile: filepath.Join(t.TempDir(), "idp.pem"),
		key: base64.StdEncoding.EncodeToString(randomKey())}
	if err := os.WriteFile(rp.caFile, idp.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for range 2 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(port))
		rp.urls = append(rp.urls, "http://"+addrs[len(addrs)-1])
	}
	if err := idp.RegisterClient(fakeidp.ConfidentialClient{ID: testClientID, Secret: testSecret,
		RedirectURIs: []string{rp.urls[0] + "/callback", rp.urls[1] + "/callback"}}); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"A", "B"} {
		args := append([]string{"serve", "--client-id", testClientID, "--authority", idp.Authority(), "--ca-file", rp.caFile,
			"--addr", addrs[i], "--name", name, "--scopes", testScope, "--api-url", idp.MeURL()}, storeArgs...)
		p := start(t, []string{envClientSecret + "=" + testSecret, envKey + "=" + rp.key}, args...)
		rp.procs = append(rp.procs, p)
	}
	for i, u := range rp.urls {
		waitFor(t, 30*time.Second, "replica "+u, func() bool {
			resp, err := http.Get(u + "/healthz")
			if err == nil {
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			}
			select {
			case <-rp.procs[i].done:
				t.Fatalf("replica %s exited: %s", u, rp.procs[i].stderr)
			default:
			}
			return false
		})
	}
	return rp
}

// partitionGone checks, through a client of its own on the same Redis and
// key, that the store holds no account for user.
func (rp *replicaProcs) partitionGone(user fakeidp.User) error {
	keys, err := parseKeys(rp.key)
	if err != nil {
		return err
	}
	tc, err := openTokenCache(&storeOptions{store: "redis", redisURL: rp.redis.URL()}, keys, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return err
	}
	defer tc.Close()
	ao := appOptions{clientID: testClientID, authority: rp.idp.Authority(), clientSecret: testSecret, caFile: rp.caFile}
	app, _, err := ao.newClient(tc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	acct, err := app.Account(ctx, user.HomeAccountID)
	if err != nil || acct.HomeAccountID == "" {
		return nil
	}
	if _, err := app.AcquireTokenSilent(ctx, []string{testScope}, confidential.WithSilentAccount(acct)); err == nil {
		return fmt.Errorf("the store still serves %s's tokens after sign-out", user.Username)
	}
	return nil
}

// TestBrowserTwoReplicas is the whole flow in Chromium: sign-in on replica
// A, the API page on replica B (served from Redis: no token request),
// sign-out on B, and A no longer has the user; every page is checked for
// tokens, stack traces and unescaped values, and screenshotted.
func TestBrowserTwoReplicas(t *testing.T) {
	chromium := requireChromium(t)
	redistest.Require(t)
	rp := startReplicas(t, redistest.Start(t))
	// A username with markup: every page that shows it must escape it.
	username := `<b>o'neil</b>&co@contoso.example`
	user, err := rp.idp.AddUser(rp.idp.Tenant(), username)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := spkiHash(rp.idp.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	shots := filepath.Join(t.TempDir(), "screenshots")
	var out syncBuffer
	var before fakeidp.Counts
	c := &browserCheck{a: rp.urls[0], b: rp.urls[1], username: username, shots: shots, out: &out,
		trustSPKI: spki, chromium: chromium,
		secrets:     func() []string { return []string{testSecret, rp.key} },
		beforePageB: func() error { before = rp.idp.Requests(); return nil },
		afterPageB: func() error {
			if n := rp.idp.Requests().Sub(before); n.Token != 0 || n.Me != 1 {
				return fmt.Errorf("replica B: %+v; want no token request and one API call", n)
			}
			return nil
		},
		afterSignOut: func() error { return rp.partitionGone(user) },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	err = c.run(ctx)
	t.Logf("browser check:\n%s", out.String())
	if err != nil {
		t.Fatalf("%v\nscreenshots in %s", err, shots)
	}
	entries, _ := os.ReadDir(shots)
	if len(entries) != 5 {
		t.Errorf("%d screenshots in %s, want one per step", len(entries), shots)
	}
	for i, p := range rp.procs {
		if code := p.stop(t); code != exitOK {
			t.Errorf("replica %d exited %d after SIGINT:\n%s", i, code, p.stderr)
		}
		logs := p.stdout.String() + p.stderr.String()
		noLeaks(t, "replica logs", []byte(logs), testSecret, rp.key)
		if strings.Contains(logs, "panic") {
			t.Errorf("replica %d logged a panic:\n%s", i, logs)
		}
	}
}

// TestDemoBrowserCheck runs `web-app demo --browser-check` as a user would:
// it exits 0 within its 120 s, says each step held, and leaves no process
// (identity provider, redis-server, Chromium) and no file behind.
func TestDemoBrowserCheck(t *testing.T) {
	requireChromium(t)
	redistest.Require(t) // the demo starts its own redis-server; this checks that it can
	tmp := t.TempDir()
	began := time.Now()
	p := start(t, []string{"TMPDIR=" + tmp}, "demo", "--browser-check")
	code := p.wait(t, 150*time.Second)
	out := p.stdout.String()
	t.Logf("demo --browser-check: exit %d in %v\n%s", code, time.Since(began).Round(time.Second), out)
	if code != exitOK {
		t.Fatalf("exit %d\nstderr:\n%s", code, p.stderr)
	}
	for _, want := range []string{"Store: a throwaway redis-server", "Replica A: http://", "Replica B: http://",
		"[1/5] sign in on replica A", "[5/5]", "Every step held"} {
		if !strings.Contains(out, want) {
			t.Errorf("the demo did not say %q", want)
		}
	}
	if strings.Contains(out, "FAILED") || strings.Contains(p.stderr.String(), "panic") {
		t.Errorf("stderr:\n%s", p.stderr)
	}
	left, _ := os.ReadDir(tmp)
	for _, e := range left {
		t.Errorf("left behind in TMPDIR: %s", e.Name())
	}
	if pids := processesMentioning(tmp); len(pids) > 0 {
		t.Errorf("processes still running with the demo's files: %v", pids)
	}
}

// processesMentioning returns the processes whose command line contains s
// (Chromium's profile, redis-server's directory).
func processesMentioning(s string) []string {
	var pids []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, strings.Split(f, "/")[2])
		}
	}
	return pids
}

// TestRedisOutage: with Redis killed, a signed-in user is still served on
// both replicas, from what each holds in memory, with no token request; a
// new sign-in gets a clear "try again later"; when Redis is back on the same
// port, sign-in works again.
func TestRedisOutage(t *testing.T) {
	redistest.Require(t)
	redis := redistest.Start(t)
	s := newSite(t, redis.URL())
	alice := s.newBrowser(t)
	s.signIn(t, alice, s.a(), "alice@contoso.example")
	for _, r := range s.replicas {
		if resp := alice.get(r.url + "/me"); resp.status != http.StatusOK {
			t.Fatalf("/me on %s: %d %q", r.srv.name, resp.status, resp.title())
		}
	}

	redis.Kill()
	before := s.idp.Requests()
	// Every page is served from what the replica remembers, within a
	// bound: the first one waits for the store to fail (within the store
	// timeout), the others do not wait for the store at all.
	const pages, bound = 10, 300 * time.Millisecond
	firstBound := defaultStoreTimeout + rememberedTimeout + bound
	for _, r := range s.replicas {
		var first, slowest time.Duration
		for i := range pages {
			start := time.Now()
			resp := alice.get(r.url + "/me")
			if d := time.Since(start); i == 0 {
				first = d
			} else {
				slowest = max(slowest, d)
			}
			if resp.status != http.StatusOK || !strings.Contains(resp.body, "the shared token cache") {
				t.Errorf("/me on %s with Redis down: %d %q\n%s", r.srv.name, resp.status, resp.title(), resp.body)
			}
		}
		t.Logf("/me on %s with Redis down: the first page in %v, the slowest of the %d after it in %v",
			r.srv.name, first.Round(time.Millisecond), pages-1, slowest.Round(time.Millisecond))
		if first >= firstBound {
			t.Errorf("/me on %s with Redis down: the first page took %v, want under %v", r.srv.name, first.Round(time.Millisecond), firstBound)
		}
		if slowest >= bound {
			t.Errorf("/me on %s with Redis down: a page after the first took %v, want under %v", r.srv.name, slowest.Round(time.Millisecond), bound)
		}
	}
	if n := s.idp.Requests().Sub(before); n.Token != 0 {
		t.Errorf("%d token requests with Redis down; want none", n.Token)
	}
	bob := s.newBrowser(t)
	cb := s.consent(t, s.authorize(t, bob, s.a()), "bob@contoso.example")
	resp := bob.get(cb)
	if resp.status != http.StatusServiceUnavailable || !strings.Contains(resp.body, "Try again later") {
		t.Errorf("sign-in with Redis down: %d %q\n%s", resp.status, resp.title(), resp.body)
	}

	redis.Restart()
	waitFor(t, 30*time.Second, "a sign-in to work again after the restart", func() bool {
		b := s.newBrowser(t)
		cb := s.consent(t, s.authorize(t, b, s.b()), "carol@contoso.example")
		return b.get(cb).status == http.StatusSeeOther
	})
	noLeaks(t, "the replicas' logs", []byte(s.logs.String()), testSecret)
}

// TestDemoInteractive runs `web-app demo` as a user would without
// --browser-check: it prints the replicas' URLs, serves them until Ctrl-C,
// then stops everything and leaves nothing behind.
func TestDemoInteractive(t *testing.T) {
	redistest.Require(t)
	tmp := t.TempDir()
	p := start(t, []string{"TMPDIR=" + tmp}, "demo")
	var urls []string
	waitFor(t, 30*time.Second, "the replicas' URLs", func() bool {
		urls = nil
		for _, l := range strings.Split(p.stdout.String(), "\n") {
			if u, ok := strings.CutPrefix(l, "Replica "); ok && len(u) > 3 {
				urls = append(urls, u[3:])
			}
		}
		return len(urls) == 2
	})
	for _, u := range urls {
		resp, err := http.Get(u + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s/: %s", u, resp.Status)
		}
	}
	if code := p.stop(t); code != exitOK {
		t.Errorf("exit %d after Ctrl-C\n%s", code, p.stderr)
	}
	for _, u := range urls {
		if resp, err := http.Get(u + "/"); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after the demo stopped", u)
		}
	}
	left, _ := os.ReadDir(tmp)
	for _, e := range left {
		t.Errorf("left behind in TMPDIR: %s", e.Name())
	}
	if pids := processesMentioning(tmp); len(pids) > 0 {
		t.Errorf("processes still running with the demo's files: %v", pids)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
