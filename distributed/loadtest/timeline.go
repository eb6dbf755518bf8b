package main

import "time"

// A timeline counts the calls of a run per second, for the HTML report:
// second i holds the calls that ended i seconds after the run began. Each
// calling goroutine keeps its own timeline and the timelines are merged at
// the end, so that the hot path takes no lock.
type timeline struct {
	start   time.Time // not sent: each process counts from its own "go"
	Seconds []*phase
}

func newTimeline(start time.Time) *timeline { return &timeline{start: start} }

// second returns the counts of the second in which t falls.
func (tl *timeline) second(t time.Time) (int, *phase) {
	i := max(int(t.Sub(tl.start)/time.Second), 0)
	for len(tl.Seconds) <= i {
		tl.Seconds = append(tl.Seconds, newPhase())
	}
	return i, tl.Seconds[i]
}

func (tl *timeline) merge(o *timeline) {
	if o == nil {
		return
	}
	for len(tl.Seconds) < len(o.Seconds) {
		tl.Seconds = append(tl.Seconds, newPhase())
	}
	for i, s := range o.Seconds {
		tl.Seconds[i].merge(s)
	}
}

// observe counts a call that began at start and ends now, in p and, when
// p keeps a timeline, in the second it ended in. Only p's goroutine calls it.
func (p *phase) observe(start time.Time) {
	end := time.Now()
	d := end.Sub(start)
	p.Latency.add(d)
	p.Calls++
	if p.tl != nil {
		var s *phase
		p.last, s = p.tl.second(end)
		s.Latency.add(d)
		s.Calls++
	}
}

// failure counts a failure of the call last observed.
func (p *phase) failure() {
	p.Failures++
	if p.tl != nil && p.last < len(p.tl.Seconds) {
		p.tl.Seconds[p.last].Failures++
	}
}

// An event is a fault of the run, shaded in the report: a window from From
// to To after the start, or an instant when To equals From.
type event struct {
	Name     string
	From, To time.Duration
}
