package interop

// Ping-pong: a sister library and msalcache writing right after each other,
// turn by turn, on file systems with fine and coarse timestamps. Linux
// only: that is where the test command installs MSAL Python and can mount
// ext2.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/msalcache/msalcache"
	"github.com/msalcache/msalcache/internal/coarsefs"
	"github.com/msalcache/msalcache/internal/testdir"
)

// pingTurns is how many turns each side takes.
const pingTurns = 120

// pingPeer is the sister library's side of a ping-pong run.
type pingPeer struct {
	name string
	cmd  func(path, turn string) *exec.Cmd // a writer of pingTurns entries that takes turns (PEER_TURN)
	key  func(i int) string                // the key of its entry i
}

func pythonPing(py pyPeer) pingPeer {
	return pingPeer{
		name: "MSAL Python",
		cmd: func(path, turn string) *exec.Cmd {
			return py.cmd([]string{"PEER_TURN=" + turn}, "write", path, "p", strconv.Itoa(pingTurns))
		},
		key: func(i int) string { return goKey("p", i) },
	}
}

func nodePing(peer string) pingPeer {
	return pingPeer{
		name: "msal-node",
		cmd: func(path, turn string) *exec.Cmd {
			return nodeCmd(peer, []string{"PEER_TURN=" + turn}, "write", path, "n", strconv.Itoa(pingTurns))
		},
		key: func(i int) string { return nodeKey("n", i) },
	}
}

// TestPythonPingPong: pingPong with MSAL Python in the test's temporary
// directory.
func TestPythonPingPong(t *testing.T) {
	pingPong(t, pythonPing(requirePython(t)), testdir.New(t))
}

// TestPingPongCoarse: pingPong with MSAL Python and with msal-node on file
// systems with coarse timestamps, in a mount namespace of the test's own:
// ext2 as mkfs.ext2 makes it, stamped from the kernel's coarse clock (a
// tick behind the wall clock, as ext4 before Linux 6.13), and ext2 with
// whole seconds.
func TestPingPongCoarse(t *testing.T) {
	peers := []pingPeer{pythonPing(requirePython(t)), nodePing(requireNode(t))}
	if coarsefs.InNamespace(t, "TestPingPongCoarse") {
		for _, g := range []coarsefs.Grain{coarsefs.Tick, coarsefs.Second} {
			for _, p := range peers {
				t.Run(p.name+"/"+g.String(), func(t *testing.T) { pingPong(t, p, coarsefs.Dir(t, g)) })
			}
		}
	}
}

// pingPong: a sister library and a msalcache Cache take turns on one file,
// each adding one access token per turn, pingTurns turns each, every turn
// right after the other's, as two apps of one user signing in one after the
// other do. MSAL Python reloads the file (under its lock) only if its mtime
// is later than the wall clock it read after its own last save, msal-node
// (before its lock) only if the mtime in milliseconds is later than the
// clock it read after its last load. msalcache writes within a millisecond
// or two of that reading, so its file must carry an mtime past it, or the
// peer skips the reload and its save drops msalcache's entry. Every entry
// of both writers must be in the final file, and MSAL Python must never
// have skipped the reload of a changed file.
func pingPong(t *testing.T, p pingPeer, dir string) {
	path := filepath.Join(dir, "msal.cache")
	turn := filepath.Join(dir, "turn")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := msalcache.New(path, msalcache.WithPlaintext())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() }) // before the file system is unmounted
	pr := startProc(t, p.name+" write", p.cmd(path, turn))
	target := &jsonTarget{}
	for i := range pingTurns {
		// At once: the sooner after the peer's save, the likelier one tick.
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Microsecond) {
			if _, err := os.Stat(fmt.Sprintf("%s.peer.%d", turn, i)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's write %d did not end within 60 s", p.name, i)
			}
		}
		if err := goWrite(ctx, c, target, "g", i); err != nil {
			t.Fatalf("msalcache write %d: %v", i, err)
		}
		if err := os.WriteFile(fmt.Sprintf("%s.other.%d", turn, i), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := pr.wait(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	rep, err := parseReport(pr)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) > 0 || rep.Writes != pingTurns || rep.GaveUp > 0 || rep.Overlaps > 0 {
		t.Fatalf("%s: %d writes, %d lock overlaps, %d gave up waiting for the lock, errors %v; want %d writes, all under the lock alone", p.name, rep.Writes, rep.Overlaps, rep.GaveUp, rep.Errors, pingTurns)
	}
	final := readMSAL(t, path).section("AccessToken")
	lostGo, lostPeer := 0, 0
	for i := range pingTurns {
		if _, ok := final[goKey("g", i)]; !ok {
			lostGo++
		}
		if _, ok := final[p.key(i)]; !ok {
			lostPeer++
		}
	}
	t.Logf("%d of %d msalcache entries and %d of %d %s entries lost; MSAL Python skipped the reload of a changed file %d times (%d a file msalcache stamped; its mtime up to %dµs before Python's clock reading after its last save)",
		lostGo, pingTurns, lostPeer, pingTurns, p.name, rep.ReloadsMissed, rep.ReloadsMissedStamped, rep.MissedByUs)
	if lostGo > 0 || lostPeer > 0 || rep.ReloadsMissed > 0 {
		t.Errorf("%d of %d msalcache entries and %d of %d %s entries lost; MSAL Python skipped the reload of a changed file %d times", lostGo, pingTurns, lostPeer, pingTurns, p.name, rep.ReloadsMissed)
	}
}
