package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/msalcache/msalcache/internal/headless"
)

// browserFlags are the flags Chromium runs with (internal/headless), and
// the trust of the local identity provider's certificate when trustSPKI is
// set.
func browserFlags(profile string, trustSPKI string) []chromedp.ExecAllocatorOption {
	opts := headless.Flags(profile, 1000, 800)
	if trustSPKI != "" {
		// Trust the local identity provider's self-signed certificate, and
		// nothing else that would fail verification.
		opts = append(opts, chromedp.Flag("ignore-certificate-errors-spki-list", trustSPKI))
	}
	return opts
}

// browserCheck drives a real browser through the web app on two replicas:
// sign-in on A, the API page on B, sign-out on B, and A no longer serving the
// user. It checks every page for tokens, stack traces and unescaped values
// and keeps a screenshot of each step.
type browserCheck struct {
	a, b     string // the replicas' base URLs
	username string // whom to sign in as on the identity provider's form
	shots    string // directory for the screenshots
	out      io.Writer
	// secrets returns strings that must never appear in a page (tokens,
	// the client secret).
	secrets func() []string
	// afterSignIn and afterSignOut, if set, check the world outside the
	// browser (the identity provider's counts, the store) after those steps.
	beforePageB, afterPageB, afterSignOut func() error
	trustSPKI                             string
	chromium                              string
}

// step is one numbered step of the check, reported as it happens.
type step struct {
	n    int
	name string
}

// unescapedProbe is a value with markup that the check puts in a URL the app
// shows back; it must come out as text.
const unescapedProbe = `<b id="probe-injected">x</b>"'&`

var (
	stackTrace = regexp.MustCompile(`goroutine \d+ \[|panic: |\.go:\d+|runtime/debug`)
	jwtLike    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)
)

// run runs the check; every step must hold, within ctx.
func (c *browserCheck) run(ctx context.Context) (err error) {
	if err := os.MkdirAll(c.shots, 0o700); err != nil {
		return err
	}
	profile, err := os.MkdirTemp("", "web-app-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	exe := c.chromium
	if exe == "" {
		if exe, err = headless.Find(); err != nil {
			return err
		}
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(browserFlags(profile, c.trustSPKI), chromedp.ExecPath(exe))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer func() {
		// Close the browser gracefully, so that it removes its own files,
		// then make sure it is gone.
		cctx, cancel := context.WithTimeout(bctx, 10*time.Second)
		defer cancel()
		_ = chromedp.Cancel(cctx)
		cancelBrowser()
	}()
	if err := chromedp.Do(bctx); err != nil {
		return fmt.Errorf("starting Chromium (%s): %w", exe, err)
	}

	steps := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"sign in on replica A", c.signIn},
		{"the API page on replica B, served from the shared cache", c.pageB},
		{"sign out on replica B", c.signOut},
		{"replica A no longer has the user", c.goneOnA},
		{"a value with markup is shown as text", c.escaped},
	}
	for i, s := range steps {
		st := step{i + 1, s.name}
		fmt.Fprintf(c.out, "[%d/%d] %s\n", st.n, len(steps), st.name)
		sctx, cancel := context.WithTimeout(bctx, 45*time.Second)
		err := s.do(sctx)
		shot, serr := c.screenshot(bctx, st)
		cancel()
		if err == nil {
			err = serr
		}
		if err == nil {
			err = c.checkPage(bctx)
		}
		if err != nil {
			return fmt.Errorf("step %d (%s): %w (screenshot: %s)", st.n, st.name, err, shot)
		}
		fmt.Fprintf(c.out, "      ok (screenshot %s)\n", shot)
	}
	return nil
}

func (c *browserCheck) screenshot(ctx context.Context, st step) (string, error) {
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "(none)", fmt.Errorf("screenshot: %w", err)
	}
	name := filepath.Join(c.shots, fmt.Sprintf("%02d-%s.png", st.n, slug(st.name)))
	return name, os.WriteFile(name, png, 0o600)
}

func slug(s string) string {
	s = strings.ToLower(s)
	s = regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(s, "-")
	return strings.Trim(s, "-")
}

// checkPage fails if the page shows a token, a secret, a stack trace, or
// markup that came from a value.
func (c *browserCheck) checkPage(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	html, err := chromedp.Run(sctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		return fmt.Errorf("reading the page: %w", err)
	}
	text, err := chromedp.Run(sctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return fmt.Errorf("reading the page: %w", err)
	}
	// The app's pages have no element inside these; a value's markup
	// would make one.
	injected, err := chromedp.Run(sctx, chromedp.Evaluate[bool](
		`document.querySelector("#probe-injected, #user *, #message *, #api td *") !== null`))
	if err != nil {
		return fmt.Errorf("reading the page: %w", err)
	}
	switch {
	case injected:
		return errors.New("the page holds an element injected through a value: a value was not escaped")
	case stackTrace.MatchString(text):
		return fmt.Errorf("the page shows a stack trace: %q", stackTrace.FindString(text))
	case jwtLike.MatchString(html):
		return errors.New("the page shows a token (a JWT)")
	}
	if c.secrets != nil {
		for _, s := range c.secrets() {
			if len(s) >= 8 && strings.Contains(html, s) {
				return errors.New("the page shows a token or secret")
			}
		}
	}
	return nil
}

// waitText waits for the element sel to be visible and returns its text.
func waitText(ctx context.Context, sel string) (string, error) {
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		return "", err
	}
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	return strings.TrimSpace(s), err
}

// expectTitle waits until the page (after any navigation in progress) has
// the title want; it fails at ctx's deadline with the page it saw last.
func expectTitle(ctx context.Context, want string) error {
	var got, msg string
	for {
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		t, err := chromedp.Run(ectx, chromedp.Evaluate[[]string](
			`[(document.getElementById("title")||{}).innerText||"", (document.getElementById("message")||{}).innerText||""]`))
		cancel()
		if err == nil && len(t) == 2 {
			got, msg = strings.TrimSpace(t[0]), strings.TrimSpace(t[1])
			if got == want {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("page %q (%s), want %q: %w", got, msg, want, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *browserCheck) signIn(ctx context.Context) error {
	if err := chromedp.Do(ctx, chromedp.Navigate(c.a+"/"), chromedp.WaitVisible(chromedp.CSS("#signin")),
		chromedp.Click(chromedp.CSS("#signin"))); err != nil {
		return err
	}
	// The identity provider's sign-in form.
	user := chromedp.CSS(`input[name="username"]`)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(user), chromedp.SetValue(user, c.username), chromedp.Submit(user)); err != nil {
		return fmt.Errorf("the identity provider's sign-in form: %w", err)
	}
	if err := expectTitle(ctx, "Signed in"); err != nil {
		return err
	}
	return c.expectOn(ctx, "A", c.username)
}

// expectOn checks the page's replica and user.
func (c *browserCheck) expectOn(ctx context.Context, replica, user string) error {
	r, err := waitText(ctx, "#replica")
	if err != nil {
		return err
	}
	if r != "replica "+replica {
		return fmt.Errorf("served by %q, want replica %s", r, replica)
	}
	u, err := waitText(ctx, "#user")
	if err != nil {
		return err
	}
	if u != user {
		return fmt.Errorf("signed in as %q, want %q", u, user)
	}
	return nil
}

func (c *browserCheck) pageB(ctx context.Context) error {
	if c.beforePageB != nil {
		if err := c.beforePageB(); err != nil {
			return err
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(c.b+"/me")); err != nil {
		return err
	}
	if err := expectTitle(ctx, "You, to the API"); err != nil {
		return err
	}
	if err := c.expectOn(ctx, "B", c.username); err != nil {
		return err
	}
	src, err := waitText(ctx, "#source")
	if err != nil {
		return err
	}
	if src != "the shared token cache" {
		return fmt.Errorf("the token came from %q, want the shared token cache", src)
	}
	if _, err := waitText(ctx, "#expires"); err != nil {
		return err
	}
	if c.afterPageB != nil {
		return c.afterPageB()
	}
	return nil
}

func (c *browserCheck) signOut(ctx context.Context) error {
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#signout"))); err != nil {
		return err
	}
	if err := expectTitle(ctx, "Signed out"); err != nil {
		return err
	}
	if r, err := waitText(ctx, "#replica"); err != nil || r != "replica B" {
		return fmt.Errorf("signed out on %q (%v), want replica B", r, err)
	}
	if c.afterSignOut != nil {
		return c.afterSignOut()
	}
	return nil
}

func (c *browserCheck) goneOnA(ctx context.Context) error {
	if err := chromedp.Do(ctx, chromedp.Navigate(c.a+"/me")); err != nil {
		return err
	}
	return expectTitle(ctx, "Please sign in")
}

func (c *browserCheck) escaped(ctx context.Context) error {
	if err := chromedp.Do(ctx, chromedp.Navigate(c.a+"/callback?error="+url.QueryEscape(unescapedProbe)+
		"&error_description="+url.QueryEscape(unescapedProbe))); err != nil {
		return err
	}
	if err := expectTitle(ctx, "Sign-in was not completed"); err != nil {
		return err
	}
	msg, err := waitText(ctx, "#message")
	if err != nil {
		return err
	}
	if !strings.Contains(msg, unescapedProbe) {
		return fmt.Errorf("the page does not show the value as text: %q", msg)
	}
	return nil
}
