// Command loadtest puts the distributed token cache under a bounded load:
// several processes, each with one shared MSAL Go confidential client (the
// way Go web apps hold it) used by many goroutines for many signed-in users
// and daemon tenants, on one Redis, against the local identity provider of
// internal/fakeidp. In the middle of the run it kills redis-server and
// starts it again. With --tandem the store is distributed.Tiered over Redis
// and a PostgreSQL it starts too, and three faults come in turn: Redis is
// flushed, Redis is killed and restarted empty (no persistence: the tandem
// does not need it), PostgreSQL is killed and restarted. It then prints:
//
//   - signed-out users: users whose token a newly started replica cannot
//     find silently after the run;
//
//   - failures: calls that returned an error or another user's token;
//
//   - lost tokens: token requests the identity provider received after the
//     users signed in and the daemons got their first tokens (every later
//     call should have been served from the cache);
//
//   - foreign entries: entries in a stored partition that belong to another
//     partition, read from Redis directly (not through the Cache), or with
//     --tandem from PostgreSQL, the layer that holds the truth;
//
//   - calls/s and the p50 and p99 latency of the calls.
//
// It exits 1 if there was any failure, lost token or foreign entry, 2 on a
// usage error.
//
//	go run ./distributed/loadtest [--procs 4] [--goroutines 16] [--users 200] [--tenants 10] [--duration 20s] [--tandem] [--report FILE.html]
//
// With --report it also writes the run as one self-contained HTML page
// (inline CSS and SVG, nothing fetched): calls/s and the p50 and p99
// latency per second, the outages shaded, the seconds with failures
// marked, and the summary above.
//
// It starts its own redis-server (with an append-only file, so that the
// data survives the kill) in a temporary directory unless --redis names
// one; an external Redis is not killed, and the keys of the run are deleted
// afterwards. Everything it starts is stopped before it returns, and
// nothing is left behind.
//
// With --web-app it builds examples/web-app, runs two replicas of it on the
// Redis, signs the users in over HTTP and loads the replicas' /me page
// (a silent token from the shared cache and a call of the downstream API)
// from --procs × --goroutines goroutines, with the same outage and checks.
// It must then run inside the module (it calls go build).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	if os.Getenv(workerEnv) != "" {
		os.Exit(workerMain())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command's flags.
type options struct {
	procs      int
	goroutines int
	users      int
	tenants    int
	duration   time.Duration
	outage     time.Duration
	redisURL   string
	webApp     bool
	tandem     bool
	report     string // the HTML report's file; "" for none
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.procs, "procs", 4, "worker processes (--web-app: the two replicas are the processes, and the load runs in this one with procs × goroutines goroutines)")
	fs.IntVar(&o.goroutines, "goroutines", 16, "goroutines per process, all on the process's one shared client")
	fs.IntVar(&o.users, "users", 200, "signed-in users")
	fs.IntVar(&o.tenants, "tenants", 10, "daemon tenants (client credentials, one partition each; 0: none)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "length of the measured run")
	outage := &outageFlag{}
	fs.Var(outage, "outage", "how long Redis is down in the middle of the run (default a quarter of --duration; 0: no outage)")
	fs.BoolVar(&o.webApp, "web-app", false, "load two examples/web-app replicas over HTTP instead (request goroutines: procs × goroutines)")
	fs.StringVar(&o.redisURL, "redis", "", "use this Redis (redis://host:port) instead of starting one; it is not killed")
	fs.StringVar(&o.report, "report", "", "also write the run as one self-contained HTML page to this file (mode 0600): calls/s and p50/p99 per second, the outages shaded, failures marked, the summary")
	fs.BoolVar(&o.tandem, "tandem", false, "run on distributed.Tiered(Redis, PostgreSQL), starting a PostgreSQL too (Debian package postgresql), Redis without persistence, and three faults: Redis flushed (FLUSHALL), Redis killed and restarted empty, PostgreSQL killed and restarted, each fault's outage lasting --outage")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: loadtest [flags]\n\nPuts the distributed token cache under a bounded load with a Redis outage in the middle.\nExit status: 0 clean run; 1 failures, lost tokens or foreign entries (or an error); 2 usage error.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.procs < 1 || o.procs > 64:
		return o, errors.New("--procs: want 1 to 64")
	case o.goroutines < 1 || o.goroutines > 1024:
		return o, errors.New("--goroutines: want 1 to 1024")
	case o.users < 1 || o.users > 100000:
		return o, errors.New("--users: want 1 to 100000")
	case o.tenants < 0 || o.tenants > 1000:
		return o, errors.New("--tenants: want 0 to 1000")
	case o.duration < time.Second || o.duration > time.Hour:
		return o, errors.New("--duration: want 1s to 1h")
	}
	o.outage = o.duration / 4
	if o.tandem {
		o.outage = o.duration / 8
	}
	if outage.set {
		o.outage = outage.d
	}
	if o.outage < 0 {
		return o, errors.New("--outage: must not be negative")
	}
	if o.outage >= o.duration {
		return o, errors.New("--outage: must be shorter than --duration")
	}
	if o.tandem {
		switch {
		case o.redisURL != "":
			return o, errors.New("--tandem starts its own Redis and PostgreSQL: it does not take --redis")
		case o.webApp:
			return o, errors.New("--tandem and --web-app do not go together")
		case o.outage > o.duration*3/10:
			return o, errors.New("--outage: with --tandem, at most 3/10 of --duration (two servers are killed in turn)")
		}
	}
	if o.redisURL != "" {
		o.outage = 0
	}
	if o.report != "" {
		if fi, err := os.Stat(filepath.Dir(o.report)); err != nil || !fi.IsDir() {
			return o, fmt.Errorf("--report %s: its directory does not exist", o.report)
		}
	}
	return o, nil
}

// outageFlag is --outage, whose default depends on --duration.
type outageFlag struct {
	d   time.Duration
	set bool
}

func (f *outageFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return f.d.String()
}

func (f *outageFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	f.d, f.set = d, true
	return nil
}

// run runs the command and returns its exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return exitUsage
	}
	// Worker processes share stderr: one write at a time.
	run := runClients
	if o.webApp {
		run = runWebApp
	}
	r, err := run(ctx, o, &lockedWriter{w: stderr})
	if r != nil {
		r.print(stdout)
		if o.report != "" {
			if werr := writeHTMLReport(o.report, r); werr != nil {
				err = errors.Join(err, fmt.Errorf("--report: %w", werr))
			} else {
				fmt.Fprintf(stdout, "report:          %s\n", o.report)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return exitFailed
	}
	if !r.clean() {
		return exitFailed
	}
	return exitOK
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
