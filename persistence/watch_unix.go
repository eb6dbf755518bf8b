//go:build unix

package persistence

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// watcher keeps the cache file and its directory open so that Stat can
// fstat(2) them instead of looking the path up: on every silent token call,
// two fstats cost less than one stat of the path (see README, Performance).
//
// The kept file is trusted to be the one at the path only while nothing
// about it or its directory has changed since it was found there:
//   - its link count is 1 (a removal or a replacement by rename unlinks it;
//     a file with other hard links cannot tell, so then the path is stat'ed);
//   - its status-change time (ctime) is the one it had when found: a rename
//     away, a write in place, a new link all set it;
//   - its directory's ctime is the one it had: every entry created, renamed
//     or removed in it (a new file at the path, the file moved away) sets
//     it, and so does a rename of the directory itself (a directory swap);
//     a removed directory has no links;
//   - it was found at the path less than recheckEvery ago, which bounds
//     what no timestamp shows: an ancestor directory swapped, or a file
//     system that does not set ctime on rename.
//
// A timestamp tells changes apart only if they fall in different ticks of
// the file system's clock, so the file is kept only once its ctime and its
// directory's are older than a tick (see settled); until then Stat stats
// the path.
//
// Concurrency: no lock is held across any system call. The kept state is
// an immutable *kept behind an atomic pointer, replaced as a whole; its
// descriptors are reference counted, so a Close or a replacement never
// waits for a Stat in progress (on a hung network mount an fstat can block
// for minutes) and a descriptor is never closed under one.
type watcher struct {
	kept   atomic.Pointer[kept]
	closed atomic.Bool
	// pathIO, when set, runs before each stat or open of the path or its
	// directory ("stat", "open dir", "open"). Tests block in it to stand
	// for a hung mount.
	pathIO func(op string)
}

// recheckEvery bounds how long a kept file is trusted without a look at
// the path.
const recheckEvery = time.Second

// kept is a file found at the path and its directory, both open, with the
// ctimes they had then.
type kept struct {
	file, dir       *os.File
	fd, dirFD       int   // their descriptors
	ctime, dirCtime int64 // their ctimes, in nanoseconds, when found
	found           time.Time
	refs            atomic.Int64 // 1 while installed, +1 per Stat using it; closed at 0
}

func (w *watcher) stat(path string) (Version, error) {
	if k := w.kept.Load(); k != nil {
		if v, ok := k.current(); ok {
			return v, nil
		}
		w.drop(k)
	}
	return w.find(path)
}

// current returns the kept file's Version if it is still trusted to be the
// file at the path (see watcher).
func (k *kept) current() (Version, bool) {
	if time.Since(k.found) >= recheckEvery || !k.acquire() {
		return Version{}, false
	}
	defer k.release()
	var st, dst unix.Stat_t
	if fstat(k.fd, &st) != nil || st.Nlink != 1 || st.Ctim.Nano() != k.ctime {
		return Version{}, false
	}
	if fstat(k.dirFD, &dst) != nil || dst.Nlink == 0 || dst.Ctim.Nano() != k.dirCtime {
		return Version{}, false
	}
	return versionOfStat(&st), true
}

// find stats the path and, if the file there can be trusted later (see
// watcher), keeps it and its directory open for the next calls.
func (w *watcher) find(path string) (Version, error) {
	now := time.Now() // before every look: what changes later has a later ctime
	w.hook("stat")
	var st unix.Stat_t
	v, err := statInto(path, &st)
	if err != nil || !v.exists || w.closed.Load() || st.Mode&unix.S_IFMT != unix.S_IFREG || !settled(st.Ctim.Nano(), now) {
		return v, err
	}
	if k := w.open(path, &st, now); k != nil {
		w.install(k)
	}
	return v, nil
}

// open opens the directory and the file at path and returns them as a kept,
// if the file is still the one want describes (with the same ctime: nothing
// changed in between) and has one link, and the directory's ctime is
// settled too. Otherwise it closes what it opened and returns nil.
func (w *watcher) open(path string, want *unix.Stat_t, now time.Time) *kept {
	w.hook("open dir")
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil
	}
	var dst unix.Stat_t
	if fstat(int(dir.Fd()), &dst) != nil || !settled(dst.Ctim.Nano(), now) {
		dir.Close()
		return nil
	}
	w.hook("open")
	// O_NONBLOCK: should a FIFO have replaced the file since the stat,
	// opening it does not wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		dir.Close()
		return nil
	}
	var st unix.Stat_t
	if fstat(int(f.Fd()), &st) != nil || st.Nlink != 1 || st.Ctim != want.Ctim || versionOfStat(&st) != versionOfStat(want) {
		f.Close()
		dir.Close()
		return nil
	}
	k := &kept{file: f, dir: dir, fd: int(f.Fd()), dirFD: int(dir.Fd()),
		ctime: st.Ctim.Nano(), dirCtime: dst.Ctim.Nano(), found: now}
	k.refs.Store(1)
	return k
}

// install makes k the kept file, replacing the one there was (closed once
// no Stat uses it). After close, nothing stays installed.
func (w *watcher) install(k *kept) {
	if old := w.kept.Swap(k); old != nil {
		old.release()
	}
	// close sets closed before it swaps: if it ran after this Swap it
	// released k; if before, closed is seen here.
	if w.closed.Load() {
		w.drop(k)
	}
}

// drop uninstalls k if it is still installed.
func (w *watcher) drop(k *kept) {
	if w.kept.CompareAndSwap(k, nil) {
		k.release()
	}
}

// close closes the kept file; later stats stat the path. A Stat in progress
// keeps its descriptors until it returns; close does not wait for it.
func (w *watcher) close() error {
	w.closed.Store(true)
	if k := w.kept.Swap(nil); k != nil {
		return k.release()
	}
	return nil
}

func (w *watcher) hook(op string) {
	if w.pathIO != nil {
		w.pathIO(op)
	}
}

// acquire takes a reference for a Stat; false if k is already closed.
func (k *kept) acquire() bool {
	for {
		n := k.refs.Load()
		if n == 0 {
			return false
		}
		if k.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release drops a reference and closes the descriptors with the last one.
func (k *kept) release() error {
	if k.refs.Add(-1) != 0 {
		return nil
	}
	err := k.file.Close()
	if derr := k.dir.Close(); err == nil {
		err = derr
	}
	return err
}

// settleTick is the longest tick of a file system clock with sub-second
// timestamps that this package expects (Linux updates timestamps once per
// scheduler tick, at most 10 ms), with room to spare. A file system that
// keeps whole seconds gets coarseTick.
const (
	settleTick = 100 * time.Millisecond
	coarseTick = 2 * time.Second
)

// settled reports whether a ctime read after now is older than one tick of
// the file system's clock: then any later change gets another ctime.
func settled(ctime int64, now time.Time) bool {
	tick := settleTick
	if ctime%int64(time.Second) == 0 {
		tick = coarseTick
	}
	return ctime < now.Add(-tick).UnixNano()
}

func fstat(fd int, st *unix.Stat_t) error {
	err := unix.Fstat(fd, st)
	for err == unix.EINTR {
		err = unix.Fstat(fd, st)
	}
	return err
}
