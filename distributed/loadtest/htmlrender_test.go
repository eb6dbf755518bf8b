package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// syntheticReport is a tandem run of 20 s with failures in seconds 7 and 8,
// Redis flushed at 3 s, and Redis then PostgreSQL down.
func syntheticReport() *report {
	r := newReport(modeTandem)
	r.workers = "2 processes × 4 goroutines, 20 users, 3 daemon tenants"
	r.elapsed = 20*time.Second + 40*time.Millisecond
	r.events = []event{{"Redis flushed", 3 * time.Second, 3 * time.Second},
		{"Redis down", 6 * time.Second, 8500 * time.Millisecond}, {"PostgreSQL down", 11 * time.Second, 13500 * time.Millisecond}}
	start := time.Now()
	tl := newTimeline(start)
	p := newPhase()
	p.tl = tl
	for sec := range 21 {
		n := 300 + 20*(sec%3)
		if sec >= 6 && sec < 9 {
			n = 120
		}
		for i := range n {
			lat := time.Duration(80+i%50) * time.Microsecond
			if sec >= 6 && sec < 9 && i%10 == 0 {
				lat = 40 * time.Millisecond
			}
			// observe measures until now: place each call's end by hand.
			_, s := tl.second(start.Add(time.Duration(sec)*time.Second + time.Duration(i)))
			s.Calls++
			s.Latency.add(lat)
			if sec == 7 && i < 4 || sec == 8 && i < 1 {
				s.Failures++
			}
		}
	}
	r.timeline = tl
	r.all.Calls, r.all.Failures = 6000, 5
	r.errors = []string{`silent call for user 3: <b>"boom"</b>`}
	return r
}

// TestRenderHTMLMarks: the page shades each outage, draws the flush as a
// line, marks the seconds with failures with their counts, escapes text
// from errors, references nothing outside itself, and leaves out the last,
// partial second.
func TestRenderHTMLMarks(t *testing.T) {
	var buf bytes.Buffer
	if err := renderHTML(&buf, syntheticReport()); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if p := os.Getenv("LOADTEST_RENDER_TO"); p != "" { // to look at it
		os.WriteFile(p, buf.Bytes(), 0o600)
	}
	for want, n := range map[string]int{
		`class="outage"`:                         4, // two windows × two charts
		`class="instant"`:                        2,
		`class="failure"`:                        2, // seconds 7 and 8, on the calls chart
		`failure-count" text-anchor="middle">4<`: 1,
		`>Redis flushed<`:                        2,
		`>PostgreSQL down<`:                      2,
		`class="verdict fail`:                    1,
	} {
		if got := strings.Count(page, want); got != n {
			t.Errorf("%d × %s, want %d", got, want, n)
		}
	}
	if strings.Contains(page, `<b>"boom"`) || !strings.Contains(page, "&lt;b&gt;") {
		t.Error("an error's text is not escaped")
	}
	for _, bad := range []string{"http://", "https://", "<script"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
	// 20 whole seconds: 20 points per series.
	calls := page[strings.Index(page, `class="series-calls"`):]
	if n := strings.Count(calls[:strings.Index(calls, "</svg>")], "<circle"); n != 20 {
		t.Errorf("%d points of calls/s, want 20 (the partial 21st second left out)", n)
	}
}

// BenchmarkObserve is the cost of counting one call, without a timeline
// (no --report) and with one.
func BenchmarkObserve(b *testing.B) {
	for _, withTimeline := range []bool{false, true} {
		name := "plain"
		if withTimeline {
			name = "timeline"
		}
		b.Run(name, func(b *testing.B) {
			p := newPhase()
			if withTimeline {
				p.tl = newTimeline(time.Now())
			}
			start := time.Now()
			for b.Loop() {
				p.observe(start)
			}
		})
	}
}
