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
	kind  string // "node" (peer.mjs), "cache" (msalcache.Cache), "lock" (lock package + own read-modify-write)
	id    string
	count int // writes; for Node next to Go writers, the most it writes before the Go writers are done
}

func (w writer) key(i int) string {
	if w.kind == "node" {
		return nodeKey(w.id, i)
	}
	return goKey(w.id, i)
}

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
	peer := requireNode(t)
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
	for _, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			res := runWriters(t, peer, run.writers)
			res.check(t)
			t.Logf("%s: %s", run.name, res.summary())
		})
	}
}

// result is what a concurrency run produced.
type result struct {
	writers   []writer
	reports   []report
	final     msalJSON
	path      string
	destroyed map[string]bool // AccessToken keys some Node save removed
	torn      int             // lock-free reads that did not see valid JSON
	reads     int             // lock-free reads
	nodeSeen  []string        // the final file's access tokens as msal-node loads them
	goSeen    msalJSON        // the final file as a fresh msalcache.Cache loads it
}

func runWriters(t *testing.T, peer string, writers []writer) *result {
	dir := testdir.New(t)
	path := filepath.Join(dir, "msal.cache")
	marker := filepath.Join(dir, "inside-the-lock")
	gate := filepath.Join(dir, "start")
	stopNode := filepath.Join(dir, "stop") // Node writers stop when the Go writers are done
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
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
	var nodeProcs, goProcs []*proc
	for i, w := range writers {
		name := w.kind + " writer " + w.id
		count := strconv.Itoa(w.count)
		if w.kind == "node" {
			procs[i] = startProc(t, name, nodeCmd(peer,
				[]string{"PEER_MARKER=" + marker, "PEER_START=" + gate, "PEER_STOP=" + stopNode,
					"PEER_PAUSE=20", "PEER_RETRY_DELAY=10", "PEER_RETRY_NUMBER=3000"},
				"write", path, w.id, count))
			nodeProcs = append(nodeProcs, procs[i])
			continue
		}
		procs[i] = startProc(t, name, goCmd(w.kind+"-writer",
			envCache+"="+path, envID+"="+w.id, envCount+"="+count, envMarker+"="+marker, envStart+"="+gate))
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
	// Open the gate once every writer is up: Node takes far longer to start.
	for _, w := range writers {
		waitFile(t, gate+".ready."+w.id, 60*time.Second)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var errs []error
	for _, p := range goProcs {
		errs = append(errs, p.wait(80*time.Second))
	}
	if len(goProcs) > 0 {
		if err := os.WriteFile(stopNode, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range nodeProcs {
		errs = append(errs, p.wait(80*time.Second))
	}
	stop.Store(true)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		r, err := parseReport(p)
		if err != nil {
			t.Fatal(err)
		}
		res.reports = append(res.reports, r)
		for _, k := range r.Destroyed {
			if key, ok := strings.CutPrefix(k, "AccessToken/"); ok {
				res.destroyed[key] = true
			} else {
				t.Errorf("%s removed %s, which is not an access token", p.name, k)
			}
		}
	}

	res.final = readMSAL(t, path)
	res.nodeSeen = nodeDump(t, peer, path).AccessTokens
	res.goSeen = loadMSAL(t, ctx, path)
	return res
}

// lost returns, per writer, the entries it wrote that are not in the final
// file, and the lost entries no Node save explains.
func (r *result) lost() (perWriter []int, unexplained []string) {
	final := r.final.section("AccessToken")
	perWriter = make([]int, len(r.writers))
	for wi, w := range r.writers {
		for i := range r.reports[wi].Writes {
			k := w.key(i)
			if _, ok := final[k]; ok {
				continue
			}
			perWriter[wi]++
			if !r.destroyed[k] {
				unexplained = append(unexplained, k)
			}
		}
	}
	return perWriter, unexplained
}

func (r *result) check(t *testing.T) {
	t.Helper()
	overlaps := 0
	for i, rep := range r.reports {
		w := r.writers[i]
		if rep.Writes != w.count && (w.kind != "node" || rep.Writes == 0 || rep.Writes > w.count) {
			t.Errorf("%s writer %s: %d writes, want %d", w.kind, w.id, rep.Writes, w.count)
		}
		if rep.InvalidUnderLock != 0 {
			t.Errorf("%s writer %s found the file not MSAL JSON %d times while it held the lock", w.kind, w.id, rep.InvalidUnderLock)
		}
		overlaps += rep.Overlaps
	}
	if overlaps != 0 {
		t.Errorf("%d times a process took the lock while another held it (marker file present)", overlaps)
	}

	_, unexplained := r.lost()
	if len(unexplained) > 0 {
		t.Errorf("%d entries are missing that no Node save removed, so a msalcache process lost them; first: %s", len(unexplained), unexplained[0])
	}
	if _, ok := r.final.section("AccessToken")[goKey("seed", 0)]; !ok && !r.destroyed[goKey("seed", 0)] {
		t.Error("the entry written before the run is gone")
	}
	if copies, _ := filepath.Glob(r.path + ".corrupt*"); len(copies) > 0 {
		t.Error("msalcache set the file aside as corrupt: it mistook a Node write in progress for a corrupt file")
	}

	// Each library reads everything in the file, whoever wrote it.
	inFile := keys(r.final.section("AccessToken"))
	if got := slices.Sorted(slices.Values(r.nodeSeen)); !slices.Equal(got, inFile) {
		t.Errorf("msal-node loads %d access tokens from the final file, which holds %d", len(got), len(inFile))
	}
	if got := keys(r.goSeen.section("AccessToken")); !slices.Equal(got, inFile) {
		t.Errorf("msalcache loads %d access tokens from the final file, which holds %d", len(got), len(inFile))
	}
}

func (r *result) summary() string {
	perWriter, _ := r.lost()
	var parts []string
	overlaps := 0
	for i, w := range r.writers {
		rep := r.reports[i]
		overlaps += rep.Overlaps
		s := fmt.Sprintf("%s %s: %d writes in %.1fs, %d lost", w.kind, w.id, rep.Writes, float64(rep.Ms)/1000, perWriter[i])
		if w.kind == "node" {
			s += fmt.Sprintf(" (its saves removed %d entries of others; %d write accesses skipped the reload)", len(rep.Destroyed), rep.ReloadsSkipped)
		}
		parts = append(parts, s)
	}
	return fmt.Sprintf("%s; lock overlaps %d; lock-free reads %d, of which %d saw a Node write half done",
		strings.Join(parts, "; "), overlaps, r.reads, r.torn)
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
