package lock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Timings of the protocol. Variables so that tests can see them, not knobs.
const (
	// staleEmpty is the age after which a lock file without a pid is
	// taken to be left by a holder that crashed between creating it and
	// writing its pid.
	staleEmpty = time.Second
	// firstDelay and maxDelay bound the polling interval; each wait is
	// jittered and the interval doubles up to maxDelay.
	firstDelay = time.Millisecond
	maxDelay   = 25 * time.Millisecond
)

// A Lock is a cross-process lock on one lock file. See the package
// documentation for the protocol and what it guarantees.
//
// A Lock is safe for concurrent use: goroutines that call Lock on the same
// *Lock, or on different *Lock values for the same path, exclude each other.
// It is not reentrant: a goroutine that calls Lock again before unlocking
// waits for itself until the timeout.
//
// A Lock keeps the own lock file (see ownSuffix) open between Lock calls
// (not on Windows), so that taking it costs a few system calls; Close
// releases that descriptor.
type Lock struct {
	path    string // absolute, so that a change of directory changes nothing
	ownPath string // path + ownSuffix
	timeout time.Duration
	owner   []byte // what we write into the lock file

	// mu guards kept and closed. It is held only to move them, never
	// across I/O.
	mu     sync.Mutex
	kept   *ownFile // the own lock file, open and unlocked between Lock calls
	closed bool     // Close was called: do not keep the own lock file open
}

// ownSuffix names the own lock file, "<lock file>.msalcache": an empty
// file next to the lock file that only this package knows and that nobody
// deletes, whose OS lock every process of this package takes before the
// lock file and releases after it. It keeps this package's processes apart
// even when a sister library deletes the lock file under its holder (see
// the package documentation).
const ownSuffix = ".msalcache"

// New returns a Lock on the lock file at path (the cache uses
// "<cache path>.lockfile"). A relative path is taken relative to the
// current directory now, when New is called. New touches nothing on disk.
func New(path string, opts ...Option) *Lock {
	c := config{timeout: DefaultTimeout}
	for _, o := range opts {
		o.apply(&c)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
	}
	return &Lock{path: path, ownPath: path + ownSuffix, timeout: c.timeout, owner: ownerLine()}
}

// Path returns the absolute path of the lock file.
func (l *Lock) Path() string { return l.path }

// Close releases the descriptor of the own lock file that the Lock keeps open
// between Lock calls. A lock held when Close is called stays held until its
// unlock. Lock may still be called after Close; it then opens and closes
// that file each time. Close is idempotent.
func (l *Lock) Close() error {
	l.mu.Lock()
	o := l.kept
	l.kept, l.closed = nil, true
	l.mu.Unlock()
	if o == nil {
		return nil
	}
	if err := o.f.Close(); err != nil {
		return fmt.Errorf("lock: closing %s: %w", l.ownPath, err)
	}
	return nil
}

// Lock waits until it holds the lock, and returns the function that
// releases it. Call unlock exactly once; a second call does nothing and
// returns an error.
//
// Lock waits until ctx is done or, if ctx has no deadline, at most the
// timeout of WithTimeout (default DefaultTimeout). When the wait ends
// without the lock, the error wraps ctx.Err() (context.DeadlineExceeded on
// a timeout) and names the holder: its pid, and how long it has held the
// lock file. Other errors (the lock file cannot be created, the file system
// has no locks) are returned at once, without waiting.
func (l *Lock) Lock(ctx context.Context) (unlock func() error, err error) {
	if l.path == "" {
		return nil, errors.New("lock: empty lock file path")
	}
	start := time.Now()
	w := &waitContext{ctx: ctx, deadline: start.Add(l.timeout)}
	defer w.stop()

	unlockProcess, err := inProcess.lock(w.get, l.path)
	if err != nil {
		return nil, l.waitError(w.get(), start, holder{goroutine: true})
	}
	own, err := l.lockOwn(w, start)
	if err != nil {
		unlockProcess()
		return nil, err
	}
	h, err := l.acquire(w, start)
	if err != nil {
		l.unlockOwn(own)
		unlockProcess()
		return nil, err
	}
	var done atomic.Bool
	return func() error {
		if !done.CompareAndSwap(false, true) {
			return fmt.Errorf("lock: unlock of %s called more than once", l.path)
		}
		defer unlockProcess()
		err := h.release()
		if oerr := l.unlockOwn(own); oerr != nil {
			err = errors.Join(err, oerr)
		}
		return err
	}, nil
}

// ownFile is the own lock file, open.
type ownFile struct {
	f  *os.File
	fi fs.FileInfo // its identity, nil until first needed
}

// lockOwn takes the OS lock of the own lock file, which only processes of
// this package take, waiting like acquire. It uses the descriptor the Lock
// keeps, if any, and opens the file (creating it, 0600) otherwise. A kept
// descriptor whose file is no longer named by its path (someone deleted
// it) is dropped: its lock would exclude nobody.
func (l *Lock) lockOwn(w *waitContext, start time.Time) (*ownFile, error) {
	l.mu.Lock()
	o := l.kept
	l.kept = nil
	l.mu.Unlock()
	var (
		b        backoff
		reopened bool
	)
	defer b.stop()
	for {
		if o == nil {
			f, err := l.openOwn()
			switch {
			case err == nil:
				o = &ownFile{f: f}
			case !errors.Is(err, errOwnBusy):
				return nil, err
			}
		}
		ok := false
		if o != nil {
			var err error
			if ok, err = tryLockFile(o.f); err != nil {
				o.f.Close()
				return nil, fmt.Errorf("lock: cannot lock %s (does the file system support file locks?): %w", l.ownPath, err)
			}
		}
		if ok {
			if o.named(l.ownPath) {
				return o, nil
			}
			unlockFile(o.f)
			o.f.Close()
			o = nil
			if !reopened {
				reopened = true
				continue
			}
		}
		if ctx := w.get(); !b.wait(ctx) {
			l.keep(o)
			return nil, l.waitError(ctx, start, l.ownHolder())
		}
	}
}

// named reports whether path names the file o has open.
func (o *ownFile) named(path string) bool {
	if o.fi == nil {
		fi, err := o.f.Stat()
		if err != nil {
			return false
		}
		o.fi = fi
	}
	cur, err := os.Stat(path)
	return err == nil && os.SameFile(o.fi, cur)
}

// errOwnBusy says that the own lock file cannot be opened for a moment
// (Windows: a program opened it without sharing it): wait and try again.
var errOwnBusy = errors.New("lock: the own lock file is busy")

// openOwn opens the own lock file, creating it and its directories if
// missing. An error that goes away by itself wraps errOwnBusy; but not
// where the file does not exist: there it says that it cannot be created
// (access denied in a read-only directory).
func (l *Lock) openOwn() (*os.File, error) {
	f, err := openOwn(l.ownPath)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(l.ownPath), 0o700); err != nil {
			return nil, fmt.Errorf("lock: creating the directory of the lock file: %w", err)
		}
		f, err = openOwn(l.ownPath)
	}
	if err == nil {
		return f, nil
	}
	if isTransient(err) {
		if _, serr := os.Stat(l.ownPath); serr == nil {
			return nil, fmt.Errorf("%w: %w", errOwnBusy, err)
		}
	}
	return nil, fmt.Errorf("lock: cannot open the own lock file: %w", err)
}

// unlockOwn releases the OS lock of the own lock file and keeps the file open
// for the next Lock call.
func (l *Lock) unlockOwn(o *ownFile) error {
	if err := unlockFile(o.f); err != nil {
		o.f.Close() // closing drops the lock too
		return err
	}
	l.keep(o)
	return nil
}

// keep keeps the unlocked own lock file o open for the next Lock call,
// unless the Lock is closed or keeps one already; then it closes o.
func (l *Lock) keep(o *ownFile) {
	if o == nil {
		return
	}
	l.mu.Lock()
	if keepOwn && l.kept == nil && !l.closed {
		l.kept, o = o, nil
	}
	l.mu.Unlock()
	if o != nil {
		o.f.Close()
	}
}

// ownHolder describes the holder when another process of this package
// holds the own lock file: it holds the lock file too, or waits for it.
func (l *Lock) ownHolder() holder {
	h := holder{note: "another process of this package holds " + filepath.Base(l.ownPath)}
	f, err := openExisting(l.path)
	if err != nil {
		return h
	}
	defer f.Close()
	h.pid, h.since = parsePID(readHeld(f)), fileTime(f)
	return h
}

// A waitContext is the context Lock waits with: the caller's, bounded by
// the Lock's timeout if it has no deadline. The bound is made at the first
// wait, so that a lock taken at once costs no timer.
type waitContext struct {
	ctx      context.Context
	deadline time.Time
	cancel   context.CancelFunc
}

func (w *waitContext) get() context.Context {
	if w.cancel == nil {
		w.cancel = func() {}
		if _, ok := w.ctx.Deadline(); !ok {
			w.ctx, w.cancel = context.WithDeadline(w.ctx, w.deadline)
		}
	}
	return w.ctx
}

func (w *waitContext) stop() {
	if w.cancel != nil {
		w.cancel()
	}
}

// A newFile is a lock file that createExclusive created.
type newFile struct {
	f *os.File
	// ready says that f was OS-locked, with our pid in it, before it had
	// its name: nobody else can have held it, so the lock is ours, and fi
	// is its identity. Otherwise f still needs its OS lock and our pid.
	ready bool
	fi    fs.FileInfo
}

// held is a lock file this process holds: created or adopted, OS-locked,
// and named by path when it was taken.
type held struct {
	f    *os.File
	path string
	fi   fs.FileInfo // identity of the file, to check before deleting it
}

// release deletes the lock file while it still holds the OS lock, then
// unlocks and closes it.
func (h *held) release() error {
	var errs []error
	if err := deleteHeld(h.f, h.path, h.fi); err != nil {
		errs = append(errs, err)
	}
	if err := unlockFile(h.f); err != nil {
		errs = append(errs, err)
	}
	if err := h.f.Close(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("lock: releasing %s: %w", h.path, errors.Join(errs...))
	}
	return nil
}

// acquire runs the file protocol until it holds the lock file, ctx is done,
// or an error says waiting cannot help.
func (l *Lock) acquire(w *waitContext, start time.Time) (*held, error) {
	var (
		seen    holder   // the latest holder observed, for the timeout error
		created *os.File // a file we created but could not OS-lock yet
		madeDir bool
		refused int // creating failed without a file there
		b       backoff
	)
	defer b.stop()
	for {
		if created == nil {
			nf, err := createExclusive(l.path, l.owner)
			switch {
			case err == nil && nf.ready:
				return &held{f: nf.f, path: l.path, fi: nf.fi}, nil
			case err == nil:
				created = nf.f
			case errors.Is(err, fs.ErrNotExist) && !madeDir:
				madeDir = true
				if err := os.MkdirAll(filepath.Dir(l.path), 0o700); err != nil {
					return nil, fmt.Errorf("lock: creating the directory of the lock file: %w", err)
				}
				continue
			case errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrPermission) || isTransient(err):
				createErr := err
				h, again, err := l.inspect(&seen)
				if h != nil || err != nil {
					return h, err
				}
				if again && !errors.Is(createErr, fs.ErrExist) {
					// Creating failed, yet there is no file: either it was
					// being deleted (Windows) and is gone now, or we may not
					// create files there. Try again, but not forever.
					if refused++; refused >= 3 {
						return nil, fmt.Errorf("lock: cannot create the lock file (is its directory writable?): %w", createErr)
					}
				}
				if again && w.get().Err() == nil {
					continue
				}
			default:
				return nil, fmt.Errorf("lock: cannot create the lock file: %w", err)
			}
		}
		if created != nil {
			h, again, err := l.lockCreated(created, &seen)
			if h != nil || err != nil {
				return h, err
			}
			if again {
				created = nil
				if w.get().Err() == nil {
					continue
				}
			}
		}

		if ctx := w.get(); !b.wait(ctx) {
			if created != nil {
				// We created the file but another process holds its OS
				// lock, and may have adopted it: it is not ours to delete.
				created.Close()
			}
			return nil, l.waitError(ctx, start, seen)
		}
	}
}

// backoff paces a polling loop: each wait is jittered and twice the last,
// from firstDelay up to maxDelay.
type backoff struct {
	delay time.Duration
	timer *time.Timer
}

// wait sleeps for the next delay and reports true, or returns false as
// soon as ctx is done.
func (b *backoff) wait(ctx context.Context) bool {
	if b.delay == 0 {
		b.delay = firstDelay
	}
	d := b.delay/2 + rand.N(b.delay/2+1)
	b.delay = min(2*b.delay, maxDelay)
	if b.timer == nil {
		b.timer = time.NewTimer(d)
	} else {
		b.timer.Reset(d)
	}
	select {
	case <-ctx.Done():
		return false
	case <-b.timer.C:
		return true
	}
}

// stop releases the timer.
func (b *backoff) stop() {
	if b.timer != nil {
		b.timer.Stop()
	}
}

// lockCreated tries to OS-lock the file we created. Someone who opened it
// before we locked it (a waiter looking at it, or a holder that uses only the
// OS lock) makes us wait. Once locked, the path must still name the file:
// a foreign holder may have deleted it meanwhile. again asks to start over.
func (l *Lock) lockCreated(f *os.File, seen *holder) (h *held, again bool, err error) {
	ok, err := tryLockFile(f)
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("lock: cannot lock %s (does the file system support file locks?): %w", l.path, err)
	}
	if !ok {
		*seen = holder{}
		return nil, false, nil
	}
	fi, same := identity(f, l.path)
	if !same {
		unlockFile(f)
		f.Close()
		return nil, true, nil
	}
	return l.own(f, fi)
}

// inspect looks at a lock file that creating could not create, and adopts
// it if its holder is gone. It returns the lock; or again if there is no
// file (its holder just deleted it) and creating should be tried at once; or
// neither if the lock is held, recording the holder in seen.
func (l *Lock) inspect(seen *holder) (h *held, again bool, err error) {
	f, err := openExisting(l.path)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		return nil, true, nil
	case isTransient(err):
		// Windows: opened without sharing (.NET), or being deleted.
		*seen = holder{since: modTime(l.path), note: err.Error()}
		return nil, false, nil
	default:
		return nil, false, fmt.Errorf("lock: cannot open the existing lock file: %w", err)
	}

	ok, err := tryLockFile(f)
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("lock: cannot lock %s (does the file system support file locks?): %w", l.path, err)
	}
	if !ok {
		// A live holder with an OS lock.
		*seen = holder{pid: parsePID(readHeld(f)), since: fileTime(f)}
		f.Close()
		return nil, false, nil
	}
	buf := make([]byte, 512)
	n, _ := f.ReadAt(buf, 0)
	pid := parsePID(buf[:n])
	mtime := fileTime(f)
	switch {
	case pid != 0 && pid != os.Getpid() && processAlive(pid):
		// A live process that holds no OS lock: msal-node-extensions and
		// MSAL Python without portalocker lock by O_EXCL alone, across
		// network calls. Never take over from a live pid.
		*seen = holder{pid: pid, since: mtime, noOSLock: true}
	case pid != 0 || time.Since(mtime) >= staleEmpty:
		// The holder is dead (or is this process, which does not hold the
		// lock: we own the in-process mutex), or crashed before writing
		// its pid. Adopt the file under its OS lock if the path still
		// names it. Checked only now: an O_EXCL holder may have deleted
		// its file (released) and exited while we looked at it.
		fi, same := identity(f, l.path)
		if !same {
			unlockFile(f)
			f.Close()
			return nil, true, nil
		}
		if err := f.Truncate(0); err != nil {
			unlockFile(f)
			f.Close()
			return nil, false, fmt.Errorf("lock: taking over the stale lock file: %w", err)
		}
		return l.own(f, fi)
	default:
		// Just created; its creator has not written its pid yet.
		*seen = holder{since: mtime, note: "its pid not written yet"}
	}
	unlockFile(f)
	f.Close()
	return nil, false, nil
}

// own writes our pid into the OS-locked file f and returns it as held.
func (l *Lock) own(f *os.File, fi fs.FileInfo) (*held, bool, error) {
	if _, err := f.WriteAt(l.owner, 0); err != nil {
		// Still a valid lock without the pid; others would wait for its
		// OS lock. But a file system that cannot take 100 bytes is broken.
		unlockFile(f)
		f.Close()
		return nil, false, fmt.Errorf("lock: writing the pid into %s: %w", l.path, err)
	}
	return &held{f: f, path: l.path, fi: fi}, false, nil
}

// identity reports whether path still names the open file f, and f's
// FileInfo for a later check.
func identity(f *os.File, path string) (fs.FileInfo, bool) {
	fi, err := f.Stat()
	if err != nil {
		return nil, false
	}
	cur, err := os.Stat(path)
	if err != nil {
		return nil, false
	}
	return fi, os.SameFile(fi, cur)
}

// readHeld reads the start of a lock file whose OS lock another process holds.
func readHeld(f *os.File) []byte {
	buf := make([]byte, 512)
	n, err := readHeldAt(f, buf)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	return buf[:n]
}

func fileTime(f *os.File) time.Time {
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// holder describes who held the lock when we last looked.
type holder struct {
	goroutine bool      // another goroutine of this process
	pid       int       // 0 if unknown
	since     time.Time // mtime of the lock file, zero if unknown
	noOSLock  bool      // a live pid holding the file without an OS lock
	note      string    // more about the holder, if any
}

func (h holder) describe(path string) string {
	if h.goroutine {
		return "held by another goroutine of this process"
	}
	who := "held by another process"
	if h.pid != 0 {
		who = fmt.Sprintf("held by pid %d", h.pid)
	}
	if !h.since.IsZero() {
		who += fmt.Sprintf(" (for %v)", round(time.Since(h.since)))
	}
	if h.noOSLock {
		who += fmt.Sprintf(", which holds no OS lock (an O_EXCL lock of another MSAL library); if pid %d is not an app using this cache, delete %s", h.pid, path)
	}
	if h.note != "" {
		who += " (" + h.note + ")"
	}
	return who
}

func (l *Lock) waitError(ctx context.Context, start time.Time, h holder) error {
	verb := "timed out"
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		verb = "gave up"
	}
	return fmt.Errorf("lock: %s after %v waiting for %s, %s: %w",
		verb, round(time.Since(start)), l.path, h.describe(l.path), ctx.Err())
}

func round(d time.Duration) time.Duration {
	switch {
	case d < 0:
		return 0
	case d < time.Second:
		return d.Round(time.Millisecond)
	default:
		return d.Round(100 * time.Millisecond)
	}
}
