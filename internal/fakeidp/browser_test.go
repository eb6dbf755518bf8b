//go:build unix

// The browser is driven over a pipe on file descriptors 3 and 4, which
// os/exec passes on Unix only (ExtraFiles).

package fakeidp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// browser is a headless Chromium driven over the DevTools protocol on a
// pipe (--remote-debugging-pipe: JSON messages ended by NUL, commands on the
// browser's fd 3, answers and events on its fd 4).
type browser struct {
	cmd     *exec.Cmd
	toB     *os.File
	mu      sync.Mutex
	nextID  int
	pending map[int]chan cdpMessage
	dead    chan struct{} // closed when the reader stops
}

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Params    any             `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// startBrowser starts Chromium, trusting exactly the server's certificate.
// It skips the test when Chromium is not installed, unless
// MSALCACHE_REQUIRE_SERVICES is 1.
func startBrowser(t *testing.T, s *Server) *browser {
	t.Helper()
	var bin string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
			t.Fatal("chromium is not installed (apt-get install chromium)")
		}
		t.Skip("chromium is not installed (apt-get install chromium); this test drives a real browser")
	}
	profile := t.TempDir() // removed after the browser is stopped (cleanups run last first)

	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--no-default-browser-check", "--disable-dev-shm-usage", "--remote-debugging-pipe",
		"--user-data-dir="+profile,
		"--ignore-certificate-errors-spki-list="+s.CertSPKIHash(),
		"about:blank")
	cmd.ExtraFiles = []*os.File{cmdR, outW} // fd 3, fd 4
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmdR.Close()
	outW.Close()
	b := &browser{cmd: cmd, toB: cmdW, pending: map[int]chan cdpMessage{}, dead: make(chan struct{})}
	go b.read(outR)
	t.Cleanup(func() {
		// Ask the browser to quit, so that it stops its helper processes and
		// leaves the profile alone; kill it if it does not in time.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.call(ctx, "", "Browser.close", nil, nil)
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(exited)
		}()
		select {
		case <-exited:
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
		}
		b.toB.Close()
		outR.Close()
		if t.Failed() {
			var lines []string
			for _, l := range strings.Split(stderr.String(), "\n") {
				if !strings.Contains(l, "dbus") { // headless Chromium's D-Bus complaints are noise here
					lines = append(lines, l)
				}
			}
			t.Logf("chromium stderr:\n%s", strings.Join(lines, "\n"))
		}
	})
	return b
}

func (b *browser) read(r *os.File) {
	defer close(b.dead)
	br := bufio.NewReader(r)
	for {
		raw, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m cdpMessage
		if json.Unmarshal(raw[:len(raw)-1], &m) != nil || m.ID == 0 {
			continue // an event: not needed, the tests poll
		}
		b.mu.Lock()
		ch := b.pending[m.ID]
		delete(b.pending, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// call sends a command and waits for its answer.
func (b *browser) call(ctx context.Context, session, method string, params any, result any) error {
	ch := make(chan cdpMessage, 1)
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	b.mu.Unlock()
	msg, err := json.Marshal(cdpMessage{ID: id, Method: method, SessionID: session, Params: params})
	if err != nil {
		return err
	}
	if _, err := b.toB.Write(append(msg, 0)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-b.dead:
		return fmt.Errorf("%s: the browser has gone", method)
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// open opens a page at rawURL and returns its session.
func (b *browser) open(ctx context.Context, rawURL string) (string, error) {
	var target struct{ TargetID string }
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": rawURL}, &target); err != nil {
		return "", err
	}
	var session struct{ SessionID string }
	err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &session)
	return session.SessionID, err
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func (b *browser) eval(ctx context.Context, session, expr string, v any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(ctx, session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("%s: %s", expr, res.ExceptionDetails.Text)
	}
	if v == nil || res.Result.Value == nil {
		return nil
	}
	return json.Unmarshal(res.Result.Value, v)
}

// waitFor evaluates a boolean expression until it is true.
func (b *browser) waitFor(ctx context.Context, session, expr string) error {
	for {
		var ok bool
		if err := b.eval(ctx, session, expr, &ok); err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", expr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// text returns the page's visible text.
func (b *browser) text(ctx context.Context, session string) string {
	var s string
	_ = b.eval(ctx, session, "document.body ? document.body.innerText : ''", &s)
	return s
}

// callbackServer is the web app's redirect URI: it records what the browser
// brings back.
func callbackServer(t *testing.T) (uri string, got <-chan url.Values) {
	t.Helper()
	ch := make(chan url.Values, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" { // the browser also asks for /favicon.ico
			http.NotFound(w, r)
			return
		}
		select {
		case ch <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!DOCTYPE html><title>back</title><p id=back>back at the app</p>")
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/callback", ch
}

// TestBrowserSignIn signs in on the authorize page in a real browser, then
// redeems the code the browser brought back with MSAL.
func TestBrowserSignIn(t *testing.T) {
	s := start(t)
	cb, back := callbackServer(t)
	if err := s.RegisterClient(ConfidentialClient{ID: webClientID, Secret: webSecret, RedirectURIs: []string{cb}}); err != nil {
		t.Fatal(err)
	}
	app := newConfidential(t, s, s.Authority(), webClientID, secretCred(t, webSecret))
	alice := addUser(t, s, s.Tenant(), "alice@contoso.example")
	b := startBrowser(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	authURL := func(state, nonce, challenge, loginHint string) string {
		raw, err := app.AuthCodeURL(ctx, webClientID, cb, scopeRead, confidential.WithLoginHint(loginHint))
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return withAuthParams(u, state, nonce, challenge)
	}

	// A login hint that tries to break out of the attribute is shown as text.
	const evil = `"><script>document.title='pwned'</script><b x="`
	verifier, challenge := NewPKCE()
	session, err := b.open(ctx, authURL("state-<1>", "nonce-1", challenge, evil))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.waitFor(ctx, session, "!!document.getElementById('username')"); err != nil {
		t.Fatalf("%v; page: %q", err, b.text(ctx, session))
	}
	var page struct {
		Title, Hint, Client string
		Scripts             int
	}
	if err := b.eval(ctx, session, `({Title: document.title, Hint: document.getElementById('username').value,
		Client: document.getElementById('client-id').textContent, Scripts: document.scripts.length})`, &page); err != nil {
		t.Fatal(err)
	}
	if page.Title != "Sign in - fakeidp" || page.Hint != evil || page.Client != webClientID || page.Scripts != 0 {
		t.Errorf("sign-in page: %+v", page)
	}

	// An unknown user: the page says so and nothing comes back to the app.
	submit := func(username string) {
		t.Helper()
		js := fmt.Sprintf(`(() => { const u = document.getElementById('username'); u.value = %q;
			document.getElementById('submit').click(); return true })()`, username)
		if err := b.eval(ctx, session, js, nil); err != nil {
			t.Fatal(err)
		}
	}
	submit("mallory@contoso.example")
	if err := b.waitFor(ctx, session, "!!document.getElementById('error')"); err != nil {
		t.Fatalf("%v; page: %q", err, b.text(ctx, session))
	}
	if txt := b.text(ctx, session); !strings.Contains(txt, `no account "mallory@contoso.example"`) {
		t.Errorf("error page: %q", txt)
	}

	// Alice: the browser lands on the redirect URI with a code and the state.
	submit("alice@contoso.example")
	var q url.Values
	for q == nil {
		select {
		case q = <-back:
		case <-ctx.Done():
			t.Fatalf("the browser never came back; page: %q", b.text(ctx, session))
		case <-time.After(100 * time.Millisecond):
			var refused bool
			if err := b.eval(ctx, session, "!!document.getElementById('error')", &refused); err == nil && refused {
				t.Fatalf("the sign-in was refused: %q", b.text(ctx, session))
			}
		}
	}
	if err := b.waitFor(ctx, session, "!!document.getElementById('back')"); err != nil {
		t.Fatal(err)
	}
	if q.Get("state") != "state-<1>" || q.Get("code") == "" {
		t.Fatalf("redirect query: state %q, code present %v", q.Get("state"), q.Get("code") != "")
	}
	res, err := app.AcquireTokenByAuthCode(ctx, q.Get("code"), cb, scopeRead, confidential.WithChallenge(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if res.Account.HomeAccountID != alice.HomeAccountID || claimsOf(t, s, res.IDToken.RawToken)["nonce"] != "nonce-1" {
		t.Errorf("account %+v, id token %v", res.Account, claimsOf(t, s, res.IDToken.RawToken))
	}
	c := s.Requests()
	if c.Authorize != 3 || c.CodesIssued != 1 || c.Errors != 1 || c.AuthorizationCodeGrant != 1 {
		t.Errorf("counts %+v", c)
	}

	// A request the server must not redirect (unregistered redirect URI):
	// an error page, and the browser stays on the server.
	bad, err := b.open(ctx, strings.Replace(authURL("s", "n", challenge, ""), url.QueryEscape(cb), url.QueryEscape("https://evil.example/cb"), 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.waitFor(ctx, bad, "!!document.getElementById('error')"); err != nil {
		t.Fatalf("%v; page: %q", err, b.text(ctx, bad))
	}
	var loc string
	if err := b.eval(ctx, bad, "location.origin", &loc); err != nil || loc != s.origin {
		t.Errorf("the browser is at %q (%v), want the server", loc, err)
	}
	select {
	case q := <-back:
		t.Errorf("the app got a redirect: %v", q)
	default:
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("out of time")
	}
}
