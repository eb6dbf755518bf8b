package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"time"

	"github.com/msalcache/msalcache/distributed"
)

// A histogram counts call latencies in buckets 5% wide, so that processes
// can send theirs to the coordinator and the percentiles of the whole run
// can be read from the sum.
type histogram map[int]int64

var bucketBase = math.Log(1.05)

func (h histogram) add(d time.Duration) {
	ns := max(float64(d.Nanoseconds()), 1)
	h[int(math.Log(ns)/bucketBase)]++
}

func (h histogram) merge(o histogram) {
	for b, n := range o {
		h[b] += n
	}
}

// quantile returns the upper bound of the bucket that holds quantile q.
func (h histogram) quantile(q float64) time.Duration {
	var total int64
	buckets := make([]int, 0, len(h))
	for b, n := range h {
		total += n
		buckets = append(buckets, b)
	}
	if total == 0 {
		return 0
	}
	sort.Ints(buckets)
	rank := int64(math.Ceil(q * float64(total)))
	var seen int64
	for _, b := range buckets {
		seen += h[b]
		if seen >= rank {
			return time.Duration(math.Exp(float64(b+1) * bucketBase))
		}
	}
	return time.Duration(math.Exp(float64(buckets[len(buckets)-1]+1) * bucketBase))
}

// A phase counts the calls begun in one part of the run.
type phase struct {
	Calls    int64
	Failures int64
	Latency  histogram

	tl   *timeline // also counted per second there, when not nil
	last int       // the second of tl that the last observed call ended in
}

func newPhase() *phase { return &phase{Latency: histogram{}} }

func (p *phase) merge(o *phase) {
	p.Calls += o.Calls
	p.Failures += o.Failures
	p.Latency.merge(o.Latency)
}

// report is what the command prints.
type report struct {
	mode    string
	workers string // what ran: processes, goroutines, users, tenants
	elapsed time.Duration
	outage  string
	late    string // sign-ins during the outage

	warmFailures int64
	all, down    *phase
	errors       []string // the first few failures

	tokenRequests int // at the identity provider after warm-up: lost tokens
	byGrant       string

	signedOut, users int    // users a new replica could not serve after the run, of users; -1: not measured
	inspected        string // where the stored partitions were read: "Redis" or "PostgreSQL"

	partitions, foreign, unknown, missing int
	stats                                 distributed.Stats // summed over the processes

	timeline *timeline // per second, when an HTML report was asked for
	events   []event   // the faults, for the HTML report
}

func newReport(mode string) *report {
	return &report{mode: mode, all: newPhase(), down: newPhase(), signedOut: -1, inspected: "Redis", timeline: &timeline{}}
}

func (r *report) failures() int64 { return r.warmFailures + r.all.Failures }

// clean reports whether the run held every promise.
func (r *report) clean() bool {
	return r.all.Calls > 0 && r.failures() == 0 && r.tokenRequests == 0 && r.signedOut <= 0 &&
		r.foreign == 0 && r.unknown == 0 && r.missing == 0
}

func (r *report) print(w io.Writer) {
	secs := r.elapsed.Seconds()
	fmt.Fprintf(w, "mode:            %s\n", r.mode)
	fmt.Fprintf(w, "load:            %s, %.1f s\n", r.workers, secs)
	fmt.Fprintf(w, "outage:          %s\n", r.outage)
	if r.late != "" {
		fmt.Fprintf(w, "write-back:      %s\n", r.late)
	}
	fmt.Fprintf(w, "calls:           %d (%d while a server was down)\n", r.all.Calls, r.down.Calls)
	if secs > 0 {
		fmt.Fprintf(w, "calls/s:         %.0f\n", float64(r.all.Calls)/secs)
	}
	fmt.Fprintf(w, "latency:         p50 %v, p99 %v (while down: p50 %v, p99 %v)\n",
		round(r.all.Latency.quantile(0.50)), round(r.all.Latency.quantile(0.99)),
		round(r.down.Latency.quantile(0.50)), round(r.down.Latency.quantile(0.99)))
	fmt.Fprintf(w, "failures:        %d (warm-up %d, while down %d)\n", r.failures(), r.warmFailures, r.down.Failures)
	for _, e := range r.errors {
		fmt.Fprintf(w, "  e.g.           %s\n", e)
	}
	if r.signedOut >= 0 {
		fmt.Fprintf(w, "signed out:      %d of %d users (a replica started after the run finds no token for them)\n", r.signedOut, r.users)
	}
	fmt.Fprintf(w, "lost tokens:     %d (token requests at the identity provider after sign-in%s)\n", r.tokenRequests, r.byGrant)
	if r.partitions >= 0 {
		fmt.Fprintf(w, "foreign entries: %d (in %d stored partitions read from %s; %d unknown, %d missing)\n",
			r.foreign, r.partitions, r.inspected, r.unknown, r.missing)
	}
	if r.mode == modeClients || r.mode == modeTandem {
		s := r.stats
		fmt.Fprintf(w, "cache:           memory hits %d, L1 hits %d, store reads %d, writes %d, conflicts %d, store errors %d, invalidations %d\n",
			s.MemoryHits, s.L1Hits, s.StoreReads, s.Writes, s.Conflicts, s.Errors, s.Invalidations)
	}
	verdict := "PASS"
	if !r.clean() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "result:          %s\n", verdict)
}

// round keeps three significant digits.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	case d >= 100*time.Microsecond:
		return d.Round(time.Microsecond)
	default:
		return d.Round(100 * time.Nanosecond)
	}
}
