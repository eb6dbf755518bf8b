//go:build !windows

// The browser tests drive Debian's Chromium; they do not run under Wine.

package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/msalcache/msalcache/internal/headless"
)

// requireChromium returns the Chromium binary, or skips (fails where the
// test command promises every service) when there is none.
func requireChromium(t *testing.T) string {
	t.Helper()
	p, err := headless.Find()
	if err != nil {
		if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return p
}

// newBrowser starts headless Chromium for one test, in a fresh profile.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := requireChromium(t)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(browserFlags(t.TempDir(), ""), chromedp.ExecPath(exe))...)
	bctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(bctx, 10*time.Second)
		defer ccancel()
		_ = chromedp.Cancel(cctx)
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return bctx
}

// TestPageChecks shows that the checks the browser test applies to every
// page catch what they look for: a token, a stack trace, an injected
// element, a secret.
func TestPageChecks(t *testing.T) {
	bctx := newBrowser(t)
	pages := map[string]string{
		"/clean":  `<h1 id="title">Fine</h1><p id="message">` + htmlEscape(unescapedProbe) + `</p>`,
		"/jwt":    `<h1 id="title">Leak</h1><p>eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln</p>`,
		"/stack":  `<h1 id="title">Oops</h1><pre>goroutine 1 [running]:\nmain.main()\n\t/src/main.go:12</pre>`,
		"/inject": `<h1 id="title">Hi</h1><p>` + unescapedProbe + `</p>`,
		"/secret": `<h1 id="title">Hi</h1><p>the-client-secret-value</p>`,
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><html><body>"+pages[r.URL.Path]+"</body></html>")
	}))
	defer ts.Close()
	c := &browserCheck{secrets: func() []string { return []string{"the-client-secret-value"} }}
	for path, want := range map[string]string{"/clean": "", "/jwt": "token", "/stack": "stack trace",
		"/inject": "not escaped", "/secret": "token or secret"} {
		t.Run(path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
			defer cancel()
			if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+path)); err != nil {
				t.Fatal(err)
			}
			err := c.checkPage(ctx)
			switch {
			case want == "" && err != nil:
				t.Errorf("a clean page failed the checks: %v", err)
			case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
				t.Errorf("checkPage = %v, want an error about %q", err, want)
			}
		})
	}
	// expectTitle waits for a page that arrives later, and names what it saw.
	if err := chromedp.Do(bctx, chromedp.Navigate(ts.URL+"/secret")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bctx, 2*time.Second)
	defer cancel()
	if err := expectTitle(ctx, "Fine"); err == nil || !strings.Contains(err.Error(), `page "Hi"`) {
		t.Errorf(`expectTitle("Fine") on the /secret page = %v, want an error naming the page it saw`, err)
	}
	ctx, cancel = context.WithTimeout(bctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(ts.URL+"/clean")); err != nil {
		t.Fatal(err)
	}
	if err := expectTitle(ctx, "Fine"); err != nil {
		t.Error(err)
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}
