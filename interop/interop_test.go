package interop

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testdir"
)

// A writer in a concurrency run.
type writer struct {
	kind  string // "node" (peer.mjs), "python" (peer.py), "cache" (msalcache.Cache), "lock" (lock package + own read-modify-write), "hold-for" (holds the lock a while)
	id    string
	count int // writes; for a peer next to Go writers, the most it writes before the Go writers are done
}

func (w writer) key(i int) string {
	if w.kind == "node" {
		return nodeKey(w.id, i)
	}
	return goKey(w.id, i) // MSAL Python's key is MSAL Go's
}

// peer reports whether w runs a sister library.
func (w writer) peer() bool { return w.kind == "node" || w.kind == "python" }

// peers are the sister library processes a run can start.
type peers struct {
	node   string // peer.mjs, if Node runs
	python pyPeer // if Python runs
}

// A run of concurrent writers.
type run struct {
	writers []writer
	until   until         // which writers decide when the run ends
	goOn    bool          // Go writers record failed writes and go on
	pause   time.Duration // every writer waits up to this long between writes (else Go 1 to 5 ms, peers up to 20 ms)
	hold    time.Duration // how long a "hold-for" writer holds the lock each time
}

// until says which writers write their full count; the others stop early
// once those are done.
type until int

const (
	untilGo    until = iota // peers stop once the Go writers are done
	untilPeers              // Go writers stop once the peers are done
	untilAll                // every writer writes its full count
)

// TestConcurrentWriters runs Node writers (msal-node + PersistenceCachePlugin
// + FilePersistence) and Go writers at the same time on one plaintext cache
// file, each adding access tokens of its own, and checks:
//
//   - no two processes were ever inside the lock at once (each marks its
//     critical section with an O_EXCL marker file);
//   - every read under the lock found valid MSAL JSON, and so does the end;
//   - every entry written is in the final file, except those a Node save
//     removed (peer.mjs records what each of its saves drops: entries written
//     by others since msal-node last loaded the file, because it decides
//     whether to reload by an mtime check before taking the lock);
//   - msalcache removed nothing: every lost entry is explained by a Node save;
//   - Node and msalcache each read everything the other wrote.
//
// The "node-only" run is the baseline: what msal-node-extensions loses
// among its own processes with no msalcache around.
func TestConcurrentWriters(t *testing.T) {
	p := peers{node: requireNode(t)}
	runs := []struct {
		name    string
		writers []writer
	}{
		{"node+msalcache", []writer{
			{"node", "n1", 300}, {"node", "n2", 300},
			{"cache", "gc", 50}, {"lock", "gl", 50},
		}},
		{"node-only", []writer{
			{"node", "n1", 50}, {"node", "n2", 50}, {"node", "n3", 50},
		}},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			rn := run{writers: r.writers}
			res := runWriters(t, p, rn)
			res.check(t, rn)
			t.Logf("%s: %s", r.name, res.summary())
		})
	}
}

// result is what a concurrency run produced.
type result struct {
	writers   []writer
	reports   []report
	final     msalJSON
	path      string
	destroyed map[string]bool // AccessToken keys some peer's save removed
	torn      int             // lock-free reads that did not see valid JSON
	reads     int             // lock-free reads
	nodeSeen  []string        // the final file's access tokens as msal-node loads them, if Node ran
	pySeen    []string        // the same as MSAL Python loads them, if Python ran
	goSeen    msalJSON        // the final file as a fresh msalcache.Cache loads it
}

func runWriters(t *testing.T, p peers, r run) *result {
	writers := r.writers
	dir := testdir.New(t)
	path := filepath.Join(dir, "msal.cache")
	marker := filepath.Join(dir, "inside-the-lock")
	ours := filepath.Join(dir, "msalcache-inside-the-lock")
	gate := filepath.Join(dir, "start")
	stopPeers := filepath.Join(dir, "stop-peers") // peers stop when the Go writers are done
	stopGo := filepath.Join(dir, "stop-go")       // or the Go writers stop when the peers are done
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// A signed-in state from before: one entry msalcache wrote.
	seed, err := msalcache.New(path, msalcache.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	if err := goWrite(ctx, seed, &jsonTarget{}, "seed", 0); err != nil {
		t.Fatal(err)
	}

	procs := make([]*proc, len(writers))
	var peerProcs, goProcs []*proc
	peerPause := int64(20)
	if r.pause > 0 {
		peerPause = r.pause.Milliseconds()
	}
	peerEnv := []string{"PEER_MARKER=" + marker, "PEER_START=" + gate, "PEER_PAUSE=" + strconv.FormatInt(peerPause, 10)}
	if r.until == untilGo {
		peerEnv = append(peerEnv, "PEER_STOP="+stopPeers)
	}
	for i, w := range writers {
		name := w.kind + " writer " + w.id
		count := strconv.Itoa(w.count)
		switch w.kind {
		case "node":
			procs[i] = startProc(t, name, nodeCmd(p.node,
				append(peerEnv, "PEER_RETRY_DELAY=10", "PEER_RETRY_NUMBER=3000"),
				"write", path, w.id, count))
			peerProcs = append(peerProcs, procs[i])
			continue
		case "python":
			procs[i] = startProc(t, name, p.python.cmd(peerEnv, "write", path, w.id, count))
			peerProcs = append(peerProcs, procs[i])
			continue
		}
		env := []string{envCache + "=" + path, envID + "=" + w.id, envCount + "=" + count,
			envMarker + "=" + marker, envOurs + "=" + ours, envStart + "=" + gate, envHold + "=" + r.hold.String()}
		if r.until == untilPeers {
			env = append(env, envStop+"="+stopGo)
		}
		if r.goOn {
			env = append(env, envGoOn+"=1")
		}
		if r.pause > 0 {
			env = append(env, envPause+"="+strconv.FormatInt(r.pause.Milliseconds(), 10))
		}
		role := w.kind + "-writer"
		if w.kind == "hold-for" {
			role = w.kind
		}
		procs[i] = startProc(t, name, goCmd(role, env...))
		goProcs = append(goProcs, procs[i])
	}

	// A reader without the lock, all along: what an app's lock-free read sees.
	res := &result{writers: writers, path: path, destroyed: map[string]bool{}}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			b, err := os.ReadFile(path)
			if err == nil {
				res.reads++
				if _, err := parseMSAL(b); err != nil || len(b) == 0 {
					res.torn++
				}
			}
			time.Sleep(time.Millisecond)
		}
	})
	// Open the gate once every writer is up: Node and Python take far
	// longer to start.
	for _, w := range writers {
		waitFile(t, gate+".ready."+w.id, 60*time.Second)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	first, second, stopFile := goProcs, peerProcs, stopPeers
	if r.until == untilPeers {
		first, second, stopFile = peerProcs, goProcs, stopGo
	}
	var errs []error
	for _, p := range first {
		errs = append(errs, p.wait(150*time.Second))
	}
	if len(first) > 0 { // with none, the others write their full count
		if err := os.WriteFile(stopFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range second {
		errs = append(errs, p.wait(150*time.Second))
	}
	stop.Store(true)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i, p := range procs {
		rep, err := parseReport(p)
		if err != nil {
			t.Fatal(err)
		}
		res.reports = append(res.reports, rep)
		for _, k := range rep.Destroyed {
			switch key, ok := strings.CutPrefix(k, "AccessToken/"); {
			case ok:
				res.destroyed[key] = true
			case writers[i].kind == "node":
				t.Errorf("%s removed %s, which is not an access token", p.name, k)
			}
			// MSAL Python also saves the account and the app metadata of
			// each token response: its saves drop other Python writers'
			// accounts, which their next write puts back.
		}
	}

	res.final = readMSAL(t, path)
	if p.node != "" {
		res.nodeSeen = nodeDump(t, p.node, path).AccessTokens
	}
	if p.python.peer != "" {
		res.pySeen = p.python.dump(t, path).AccessTokens
	}
	res.goSeen = loadMSAL(t, ctx, path)
	return res
}

// written returns the numbers of the writes writer wi completed.
func (r *result) written(wi int) []int {
	if r.writers[wi].kind == "python" {
		return r.reports[wi].Written
	}
	var n []int
	for i := range r.reports[wi].Writes {
		n = append(n, i)
	}
	return n
}

// lost returns, per writer, the entries it wrote that are not in the final
// file, and the lost entries no Node save explains.
func (r *result) lost() (perWriter []int, unexplained [][]string) {
	final := r.final.section("AccessToken")
	perWriter = make([]int, len(r.writers))
	unexplained = make([][]string, len(r.writers))
	for wi, w := range r.writers {
		if w.kind == "hold-for" {
			continue
		}
		for _, i := range r.written(wi) {
			k := w.key(i)
			if _, ok := final[k]; ok {
				continue
			}
			perWriter[wi]++
			if !r.destroyed[k] {
				unexplained[wi] = append(unexplained[wi], k)
			}
		}
	}
	return perWriter, unexplained
}

// gaveUp reports whether a Python writer went on without the lock.
func (r *result) gaveUp() bool {
	for _, rep := range r.reports {
		if rep.GaveUp > 0 {
			return true
		}
	}
	return false
}

// check checks the promises of a run. Where a Python writer gave up
// waiting and went on without the lock, the lock excluded nobody for a
// while: then overlaps, torn reads under the lock and Python's own losses
// are figures to report, not failures; msalcache's promises still hold,
// and msalcache's processes never hold the lock together (their own
// marker), even when Python deleted their lock file.
func (res *result) check(t *testing.T, r run) {
	t.Helper()
	strict := !res.gaveUp()
	overlaps, ours := 0, 0
	for i, rep := range res.reports {
		w := res.writers[i]
		done := rep.Writes // Go writers count failed writes too
		if w.kind == "python" {
			done += len(rep.Errors)
		}
		upTo := w.kind != "hold-for" && (r.until == untilGo && w.peer() || r.until == untilPeers && !w.peer())
		switch {
		case upTo && (rep.Writes == 0 || done > w.count):
			t.Errorf("%s writer %s: %d writes, want 1 to %d", w.kind, w.id, rep.Writes, w.count)
		case !upTo && done != w.count:
			t.Errorf("%s writer %s: %d writes and %d failed, want %d in all", w.kind, w.id, rep.Writes, len(rep.Errors), w.count)
		}
		if w.kind == "python" && rep.BlindSaves+rep.InvalidUnderLock > 0 {
			// peer.py's saves take turns, and only they write the file in
			// place: what a save reads before it truncates is complete.
			t.Errorf("python writer %s: %d saves could not read what they overwrote (empty %d, not MSAL JSON %d): what they removed is unknown, so losses cannot be told apart", w.id, rep.BlindSaves+rep.InvalidUnderLock, rep.BlindSaves, rep.InvalidUnderLock)
		}
		if w.kind == "python" && strict && rep.ReloadsMissedStamped > 0 {
			// msalcache stamps each write past the clock of every process
			// that synced before it took the lock.
			t.Errorf("python writer %s skipped the reload of a file msalcache wrote %d times, although every process took the lock", w.id, rep.ReloadsMissedStamped)
		}
		if rep.InvalidUnderLock != 0 && strict && w.kind != "python" {
			t.Errorf("%s writer %s found the file not MSAL JSON %d times while it held the lock", w.kind, w.id, rep.InvalidUnderLock)
		}
		for _, e := range rep.Errors {
			switch {
			case w.kind == "python" && strict:
				t.Errorf("python writer %s failed: %s", w.id, e)
			case w.kind != "python":
				t.Errorf("%s writer %s failed: %s", w.kind, w.id, e)
			}
		}
		if len(rep.UnlockErrors) > 0 && strict {
			t.Errorf("%s writer %s: %d unlocks failed while every writer took the lock; first: %s", w.kind, w.id, len(rep.UnlockErrors), rep.UnlockErrors[0])
		}
		overlaps += rep.Overlaps
		ours += rep.OurOverlaps
	}
	if overlaps != 0 && strict {
		t.Errorf("%d times a process took the lock while another held it (marker file present)", overlaps)
	}
	if ours != 0 {
		t.Errorf("%d times a msalcache process took the lock while another msalcache process held it", ours)
	}

	_, unexplained := res.lost()
	for i, keys := range unexplained {
		w := res.writers[i]
		if len(keys) > 0 && (strict || w.kind != "python") {
			t.Errorf("%s writer %s: %d entries are missing that no Node or Python save removed, so a msalcache process lost them; first: %s",
				w.kind, w.id, len(keys), keys[0])
		}
	}
	if _, ok := res.final.section("AccessToken")[goKey("seed", 0)]; !ok && !res.destroyed[goKey("seed", 0)] {
		t.Error("the entry written before the run is gone")
	}
	if copies, _ := filepath.Glob(res.path + ".corrupt*"); len(copies) > 0 {
		t.Error("msalcache set the file aside as corrupt: it mistook a write in progress for a corrupt file")
	}

	// Each library reads everything in the file, whoever wrote it.
	inFile := keys(res.final.section("AccessToken"))
	if res.nodeSeen != nil {
		if got := slices.Sorted(slices.Values(res.nodeSeen)); !slices.Equal(got, inFile) {
			t.Errorf("msal-node loads %d access tokens from the final file, which holds %d", len(got), len(inFile))
		}
	}
	if res.pySeen != nil {
		if got := slices.Sorted(slices.Values(res.pySeen)); !slices.Equal(got, inFile) {
			t.Errorf("MSAL Python loads %d access tokens from the final file, which holds %d", len(got), len(inFile))
		}
	}
	if got := keys(res.goSeen.section("AccessToken")); !slices.Equal(got, inFile) {
		t.Errorf("msalcache loads %d access tokens from the final file, which holds %d", len(got), len(inFile))
	}
}

func (r *result) summary() string {
	perWriter, unexplained := r.lost()
	var parts []string
	overlaps, ours := 0, 0
	for i, w := range r.writers {
		rep := r.reports[i]
		overlaps += rep.Overlaps
		ours += rep.OurOverlaps
		if w.kind == "hold-for" {
			parts = append(parts, fmt.Sprintf("hold-for %s: held the lock %d times; %d overlaps, %d with msalcache; %d unlocks found the lock file deleted", w.id, rep.Writes, rep.Overlaps, rep.OurOverlaps, len(rep.UnlockErrors)))
			continue
		}
		s := fmt.Sprintf("%s %s: %d writes in %.1fs, %d lost", w.kind, w.id, rep.Writes, float64(rep.Ms)/1000, perWriter[i])
		if n := len(unexplained[i]); n > 0 {
			s += fmt.Sprintf(" (%d not removed by a peer's save)", n)
		}
		s += fmt.Sprintf(", %d overlaps", rep.Overlaps)
		switch w.kind {
		case "node":
			s += fmt.Sprintf(" (its saves removed %d entries of others; %d write accesses skipped the reload)", len(rep.Destroyed), rep.ReloadsSkipped)
		case "python":
			s += fmt.Sprintf(" (%d saves, which removed %d access tokens of others; %d reloads missed a change (mtime up to %dµs before its last save; %d of a file msalcache stamped); %d reloads found the file empty; gave up waiting for the lock %d times, longest wait %.1fs; %d failed writes; %d saves over a file that was not MSAL JSON, %d over one found empty)",
				rep.Saves, countPrefix(rep.Destroyed, "AccessToken/"), rep.ReloadsMissed, rep.MissedByUs, rep.ReloadsMissedStamped, rep.EmptyReloads, rep.GaveUp, float64(rep.LockWaitMaxMs)/1000, len(rep.Errors), rep.InvalidUnderLock, rep.BlindSaves)
		default:
			s += fmt.Sprintf(" (longest write %.1fs)", float64(rep.MaxMs)/1000)
			if w.kind == "lock" {
				s += fmt.Sprintf(" (%d with msalcache; %d unlocks found the lock file deleted; %d reads under the lock found it empty or not MSAL JSON)", rep.OurOverlaps, len(rep.UnlockErrors), rep.InvalidUnderLock)
			}
			if len(rep.Errors) > 0 {
				s += fmt.Sprintf(" (%d errors: %s)", len(rep.Errors), rep.Errors[0])
			}
			if len(rep.Warnings) > 0 {
				s += fmt.Sprintf(" (%d warnings: %s)", len(rep.Warnings), strings.Join(slices.Compact(slices.Sorted(slices.Values(rep.Warnings))), " | "))
			}
		}
		parts = append(parts, s)
	}
	return fmt.Sprintf("%s; lock overlaps %d, among msalcache processes %d; lock-free reads %d, of which %d saw a write half done",
		strings.Join(parts, "; "), overlaps, ours, r.reads, r.torn)
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func keys[V any](m map[string]V) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v: a writer did not start", path, limit)
		}
	}
}
