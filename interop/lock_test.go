package interop

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/testdir"
)

// TestNodeKilledHoldingLock: a Node process killed while it holds its lock
// leaves "<cache>.lockfile" with its bare pid. msalcache waits while that
// pid lives (msal-node-extensions holds its lock without an OS lock, so a
// live pid is a holder) and, once it is dead, takes the file over at once
// and writes. Node then works on the file again.
func TestNodeKilledHoldingLock(t *testing.T) {
	peer := requireNode(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	c, err := msalcache.New(path, msalcache.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}

	node := startHolder(t, "node hold", nodeCmd(peer, nil, "hold", path))
	content, err := os.ReadFile(path + ".lockfile")
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(node.Process.Pid); string(content) != want {
		t.Fatalf("Node's lock file holds %q, want its pid %s", content, want)
	}

	takeOverDeadHolder(t, c, path, node, "Node")

	// Node works on the file again and sees msalcache's entry.
	p := startProc(t, "node write", nodeCmd(peer, []string{"PEER_RETRY_NUMBER=50"}, "write", path, "n", "1"))
	if err := p.wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	d := nodeDump(t, peer, path)
	if strings.Join(d.Secrets, " ") != "go-secret-g-0 node-secret-n-0" && strings.Join(d.Secrets, " ") != "node-secret-n-0 go-secret-g-0" {
		t.Errorf("Node loads secrets %v, want msalcache's and its own", d.Secrets)
	}
}

// TestCrashedGoHolderDoesNotBlockNode: a msalcache process killed while it
// holds the lock leaves "<cache>.lockfile" with its dead pid.
// msal-node-extensions never recovers a stale lock file: alone, it retries
// until its retries run out (500 × 100 ms by default) and fails. The next
// msalcache process that writes takes the file over and deletes it on
// release, and the waiting Node process goes on at its next retry. Windows
// behaves the same: the lock file is not delete-on-close there, since a
// handle with delete access would make gofrs/flock's and portalocker's
// opens fail instead of wait.
func TestCrashedGoHolderDoesNotBlockNode(t *testing.T) {
	peer := requireNode(t)
	path := filepath.Join(testdir.New(t), "msal.cache")
	holder := startHolder(t, "go hold", goCmd("hold", envCache+"="+path))
	kill(t, holder)
	if _, err := os.Stat(path + ".lockfile"); err != nil {
		t.Fatalf("the killed msalcache process left no lock file: %v", err)
	}

	// Node alone: it gives up (here after 10 × 20 ms) and the file stays.
	alone := startProc(t, "node write, alone", nodeCmd(peer,
		[]string{"PEER_RETRY_NUMBER=10", "PEER_RETRY_DELAY=20"}, "write", path, "alone", "1"))
	err := alone.wait(90 * time.Second) // Node under Wine on a busy machine starts slowly
	if err == nil || !strings.Contains(err.Error(), "Not able to acquire lock") {
		t.Fatalf("Node with a stale lock file and no msalcache process: %v; want its lock error", err)
	}
	if _, err := os.Stat(path + ".lockfile"); err != nil {
		t.Fatalf("stale lock file: %v", err)
	}

	// Node with its default retries, then a msalcache process comes by.
	node := startProc(t, "node write", nodeCmd(peer, nil, "write", path, "n", "1"))
	time.Sleep(500 * time.Millisecond)
	if node.cmd.ProcessState != nil {
		t.Fatal("Node did not wait for the stale lock file")
	}
	c, err := msalcache.New(path, msalcache.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := goWrite(ctx, c, &jsonTarget{}, "g", 0); err != nil {
		t.Fatalf("msalcache did not recover the lock of its dead process: %v", err)
	}
	came := time.Now()
	// Node retries every 100 ms by default, and would give up only after
	// 50 s: going on within 20 s is going on because msalcache released.
	if err := node.wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(came) // about one retry delay (100 ms) on a quiet machine
	t.Logf("Node went on %v after a msalcache process cleared the stale lock", took.Round(time.Millisecond))
	d := nodeDump(t, peer, path)
	if len(d.Secrets) != 2 {
		t.Errorf("Node loads secrets %v, want msalcache's and its own", d.Secrets)
	}
}

// takeOverDeadHolder checks what msalcache does with a sister library's
// holder of the lock (who): while it lives, a write waits and times out
// naming its pid; once it is killed, its lock file stays and msalcache takes
// it over at once, writes, and deletes it on release.
func takeOverDeadHolder(t *testing.T, c *msalcache.Cache, path string, holder *exec.Cmd, who string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := goWrite(ctx, c, &jsonTarget{}, "g", 0)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), strconv.Itoa(holder.Process.Pid)) {
		t.Fatalf("write while a live %s process holds the lock: %v; want a timeout naming its pid", who, err)
	}

	kill(t, holder)
	if _, err := os.Stat(path + ".lockfile"); err != nil {
		t.Fatalf("the killed %s process left no lock file: %v", who, err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := goWrite(ctx, c, &jsonTarget{}, "g", 0); err != nil {
		t.Fatalf("msalcache did not recover the lock of a dead %s process: %v", who, err)
	}
	took := time.Since(start)
	if took > time.Second {
		t.Errorf("recovering the dead %s process's lock took %v, want well under a second", who, took)
	}
	if _, err := os.Stat(path + ".lockfile"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lock file after msalcache released it: %v, want none", err)
	}
	t.Logf("msalcache took over the lock file of the killed %s process in %v", who, took.Round(time.Millisecond))
}
