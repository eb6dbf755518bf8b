//go:build !windows

// `web-app idp` and two `web-app serve` replicas as separate processes on a
// real redis-server, stopped with SIGINT: not under Wine.

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/redistest"
)

// idpRun is `web-app idp` as a process, with what it printed.
type idpRun struct {
	p                                   *proc
	authority, clientID, secret, caFile string
	serveLines                          [][]string // each printed serve command line, split
}

// startIDP runs `web-app idp` with args and parses what it prints.
func startIDP(t *testing.T, args ...string) *idpRun {
	t.Helper()
	r := &idpRun{p: start(t, nil, append([]string{"idp"}, args...)...)}
	waitFor(t, 30*time.Second, "web-app idp's serve command lines", func() bool {
		select {
		case <-r.p.done:
			t.Fatalf("web-app idp exited %d:\n%s%s", r.p.code(), r.p.stdout, r.p.stderr)
		default:
		}
		return strings.Contains(r.p.stdout.String(), "Ctrl-C stops")
	})
	for _, l := range strings.Split(r.p.stdout.String(), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		v = strings.TrimSpace(v)
		switch {
		case ok && k == "authority":
			r.authority = v
		case ok && k == "client id":
			r.clientID = v
		case ok && k == "client secret":
			r.secret = v
		case ok && k == "CA file":
			r.caFile = v
		case strings.Contains(l, " web-app serve "):
			r.serveLines = append(r.serveLines, strings.Fields(l))
		}
	}
	if r.authority == "" || r.clientID == "" || r.secret == "" || r.caFile == "" {
		t.Fatalf("web-app idp did not print the authority, client id, secret and CA file:\n%s", r.p.stdout)
	}
	return r
}

// serve starts the printed serve command line i: its environment
// assignments, then web-app's arguments.
func (r *idpRun) serve(t *testing.T, i int) *proc {
	t.Helper()
	var env, args []string
	fields := r.serveLines[i]
	for len(fields) > 0 && strings.Contains(fields[0], "=") && !strings.HasPrefix(fields[0], "-") {
		env = append(env, fields[0])
		fields = fields[1:]
	}
	if len(fields) < 2 || fields[0] != "web-app" || fields[1] != "serve" {
		t.Fatalf("printed serve line %d is not 'ENV=... web-app serve ...': %q", i, r.serveLines[i])
	}
	for _, a := range fields[1:] {
		if strings.ContainsAny(a, `'"\`) {
			t.Fatalf("printed serve line %d needs a shell to unquote %q", i, a)
		}
		args = append(args, a)
	}
	return start(t, env, args...)
}

// flagValue is the value of --name in a split command line.
func flagValue(fields []string, name string) string {
	for i, f := range fields[:len(fields)-1] {
		if f == "--"+name {
			return fields[i+1]
		}
	}
	return ""
}

// formBrowser is an HTTP client with a cookie jar that trusts the CA file and
// does not follow redirects: enough to post the identity provider's form.
func formBrowser(t *testing.T, caFile string) *browser {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &browser{t: t, c: c, jar: jar}
}

var (
	formAction  = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
)

// submitSignIn goes to /signin on the app at base, and submits the identity
// provider's form as username; it returns the identity provider's answer.
func submitSignIn(t *testing.T, b *browser, base, username string) response {
	t.Helper()
	resp := b.get(base + "/signin")
	if resp.status != http.StatusFound {
		t.Fatalf("/signin: %d, want a redirect to the identity provider", resp.status)
	}
	page := b.get(resp.location)
	m := formAction.FindStringSubmatch(page.body)
	if page.status != http.StatusOK || m == nil {
		t.Fatalf("the identity provider's sign-in page: %d\n%s", page.status, page.body)
	}
	form := url.Values{"username": {username}}
	for _, h := range hiddenInput.FindAllStringSubmatch(page.body, -1) {
		form.Set(html.UnescapeString(h[1]), html.UnescapeString(h[2]))
	}
	return b.do(http.MethodPost, html.UnescapeString(m[1]), form)
}

// TestIDPCommand runs `web-app idp` as a user would, starts the two serve
// command lines it prints on one Redis, signs a user in on replica A through
// the identity provider's form over HTTP, reads the API page on replica B,
// and checks that an unknown username gets a clear page at once.
func TestIDPCommand(t *testing.T) {
	redistest.Require(t)
	redis := redistest.Start(t)
	var addrs []string
	for range 2 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(port))
	}
	dir := filepath.Join(t.TempDir(), "idp")
	r := startIDP(t, "--replicas", strings.Join(addrs, ","), "--redis", redis.URL(), "--dir", dir)

	if r.caFile != filepath.Join(dir, "idp.pem") {
		t.Errorf("CA file %s, want it in --dir %s", r.caFile, dir)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, r.caFile: 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", path, fi.Mode().Perm(), err, want)
		}
	}
	if len(r.serveLines) != 2 {
		t.Fatalf("%d serve command lines, want one per replica:\n%s", len(r.serveLines), r.p.stdout)
	}
	var replicas []*proc
	for i, a := range addrs {
		l := r.serveLines[i]
		if flagValue(l, "addr") != a || flagValue(l, "authority") != r.authority || flagValue(l, "ca-file") != r.caFile ||
			flagValue(l, "client-id") != r.clientID || flagValue(l, "redis") != redis.URL() {
			t.Errorf("serve line %d does not carry the printed values: %q", i, l)
		}
		replicas = append(replicas, r.serve(t, i))
	}
	for i, a := range addrs {
		waitFor(t, 30*time.Second, "replica "+a, func() bool {
			select {
			case <-replicas[i].done:
				t.Fatalf("replica %s exited %d: %s", a, replicas[i].code(), replicas[i].stderr)
			default:
			}
			resp, err := http.Get("http://" + a + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}

	// A known user signs in on A, and B serves them from the shared cache.
	alice := formBrowser(t, r.caFile)
	cb := submitSignIn(t, alice, "http://"+addrs[0], demoUser)
	if cb.status != http.StatusSeeOther || !strings.HasPrefix(cb.location, "http://"+addrs[0]+"/callback?") {
		t.Fatalf("the identity provider's answer for %s: %d to %q\n%s", demoUser, cb.status, cb.location, cb.body)
	}
	if resp := alice.get(cb.location); resp.status != http.StatusSeeOther {
		t.Fatalf("callback on A: %d %q\n%s", resp.status, resp.title(), resp.body)
	}
	if home := alice.get("http://" + addrs[0] + "/"); home.title() != "Signed in" || !strings.Contains(home.body, demoUser) {
		t.Errorf("home on A after sign-in: %d %q", home.status, home.title())
	}
	if me := alice.get("http://" + addrs[1] + "/me"); me.status != http.StatusOK || !strings.Contains(me.body, demoUser) {
		t.Errorf("/me on B: %d %q\n%s", me.status, me.title(), me.body)
	}

	// An unknown user gets a page that says why, at once.
	const bound = 2 * time.Second
	mallory := formBrowser(t, r.caFile)
	began := time.Now()
	resp := submitSignIn(t, mallory, "http://"+addrs[0], "mallory@contoso.example")
	took := time.Since(began)
	t.Logf("an unknown user's sign-in answered in %v", took.Round(time.Millisecond))
	page := html.UnescapeString(resp.body)
	for _, want := range []string{`id="error"`, `no account "mallory@contoso.example"`, demoUser, "web-app idp --users"} {
		if !strings.Contains(page, want) {
			t.Errorf("the unknown user's page lacks %q:\n%s", want, page)
		}
	}
	if resp.status != http.StatusBadRequest || took >= bound {
		t.Errorf("unknown user: %d after %v, want 400 within %v", resp.status, took, bound)
	}

	for i, p := range replicas {
		if code := p.stop(t); code != exitOK {
			t.Errorf("replica %d exited %d after SIGINT:\n%s", i, code, p.stderr)
		}
	}
	if code := r.p.stop(t); code != exitOK {
		t.Errorf("web-app idp exited %d after SIGINT:\n%s", code, r.p.stderr)
	}
	if _, err := os.Stat(r.caFile); !os.IsNotExist(err) {
		t.Errorf("the CA file is still there after web-app idp stopped: %v", err)
	}
	if strings.Contains(r.p.stderr.String(), "panic") {
		t.Errorf("web-app idp: %s", r.p.stderr)
	}
}

// TestIDPUsage: bad flags get a usage error (exit 2) that says what is wrong.
func TestIDPUsage(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"--replicas 127.0.0.1", "not host:port"},
		{"--users ,", "--users is empty"},
		{"--users a\tb", "invalid username"},
	} {
		var out, errOut strings.Builder
		code := run(t.Context(), append([]string{"idp"}, strings.Split(c.args, " ")...), &out, &errOut, func(string) string { return "" })
		if code != exitUsage || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("idp %s: exit %d, stderr %q; want %d and %q", c.args, code, errOut.String(), exitUsage, c.want)
		}
	}
}

// TestIDPMemoryStore: without Redis the replicas would share nothing, so
// `web-app idp --redis ""` prints one serve line, on the memory store; a
// stop before anything happened is still a clean exit that removes its files.
func TestIDPMemoryStore(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // as if Ctrl-C came at once: it prints, then stops
	var out, errOut strings.Builder
	if code := run(ctx, []string{"idp", "--redis", ""}, &out, &errOut, func(string) string { return "" }); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if n := strings.Count(out.String(), " web-app serve "); n != 1 || !strings.Contains(out.String(), "--store memory") {
		t.Errorf("%d serve lines, want one on the memory store:\n%s", n, out.String())
	}
	m := regexp.MustCompile(`CA file: +(\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no CA file printed:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Dir(m[1])); !os.IsNotExist(err) {
		t.Errorf("the temporary directory %s is still there: %v", filepath.Dir(m[1]), err)
	}
}
