package main

import (
	"bytes"
	"fmt"
	"html"
	"html/template"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// writeHTMLReport writes the run as one self-contained HTML page to path,
// mode 0600: written to a temporary file in the same directory and renamed
// over path, so that a reader never sees half a page.
func writeHTMLReport(path string, r *report) error {
	var buf bytes.Buffer
	if err := renderHTML(&buf, r); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".loadtest-report-*") // 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(buf.Bytes())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// The charts' geometry, in SVG user units; the page scales them to its width.
const (
	chartW, chartH             = 960, 300
	padL, padR, padT, padB     = 96, 24, 34, 46
	plotW, plotH               = chartW - padL - padR, chartH - padT - padB
	colorCalls, colorP50       = "#2563eb", "#059669"
	colorP99, colorFail        = "#c026d3", "#dc2626"
	colorOutage, colorOutageTx = "#fde68a", "#92400e"
)

// pageData is what the page template shows.
type pageData struct {
	Title, Subtitle, Verdict string
	Pass                     bool
	Calls, Latency           template.HTML // inline SVG
	Summary                  [][2]string
	Note                     string
}

func renderHTML(buf *bytes.Buffer, r *report) error {
	var text bytes.Buffer
	r.print(&text)
	var summary [][2]string
	for _, l := range strings.Split(strings.TrimRight(text.String(), "\n"), "\n") {
		k, v, _ := strings.Cut(l, ":")
		summary = append(summary, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	secs := fullSeconds(r)
	d := pageData{
		Title:    "msalcache load test: " + r.mode,
		Subtitle: fmt.Sprintf("%s, %.1f s", r.workers, r.elapsed.Seconds()),
		Pass:     r.clean(),
		Calls:    template.HTML(callsChart(r, secs)),
		Latency:  template.HTML(latencyChart(r, secs)),
		Summary:  summary,
		Note: "Each point is one second of the run: the calls that ended in it. Shaded: a server was down " +
			"(killed, until it was back). Latency is per call, on a log scale, read from buckets 5% wide.",
	}
	for _, e := range r.events {
		if e.To == e.From {
			d.Note += " A dashed line: " + e.Name + "."
		}
	}
	d.Verdict = "PASS"
	if !d.Pass {
		d.Verdict = "FAIL"
	}
	return pageTemplate.Execute(buf, d)
}

// fullSeconds are the seconds of the timeline that the run covered whole:
// the last, partial second would show as a dip.
func fullSeconds(r *report) []*phase {
	n := min(len(r.timeline.Seconds), int(r.elapsed/time.Second))
	return r.timeline.Seconds[:n]
}

// chart is one SVG chart under construction: the plot area maps seconds
// (x) and a value (y, through ymap) to user units.
type chart struct {
	b       strings.Builder
	seconds float64
}

func newChart(title, label string, seconds int) *chart {
	c := &chart{seconds: float64(max(seconds, 1))}
	fmt.Fprintf(&c.b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(&c.b, `<rect x="%d" y="%d" width="%d" height="%d" class="plot"/>`, padL, padT, plotW, plotH)
	fmt.Fprintf(&c.b, `<text x="18" y="%d" class="axis-title" transform="rotate(-90 18 %d)" text-anchor="middle">%s</text>`,
		padT+plotH/2, padT+plotH/2, html.EscapeString(label))
	fmt.Fprintf(&c.b, `<text x="%d" y="%d" class="axis-title" text-anchor="middle">seconds since the load began</text>`,
		padL+plotW/2, chartH-6)
	return c
}

func (c *chart) x(sec float64) float64 { return padL + sec/c.seconds*plotW }

// xAxis draws the second ticks and the vertical grid.
func (c *chart) xAxis() {
	step := niceStep(c.seconds, 12)
	for s := 0.0; s <= c.seconds+1e-9; s += step {
		x := c.x(s)
		fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="grid"/>`, x, padT, x, padT+plotH)
		fmt.Fprintf(&c.b, `<text x="%.1f" y="%d" class="tick" text-anchor="middle">%g</text>`, x, padT+plotH+18, s)
	}
}

// yTick draws a horizontal grid line at user y with its label.
func (c *chart) yTick(y float64, label string) {
	fmt.Fprintf(&c.b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="grid"/>`, padL, y, padL+plotW, y)
	fmt.Fprintf(&c.b, `<text x="%d" y="%.1f" class="tick" text-anchor="end">%s</text>`, padL-8, y+4, html.EscapeString(label))
}

// events shades the outage windows and marks the instants.
func (c *chart) events(evs []event) {
	for _, e := range evs {
		x1, x2 := c.x(e.From.Seconds()), c.x(e.To.Seconds())
		x1, x2 = math.Max(x1, padL), math.Min(x2, padL+plotW)
		name := html.EscapeString(e.Name)
		if e.To > e.From {
			fmt.Fprintf(&c.b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" class="outage"><title>%s: %.1f s to %.1f s</title></rect>`,
				x1, padT, math.Max(x2-x1, 1), plotH, name, e.From.Seconds(), e.To.Seconds())
		} else {
			fmt.Fprintf(&c.b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" class="instant"><title>%s at %.1f s</title></line>`,
				x1, padT, x1, padT+plotH, name, e.From.Seconds())
		}
		fmt.Fprintf(&c.b, `<text x="%.1f" y="%d" class="event-label" text-anchor="middle">%s</text>`, (x1+x2)/2, padT-8, name)
	}
}

// line draws a polyline through the points (second, user y), one per
// second, at the middle of each.
func (c *chart) line(ys []float64, color, class string) {
	var pts []string
	for i, y := range ys {
		if !math.IsNaN(y) {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", c.x(float64(i)+0.5), y))
		}
	}
	fmt.Fprintf(&c.b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2.5" stroke-linejoin="round" class="%s"/>`,
		strings.Join(pts, " "), color, class)
	for i, y := range ys {
		if !math.IsNaN(y) {
			fmt.Fprintf(&c.b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, c.x(float64(i)+0.5), y, color)
		}
	}
}

// legend draws the entries in the top right corner of the plot.
func (c *chart) legend(entries [][2]string) {
	x := float64(padL + plotW - 10)
	for i := len(entries) - 1; i >= 0; i-- {
		label, color := html.EscapeString(entries[i][0]), entries[i][1]
		w := 7.2*float64(len(entries[i][0])) + 30
		x -= w
		fmt.Fprintf(&c.b, `<rect x="%.1f" y="%d" width="%.1f" height="22" rx="3" class="legend-bg"/>`, x-6, padT+8, w)
		fmt.Fprintf(&c.b, `<rect x="%.1f" y="%d" width="16" height="10" fill="%s"/>`, x, padT+14, color)
		fmt.Fprintf(&c.b, `<text x="%.1f" y="%d" class="legend">%s</text>`, x+21, padT+23, label)
		x -= 6
	}
}

func (c *chart) String() string { return c.b.String() + "</svg>" }

// callsChart is calls/s per second, with the failures marked.
func callsChart(r *report, secs []*phase) string {
	c := newChart("Calls per second", "calls/s", len(secs))
	var top float64
	for _, s := range secs {
		top = math.Max(top, float64(s.Calls))
	}
	step := niceStep(math.Max(top, 1), 5)
	top = math.Ceil(math.Max(top, 1)*1.15/step) * step // room for the legend
	y := func(v float64) float64 { return padT + plotH - v/top*plotH }
	c.events(r.events)
	for v := 0.0; v <= top+1e-9; v += step {
		c.yTick(y(v), formatCount(v))
	}
	c.xAxis()
	ys := make([]float64, len(secs))
	failed := 0
	for i, s := range secs {
		ys[i] = y(float64(s.Calls))
		if s.Failures > 0 {
			failed++
			x := c.x(float64(i) + 0.5)
			fmt.Fprintf(&c.b, `<path d="M%.1f %d l-7 -12 h14 z" class="failure"><title>second %d: %d failed calls</title></path>`,
				x, padT+plotH-4, i, s.Failures)
			fmt.Fprintf(&c.b, `<text x="%.1f" y="%d" class="failure-count" text-anchor="middle">%d</text>`, x, padT+plotH-20, s.Failures)
		}
	}
	c.line(ys, colorCalls, "series-calls")
	entries := [][2]string{{"calls/s", colorCalls}}
	if failed > 0 {
		entries = append(entries, [2]string{"seconds with failed calls (count)", colorFail})
	} else {
		entries = append(entries, [2]string{"no failed call", "#d1d5db"})
	}
	if len(r.events) > 0 {
		entries = append(entries, [2]string{"a server down", colorOutage})
	}
	c.legend(entries)
	return c.String()
}

// latencyChart is the p50 and p99 latency per second, on a log scale.
func latencyChart(r *report, secs []*phase) string {
	c := newChart("Latency per second, p50 and p99", "latency (log scale)", len(secs))
	p50, p99 := make([]float64, len(secs)), make([]float64, len(secs))
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, s := range secs {
		if s.Calls == 0 {
			p50[i], p99[i] = math.NaN(), math.NaN()
			continue
		}
		p50[i], p99[i] = float64(s.Latency.quantile(0.50)), float64(s.Latency.quantile(0.99))
		lo, hi = math.Min(lo, p50[i]), math.Max(hi, p99[i])
	}
	if math.IsInf(lo, 1) {
		lo, hi = float64(time.Millisecond), float64(10*time.Millisecond)
	}
	// Whole decades, with room above the highest point for the legend.
	dlo := math.Floor(math.Log10(lo / 2))
	dhi := math.Ceil(math.Log10(hi * 3))
	if dhi-dlo < 2 {
		dhi = dlo + 2
	}
	y := func(ns float64) float64 { return padT + plotH - (math.Log10(ns)-dlo)/(dhi-dlo)*plotH }
	c.events(r.events)
	for dec := dlo; dec <= dhi; dec++ {
		base := math.Pow(10, dec)
		c.yTick(y(base), formatDuration(time.Duration(base)))
		if dhi-dlo <= 4 && dec < dhi {
			for _, m := range []float64{2, 5} {
				fmt.Fprintf(&c.b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" class="grid minor"/>`, padL, y(m*base), padL+plotW, y(m*base))
			}
		}
	}
	c.xAxis()
	for i := range secs {
		if !math.IsNaN(p50[i]) {
			p50[i], p99[i] = y(p50[i]), y(p99[i])
		}
	}
	c.line(p99, colorP99, "series-p99")
	c.line(p50, colorP50, "series-p50")
	entries := [][2]string{{"p99", colorP99}, {"p50", colorP50}}
	if len(r.events) > 0 {
		entries = append(entries, [2]string{"a server down", colorOutage})
	}
	c.legend(entries)
	return c.String()
}

// niceStep returns a step of 1, 2 or 5 times a power of ten that cuts span
// into at most about n parts.
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return math.Max(m*p, 1)
		}
	}
	return 10 * p
}

func formatCount(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%gk", v/1000)
	default:
		return fmt.Sprintf("%g", v)
	}
}

func formatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%g s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%g ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%g µs", float64(d)/float64(time.Microsecond))
	}
}

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #111827;
  background: #f9fafb; margin: 0; padding: 24px 32px; }
main { max-width: 1040px; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.1rem; margin: 28px 0 8px; }
.sub { color: #4b5563; margin: 0 0 8px; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; font-weight: 700; color: #fff; margin-left: 8px; }
.pass { background: #059669; } .fail { background: #dc2626; }
.card { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 12px 16px; }
svg.chart { width: 100%; height: auto; display: block; font-family: inherit; }
svg .plot { fill: #fff; stroke: #9ca3af; }
svg .grid { stroke: #e5e7eb; stroke-width: 1; }
svg .grid.minor { stroke: #f3f4f6; }
svg .tick { font-size: 13px; fill: #374151; }
svg .axis-title { font-size: 14px; fill: #111827; font-weight: 600; }
svg .outage { fill: ` + colorOutage + `; opacity: .6; }
svg .instant { stroke: ` + colorOutageTx + `; stroke-width: 2; stroke-dasharray: 6 4; }
svg .event-label { font-size: 13px; fill: ` + colorOutageTx + `; font-weight: 600; }
svg .failure { fill: ` + colorFail + `; }
svg .failure-count { font-size: 12px; fill: ` + colorFail + `; font-weight: 700; }
svg .legend { font-size: 13px; fill: #111827; }
svg .legend-bg { fill: #fff; opacity: .85; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { text-align: left; vertical-align: top; padding: 6px 10px; border-bottom: 1px solid #e5e7eb; }
th { width: 9rem; color: #374151; font-weight: 600; white-space: nowrap; }
.note { color: #4b5563; font-size: .85rem; }
</style>
</head>
<body>
<main>
<h1>{{.Title}} <span class="verdict {{if .Pass}}pass{{else}}fail{{end}}" id="verdict">{{.Verdict}}</span></h1>
<p class="sub">{{.Subtitle}}</p>
<h2>Calls per second</h2>
<div class="card" id="calls">{{.Calls}}</div>
<h2>Latency per second (p50, p99)</h2>
<div class="card" id="latency">{{.Latency}}</div>
<p class="note">{{.Note}}</p>
<h2>Summary</h2>
<div class="card">
<table id="summary">
{{range .Summary}}<tr><th>{{index . 0}}</th><td>{{index . 1}}</td></tr>
{{end}}</table>
</div>
</main>
</body>
</html>
`))
