//go:build !windows

// The load command runs redis-server, which Wine does not have.

package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/internal/pgtest"
	"github.com/msalcache/msalcache/internal/recordfmt"
	"github.com/msalcache/msalcache/internal/redistest"
	"github.com/msalcache/msalcache/internal/seal"
)

// TestMain lets the test binary be a worker process: the command
// re-executes its own binary.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		os.Exit(workerMain())
	}
	os.Exit(m.Run())
}

// TestRun runs the command briefly, with a Redis kill in the middle, and
// checks what it printed (see checkRun). Besides the 20 users, 2 more sign
// in while Redis is down; the 3 daemon tenants have a partition each.
func TestRun(t *testing.T) {
	checkRun(t, []string{"--procs=2", "--goroutines=4", "--users=20", "--tenants=3", "--duration=6s", "--outage=2s"}, 20+2+3)
}

// TestRunWebApp is TestRun for two examples/web-app replicas over HTTP.
func TestRunWebApp(t *testing.T) {
	checkRun(t, []string{"--web-app", "--procs=1", "--goroutines=4", "--users=20", "--duration=6s", "--outage=2s"}, 20)
}

// checkRun runs the command with args and checks what it printed: calls
// were made, during the outage too, and there was no failure, lost token
// or foreign entry among the partitions stored; it started and stopped
// its own redis-server and left nothing in the temporary directory.
func checkRun(t *testing.T, args []string, partitions int) {
	redistest.Require(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	out := stdout.String()
	t.Logf("output:\n%s", out)
	if code != exitOK {
		t.Errorf("exit status %d, want %d; stderr:\n%s", code, exitOK, stderr.String())
	}
	wants := []string{
		`(?m)^outage: +redis-server killed \(SIGKILL\) at`,
		`(?m)^failures: +0 \(warm-up 0, while down 0\)$`,
		`(?m)^lost tokens: +0 `,
		`(?m)^foreign entries: 0 \(in ` + strconv.Itoa(partitions) + ` stored partitions read from Redis; 0 unknown, 0 missing\)$`,
		`(?m)^result: +PASS$`,
	}
	if !slices.Contains(args, "--web-app") {
		wants = append(wants, `(?m)^write-back: +2 users signed in while Redis was down; `,
			`(?m)^signed out: +0 of 22 users `)
	}
	for _, want := range wants {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output does not match %s", want)
		}
	}
	m := regexp.MustCompile(`(?m)^calls: +(\d+) \((\d+) while a server was down\)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("no calls line")
	}
	if all, _ := strconv.Atoi(m[1]); all == 0 {
		t.Error("no calls were made")
	}
	if down, _ := strconv.Atoi(m[2]); down == 0 {
		t.Error("no calls were made while Redis was down")
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left behind in the temporary directory: %v", left)
	}
}

// TestRunTandem runs the command on the tandem of Redis and PostgreSQL
// with its three faults: Redis flushed, Redis killed and restarted empty,
// PostgreSQL killed and restarted. No user is signed out, no call fails, no
// token is lost, and the partitions PostgreSQL holds are each one user's.
// Besides the 20 users, 2 more sign in while PostgreSQL is down.
func TestRunTandem(t *testing.T) {
	redistest.Require(t)
	pgtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--tandem", "--procs=2", "--goroutines=4", "--users=20", "--tenants=3", "--duration=10s", "--outage=1500ms"}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("output:\n%s", out)
	if code != exitOK {
		t.Errorf("exit status %d, want %d; stderr:\n%s", code, exitOK, stderr.String())
	}
	for _, want := range []string{
		`(?m)^mode: +.*Tiered\(Redis, PostgreSQL\)$`,
		`(?m)^outage: +Redis flushed \(FLUSHALL\) at .*; redis-server killed \(SIGKILL\) at .* back empty at .*; PostgreSQL killed \(SIGKILL\) at .*, back at `,
		`(?m)^write-back: +2 users signed in while PostgreSQL was down; `,
		`(?m)^failures: +0 \(warm-up 0, while down 0\)$`,
		`(?m)^signed out: +0 of 22 users `,
		`(?m)^lost tokens: +0 `,
		`(?m)^foreign entries: 0 \(in 25 stored partitions read from PostgreSQL; 0 unknown, 0 missing\)$`,
		`(?m)^result: +PASS$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output does not match %s", want)
		}
	}
	m := regexp.MustCompile(`(?m)^calls: +(\d+) \((\d+) while a server was down\)$`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" || m[2] == "0" {
		t.Errorf("calls line %q: want calls, some while a server was down", m)
	}
}

// TestRunExternalRedis runs the command on a Redis it did not start: no
// outage, and the run's keys are gone afterwards.
func TestRunExternalRedis(t *testing.T) {
	redistest.Require(t)
	srv := redistest.Start(t)
	if _, err := srv.Do("SET", "someone-else", "kept"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--redis", srv.URL(), "--procs=1", "--goroutines=2", "--users=5", "--tenants=1", "--duration=2s"}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("output:\n%s", out)
	if code != exitOK {
		t.Errorf("exit status %d, want %d; stderr:\n%s", code, exitOK, stderr.String())
	}
	for _, want := range []string{
		`(?m)^outage: +none \(an external Redis is not killed\)$`,
		`(?m)^foreign entries: 0 \(in 6 stored partitions read from Redis; 0 unknown, 0 missing\)$`,
		`(?m)^result: +PASS$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output does not match %s", want)
		}
	}
	if n, err := srv.Do("DBSIZE"); err != nil || n != int64(1) {
		t.Errorf("DBSIZE after the run: %v, %v; want 1 (only the key the run did not write)", n, err)
	}
}

// TestRunReportsFailures gives the workers another key prefix than the
// one the users' tokens were stored under: every call fails, and the
// command says so and exits 1.
func TestRunReportsFailures(t *testing.T) {
	redistest.Require(t)
	defer func(f func(string) string) { workerPrefix = f }(workerPrefix)
	workerPrefix = func(p string) string { return p + "elsewhere:" }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"--procs=1", "--goroutines=2", "--users=3", "--tenants=0", "--duration=2s", "--outage=0"}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("output:\n%s", out)
	if code != exitFailed {
		t.Errorf("exit status %d, want %d", code, exitFailed)
	}
	m := regexp.MustCompile(`(?m)^failures: +(\d+) \(warm-up 3,`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("want a failures line with 3 failures in the warm-up")
	}
	if !regexp.MustCompile(`(?m)^result: +FAIL$`).MatchString(out) {
		t.Error("want result: FAIL")
	}
}

// TestInspectFindsForeignEntries copies one user's entries into another's
// stored partition, in Redis, and checks that the inspection counts them.
func TestInspectFindsForeignEntries(t *testing.T) {
	redistest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, stop, err := setUp(options{redisURL: redistest.Start(t).URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	sg, err := newSigner(e)
	if err != nil {
		t.Fatal(err)
	}
	defer sg.close()
	accounts, err := sg.signIn(ctx, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	a, b := accounts[0].HomeAccountID, accounts[1].HomeAccountID
	partitions := map[string]bool{a: true, b: true}
	in, err := inspect(ctx, e.redisURL, e.prefix, e.key, partitions)
	if err != nil {
		t.Fatal(err)
	}
	if in != (inspection{partitions: 2}) {
		t.Fatalf("before: %+v, want 2 partitions and nothing else", in)
	}

	client, err := openRaw(e.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	keys, err := seal.New(e.key)
	if err != nil {
		t.Fatal(err)
	}
	// read returns the partition's version (redisstore's first 8 bytes),
	// its record's header and its entries.
	read := func(partition string) ([]byte, recordfmt.Header, *msaljson.Snapshot) {
		raw, err := client.Do(ctx, client.B().Get().Key(recordfmt.StoreKey(e.prefix, partition)).Build()).AsBytes()
		if err != nil {
			t.Fatal(err)
		}
		h, js, err := recordfmt.Open(raw[8:], recordfmt.StoreKey(e.prefix, partition), keys)
		if err != nil {
			t.Fatal(err)
		}
		s, err := msaljson.Parse(js, nil)
		if err != nil {
			t.Fatal(err)
		}
		return raw[:8:8], h, s
	}
	versionA, headA, snapA := read(a)
	_, _, snapB := read(b)
	both := msaljson.Union(snapA, snapB)
	value := append(versionA, recordfmt.Seal(headA, both.Encode(), recordfmt.StoreKey(e.prefix, a), keys)...)
	if err := client.Do(ctx, client.B().Set().Key(recordfmt.StoreKey(e.prefix, a)).Value(string(value)).Build()).Error(); err != nil {
		t.Fatal(err)
	}

	in, err = inspect(ctx, e.redisURL, e.prefix, e.key, partitions)
	if err != nil {
		t.Fatal(err)
	}
	if want := entries(snapB); in.foreign != want || want == 0 {
		t.Errorf("foreign entries %d, want %d (user B's entries in user A's partition)", in.foreign, want)
	}

	// A wrong writer whose partition function agrees with itself: B's
	// entries, marked with A's key as their user_assertion_hash, are A's
	// by msaljson's rule (on-behalf-of first). The check reads their
	// home_account_id.
	tagged := tagEntries(t, snapB, "user_assertion_hash", a)
	if got := tagged.Partition(a, nil); entries(got) != entries(snapB) {
		t.Fatalf("the writer's partition function gives A %d of the %d tagged entries; the plant needs all", entries(got), entries(snapB))
	}
	value = append(versionA, recordfmt.Seal(headA, msaljson.Union(snapA, tagged).Encode(), recordfmt.StoreKey(e.prefix, a), keys)...)
	if err := client.Do(ctx, client.B().Set().Key(recordfmt.StoreKey(e.prefix, a)).Value(string(value)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	in, err = inspect(ctx, e.redisURL, e.prefix, e.key, partitions)
	if err != nil {
		t.Fatal(err)
	}
	if want := entries(snapB); in.foreign != want {
		t.Errorf("foreign entries %d, want %d (user B's entries in user A's partition, tagged as A's)", in.foreign, want)
	}
}
