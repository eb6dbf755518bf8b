//go:build !windows

// The load runs redis-server and the page is opened in Chromium: neither
// is under Wine.

package main

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/msalcache/msalcache/internal/headless"
	"github.com/msalcache/msalcache/internal/redistest"
)

// TestHTMLReport runs a short load with a Redis kill and --report, checks
// that the page is self-contained (no http(s) reference, no script) with its
// two charts, the outage shaded and the summary, then opens it in headless
// Chromium: the charts are laid out, and the screenshot (kept in the test's
// temporary directory) is not blank.
func TestHTMLReport(t *testing.T) {
	redistest.Require(t)
	chromium := requireChromium(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--procs=2", "--goroutines=2", "--users=10", "--tenants=1", "--duration=6s", "--outage=2s",
		"--report", path}, &stdout, &stderr)
	t.Logf("output:\n%s", stdout.String())
	if code != exitOK {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr.String())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("report mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, bad := range []string{"http://", "https://", "<script", "<link", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("the report holds %q: it must not fetch anything", bad)
		}
	}
	for _, want := range []string{`<svg class="chart"`, `class="series-calls"`, `class="series-p50"`, `class="series-p99"`,
		`class="outage"`, `Redis down`, `<table id="summary">`, `PASS`} {
		if !strings.Contains(page, want) {
			t.Errorf("the report lacks %q", want)
		}
	}

	shot := filepath.Join(dir, "report.png")
	bctx := newBrowser(t, chromium)
	sctx, scancel := context.WithTimeout(bctx, 60*time.Second)
	defer scancel()
	if err := chromedp.Do(sctx, chromedp.Navigate("file://"+path), chromedp.WaitVisible(chromedp.CSS("#summary"))); err != nil {
		t.Fatal(err)
	}
	laidOut, err := chromedp.Run(sctx, chromedp.Evaluate[int](`Array.from(document.querySelectorAll("svg.chart")).filter(
		s => s.getBoundingClientRect().width > 400 && s.getBoundingClientRect().height > 100 &&
		     s.querySelectorAll("polyline").length > 0 && s.querySelectorAll("rect.outage").length > 0).length`))
	if err != nil {
		t.Fatal(err)
	}
	if laidOut != 2 {
		t.Errorf("%d charts laid out with their lines and outage, want 2", laidOut)
	}
	raw, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shot, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if v := lumaVariance(img); v < 100 {
		t.Errorf("the screenshot %s looks blank: luma variance %.1f", shot, v)
	}
	t.Logf("screenshot: %s (%v)", shot, img.Bounds().Size())
}

// lumaVariance is the variance of the pixels' brightness (0-255).
func lumaVariance(img image.Image) float64 {
	var n, sum, sq float64
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			l := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 257
			n++
			sum += l
			sq += l * l
		}
	}
	mean := sum / n
	return sq/n - mean*mean
}

// requireChromium returns the Chromium binary, or skips (fails where the
// test command promises every service) when there is none.
func requireChromium(t *testing.T) string {
	t.Helper()
	p, err := headless.Find()
	if err == nil {
		return p
	}
	msg := err.Error()
	if os.Getenv("MSALCACHE_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// newBrowser starts headless Chromium for one test, in a fresh profile,
// quiet (no background traffic, no updates, no sync).
func newBrowser(t *testing.T, exe string) context.Context {
	t.Helper()
	profile := t.TempDir()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(headless.Flags(profile, 1100, 900), chromedp.ExecPath(exe))...)
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
