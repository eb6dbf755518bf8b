package msalcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/lock"
	"github.com/msalcache/msalcache/persistence"
)

// Cache is a persistent MSAL token cache in one file, shared safely by every
// process that opens the same path. Pass it to MSAL Go with
// public.WithCache(c), and Close it when done.
//
// A Cache is safe for concurrent use by multiple goroutines and by several
// MSAL clients at once. Processes coordinate through a lock file next to the
// cache file ("<path>.lockfile"). No call holds an in-process mutex while it
// waits for that lock or for the file, so a Replace never waits behind
// another goroutine's Export.
type Cache struct {
	file    *persistence.File
	lock    *lock.Lock
	log     *slog.Logger
	timeout time.Duration
	closed  atomic.Bool

	// handing is held while a state is handed to an MSAL cache object
	// (Unmarshal) and recorded as its view, so that the view recorded is
	// the state the object holds. It is never held across file I/O or a
	// lock wait.
	handing sync.Mutex

	// mu guards the fields below. It is held only to read or move them.
	mu    sync.Mutex
	state fileState
	// clears counts the Clear calls: a view from before the last Clear
	// holds accounts that were signed out.
	clears uint64
	views  views
	// marshaled maps the entries of MSAL's last Marshal to their canonical
	// form: most entries repeat from one Export to the next.
	marshaled map[string]string

	// beforeRecord is a test seam: when set (before the Cache is used), a
	// Replace that read the file runs it between its read and its record.
	beforeRecord func()
}

// fileState is what a Cache knows of the file: its Version and content as
// last read or written.
type fileState struct {
	version persistence.Version
	// raw is the plaintext read or written; nil if the file did not decode.
	raw []byte
	// snap is raw parsed (msaljson.Empty for an unusable file); nil until
	// the file is first read.
	snap *msaljson.Snapshot
	// corrupt is set while snap stands for a file that cannot be used,
	// which is copied aside before it is first overwritten.
	corrupt bool
	// upgrade is set while the file is readable but in another format than
	// the configured one (say, plaintext left by WithPlaintextFallback): the
	// next Export rewrites it in the configured format.
	upgrade bool
	// flux runs while the file, which held this state's cache, is found
	// empty or not decoding (see readLocked).
	flux fluxClock
}

var _ cache.ExportReplace = (*Cache)(nil)

// New returns a Cache stored at path. It settles the protection first:
// unless WithPlaintext is given it checks that the platform protection can
// be used now (DPAPI on Windows; the Keychain on macOS; a Secret Service on
// the session bus with an unlocked keyring on Linux), and fails with an
// error wrapping persistence.ErrUnavailable if not, unless
// WithPlaintextFallback was given. New never creates the cache file.
func New(path string, opts ...Option) (*Cache, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	switch {
	case path == "":
		return nil, errors.New("msalcache: empty cache path")
	case cfg.lockTimeout <= 0:
		return nil, fmt.Errorf("msalcache: lock timeout %v is not positive", cfg.lockTimeout)
	case cfg.service == "" || cfg.account == "":
		return nil, errors.New("msalcache: WithKeyringItem needs a service and an account")
	case cfg.logger == nil:
		return nil, errors.New("msalcache: WithLogger(nil)")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("msalcache: cache path: %w", err)
	}
	prot, err := protector(abs, &cfg)
	if err != nil {
		return nil, err
	}
	file, err := persistence.NewFile(abs, prot)
	if err != nil {
		return nil, fmt.Errorf("msalcache: %w", err)
	}
	return &Cache{
		file:    file,
		lock:    lock.New(abs+".lockfile", lock.WithTimeout(cfg.lockTimeout)),
		log:     cfg.logger,
		timeout: cfg.lockTimeout,
	}, nil
}

// protector settles the protection New promises.
func protector(path string, cfg *config) (persistence.Protector, error) {
	if cfg.plaintext {
		return persistence.Plaintext(), nil
	}
	p, err := platformProtector(cfg)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), min(cfg.lockTimeout, 10*time.Second))
		err = p.Check(ctx)
		cancel()
	}
	if err == nil {
		return p, nil
	}
	if cfg.plaintextFallback && errors.Is(err, persistence.ErrUnavailable) {
		cfg.logger.Warn("msalcache: platform protection unavailable; the token cache is stored unencrypted (WithPlaintextFallback)",
			"path", path, "reason", err.Error())
		return persistence.Plaintext(), nil
	}
	return nil, advise(fmt.Errorf("msalcache: %w", err))
}

// Protection names the protection in use: "dpapi", "keychain",
// "secret-service" or "plaintext".
func (c *Cache) Protection() string { return c.file.Protection().Name() }

// Path is the cache file's absolute path.
func (c *Cache) Path() string { return c.file.Path() }

// Replace loads the cache into MSAL. MSAL Go calls it before every cache
// read, so on every silent token request: when the file has not changed
// since this Cache last read or wrote it and u already holds that state, it
// costs one stat and nothing else. Otherwise it reads the file without the
// lock (writes are atomic renames) and unmarshals it into u. A file that
// is empty or does not decode may be another library's rewrite in place,
// caught in the middle: it is read again under the lock.
func (c *Cache) Replace(ctx context.Context, u cache.Unmarshaler, _ cache.ReplaceHints) error {
	if c.closed.Load() {
		return closedError("loading")
	}
	v, err := c.file.Stat()
	if err != nil {
		return fmt.Errorf("msalcache: loading the token cache: %w", err)
	}
	id := identity(u)
	c.mu.Lock()
	snap, version := c.state.snap, c.state.version // not the whole state: this is the hot path
	held := snap != nil && v == version && c.holds(id, snap)
	c.mu.Unlock()
	if held {
		return nil // the hot path: one stat
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if snap == nil || v != version {
		if err := c.load(ctx); err != nil {
			return fmt.Errorf("msalcache: loading the token cache: %w", err)
		}
	}
	return c.hand(u, id)
}

// holds reports whether the object at id holds snap; c.mu is held.
func (c *Cache) holds(id unsafe.Pointer, snap *msaljson.Snapshot) bool {
	v, ok := c.views.get(id)
	return ok && v.snap == snap && v.clears == c.clears
}

// hand gives u the current state, unless it holds it already, and records
// that it holds it.
func (c *Cache) hand(u cache.Unmarshaler, id unsafe.Pointer) error {
	c.handing.Lock()
	defer c.handing.Unlock()
	c.mu.Lock()
	snap, clears := c.state.snap, c.clears
	v, ok := c.views.get(id)
	c.mu.Unlock()
	if ok && v.clears == clears && (v.snap == snap || v.snap.Equal(snap)) {
		c.setView(id, snap, clears)
		return nil
	}
	held, dropped, err := unmarshal(u, snap)
	if err != nil {
		return fmt.Errorf("msalcache: loading the token cache: %w", err)
	}
	if held != snap {
		// Entries MSAL cannot take are left out (salvage.go); the file
		// is copied aside before it is next written.
		c.log.Warn("msalcache: MSAL cannot load some entries of the token cache file; they are left out (their users sign in again). A copy of the file is kept before it is next written.",
			"path", c.file.Path(), "copy", c.file.Path()+".corrupt-<time>", "dropped", describeDropped(dropped))
		c.rejected(snap, held)
		snap = held
	}
	c.setView(id, snap, clears)
	return nil
}

// rejected records that MSAL cannot load all of snap: while the file holds
// it, it stands for held (the entries MSAL takes), and the file is kept
// aside before it is overwritten.
func (c *Cache) rejected(snap, held *msaljson.Snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.snap == snap {
		c.state.snap, c.state.corrupt, c.state.upgrade = held, true, false
	}
}

// setView records that the object at id holds snap.
func (c *Cache) setView(id unsafe.Pointer, snap *msaljson.Snapshot, clears uint64) {
	c.mu.Lock()
	c.views.set(id, snap, clears)
	c.mu.Unlock()
}

// Export saves MSAL's cache. MSAL Go calls it after every change, and also
// when nothing changed: then nothing is locked, read or written. Otherwise,
// under the cross-process lock, it reads the file as it is now and merges
// its changes into it, entry by entry: an entry m changed, added or removed
// since it last synced wins, every other entry is the file's. It writes the
// result atomically if it differs from the file. An object this Cache has
// no view of (one that never synced, or that is not a pointer) changes no
// entry the file holds; it only adds those the file lacks. If it holds an
// entry the file holds with another value, the Cache cannot tell a change
// from a stale copy: the file's value stays, the entries the file lacked
// are written all the same, and Export returns an error that says how many
// entries, in which sections, were not written (never nil while the
// caller's value of an entry is not in the file). An object that synced
// before a Clear of this Cache changes nothing: Clear signed its accounts
// out.
func (c *Cache) Export(ctx context.Context, m cache.Marshaler, _ cache.ExportHints) error {
	if c.closed.Load() {
		return closedError("saving")
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	data, err := m.Marshal()
	if err != nil {
		// Its message may quote cache content: not passed on.
		return errors.New("msalcache: saving the token cache: MSAL could not marshal it")
	}
	id := identity(m)
	c.mu.Lock()
	base, known := c.views.get(id)
	memo, upgrade := c.marshaled, c.state.upgrade
	c.mu.Unlock()
	ours, err := msaljson.Parse(data, memo)
	if err != nil {
		return fmt.Errorf("msalcache: saving the token cache: MSAL's JSON: %s", jsonProblem(err))
	}
	c.mu.Lock()
	c.marshaled = ours.Seen
	c.mu.Unlock()
	if known && ours.Equal(base.snap) && !upgrade {
		return nil // nothing changed since m was last synced
	}
	err = c.withLock(ctx, func() error {
		// Merge against what the file holds now, read under the lock:
		// its Version can stay the same across a rewrite in place.
		r, err := c.readLocked(ctx)
		if err != nil {
			return err
		}
		st := c.settle(r)
		c.mu.Lock()
		clears := c.clears
		c.mu.Unlock()
		var merged *msaljson.Snapshot
		var left unwritten
		switch {
		case known && base.clears == clears:
			merged = msaljson.Merge(base.snap, ours, st.snap)
		case known:
			merged = st.snap // m synced before a Clear: nothing it held comes back
		default:
			merged = msaljson.Merge(fileWins(ours, st.snap), ours, st.snap)
			left = differing(ours, st.snap)
		}
		if !merged.Equal(st.snap) || st.upgrade {
			if st, err = c.write(ctx, st, merged); err != nil {
				return fmt.Errorf("%s: %w", c.file.Path(), err)
			}
		}
		if err := left.error(); err != nil {
			return err // no view: m holds what was not written
		}
		if merged.Equal(ours) {
			c.setView(id, st.snap, clears)
		} else {
			c.setView(id, ours, clears) // m lacks what the file holds: the next Replace hands it over
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("msalcache: saving the token cache: %w", err)
	}
	return nil
}

// Clear removes the cache file under the lock: every account is signed out,
// in every process that shares the file. The keyring key stays. An MSAL
// client of this Cache that read the cache before the Clear and exports
// after it brings none of it back; a Replace that read the file before the
// Clear removed it and records it after hands over the cleared cache
// instead (settle). A token request in flight during the Clear writes what
// it gets when it returns, as a sign-in would.
func (c *Cache) Clear(ctx context.Context) error {
	if c.closed.Load() {
		return closedError("clearing")
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	err := c.withLock(ctx, func() error {
		if err := c.file.Remove(); err != nil {
			return err
		}
		c.mu.Lock()
		c.state = fileState{snap: msaljson.Empty}
		c.clears++
		c.mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("msalcache: clearing the token cache: %w", err)
	}
	return nil
}

// Verify checks that the cache's protection works end to end: it writes,
// reads and deletes a probe through the same protection, and checks that
// the cache directory is writable. It never touches the cache file.
func (c *Cache) Verify(ctx context.Context) error {
	if c.closed.Load() {
		return closedError("verify")
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if err := c.file.Verify(ctx); err != nil {
		return fmt.Errorf("msalcache: verify: %w", err)
	}
	return nil
}

// Close releases what the Cache holds: the descriptors of the cache file
// and of the lock's own file (see package lock), which it keeps open to
// make Replace and the lock cheap. Close is idempotent; every other call
// after it returns an error matching fs.ErrClosed. An MSAL client that
// uses the Cache must not be used after Close.
func (c *Cache) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	err := errors.Join(c.file.Close(), c.lock.Close())
	if err != nil {
		return fmt.Errorf("msalcache: closing the token cache: %w", err)
	}
	return nil
}

func closedError(what string) error {
	return fmt.Errorf("msalcache: %s the token cache: the Cache is closed: %w", what, fs.ErrClosed)
}

// reading is one read of the file.
type reading struct {
	data    []byte // the plaintext; nil if the file is missing or does not decode
	version persistence.Version
	format  persistence.Format
	corrupt error // why the file does not decode, if it does not
	// clears is the Clear generation the read began in: a reading from
	// before a Clear holds accounts that were signed out.
	clears uint64
}

// inFlux reports whether a read without the lock may have caught another
// library rewriting the file in place (truncate, then write): an empty
// file, or one that does not decode.
func (r reading) inFlux() bool {
	return r.corrupt != nil || (r.version.Exists() && len(r.data) == 0)
}

// read reads the file. Only errors other than a file that does not decode
// are errors. A plaintext file that holds the plaintext this Cache last
// read or wrote is not decoded again.
func (c *Cache) read(ctx context.Context) (reading, error) {
	c.mu.Lock()
	known, clears := c.state.raw, c.clears
	c.mu.Unlock()
	raw, v, err := c.file.ReadRaw(ctx)
	if errors.Is(err, persistence.ErrCorrupt) {
		return reading{version: v, corrupt: err, clears: clears}, nil // too large to read
	}
	if err != nil {
		return reading{}, err
	}
	if !v.Exists() {
		return reading{clears: clears}, nil
	}
	if len(raw) > 0 && bytes.Equal(raw, known) {
		return reading{data: raw, version: v, format: persistence.DetectFormat(raw), clears: clears}, nil
	}
	data, format, err := c.file.Decode(ctx, raw)
	switch {
	case errors.Is(err, persistence.ErrCorrupt):
		return reading{version: v, format: format, corrupt: err, clears: clears}, nil
	case err != nil:
		return reading{}, err
	}
	return reading{data: data, version: v, format: format, clears: clears}, nil
}

// fluxWait bounds how long a Cache waits for a file that held a cache
// and is now empty or does not decode to hold one again: a writer that does
// not take the lock (MSAL Python goes ahead after its own timeout) may be
// rewriting it in place. Merging against the file in that moment would
// delete every entry this process did not change. The wait is counted from
// the first time the Cache found the file so (see fluxClock), across calls:
// calls whose deadlines are shorter than fluxWait each wait a share of it,
// and once fluxWait has passed the file is taken for corrupt, whatever the
// deadlines.
const fluxWait = 2 * time.Second

// fluxClock says since when the file, which held a cache, has been found
// empty or not decoding. It belongs to the state: recording any state
// stops it.
type fluxClock struct {
	since time.Time // the first time it was found so; zero: not running
	seen  time.Time // the last time
}

// observe records that the file is found in flux at now, and returns since
// when. A clock whose last observation is older than fluxWait starts again:
// the file may have held a cache in between, unread.
func (fc *fluxClock) observe(now time.Time) (since time.Time) {
	if fc.since.IsZero() || now.Sub(fc.seen) > fluxWait {
		fc.since = now
	}
	fc.seen = now
	return fc.since
}

// fluxPending is the error of a read under the lock whose call ran out of
// its share of time while the file was in flux, before fluxWait had passed
// since the Cache first found it so. The file is not yet taken for corrupt:
// a later call waits for the rest.
type fluxPending struct {
	path string
	age  time.Duration // how long the file has been in flux
	err  error         // context.DeadlineExceeded
}

func (e *fluxPending) Error() string {
	return fmt.Sprintf("%s has not held a cache for %v (a program that does not hold the lock may be rewriting it; it is taken for corrupt after %v, and this call's deadline came first): %v",
		e.path, e.age.Round(time.Millisecond), fluxWait, e.err)
}

func (e *fluxPending) Unwrap() error { return e.err }

// readLocked is read for a caller that holds the lock. A file caught in
// flux that was last seen holding a cache is read again until it holds one,
// until fluxWait has passed since the Cache first found it in flux (then it
// is taken as it is), and for at most half of what is left of ctx: the rest
// is the caller's. When ctx's share ends first, the error is a
// *fluxPending: nothing is merged against half a file, and the next call
// goes on waiting where this one stopped. A file that was empty before
// (Node's new file) is not waited for.
func (c *Cache) readLocked(ctx context.Context) (reading, error) {
	r, err := c.read(ctx)
	if err != nil || !r.inFlux() {
		return r, err
	}
	now := time.Now()
	var since time.Time
	c.mu.Lock()
	had := len(c.state.raw) > 0 && !c.state.corrupt
	if had {
		since = c.state.flux.observe(now)
	}
	c.mu.Unlock()
	if !had {
		return r, nil
	}
	if since.Equal(now) {
		c.log.Warn("msalcache: the token cache file is being rewritten by a program that does not hold the lock; waiting for it",
			"path", c.file.Path(), "lock", c.lock.Path())
	}
	end := since.Add(fluxWait)
	stop := end
	if d, ok := ctx.Deadline(); ok && now.Add(d.Sub(now)/2).Before(stop) {
		stop = now.Add(d.Sub(now) / 2)
	}
	for delay := time.Millisecond; time.Now().Before(stop); delay = min(2*delay, 50*time.Millisecond) {
		if err := sleep(ctx, min(delay, time.Until(stop))); err != nil {
			return reading{}, fmt.Errorf("waiting for %s to be rewritten by a program that does not hold the lock: %w", c.file.Path(), err)
		}
		if r, err = c.read(ctx); err != nil || !r.inFlux() {
			return r, err
		}
		c.mu.Lock()
		c.state.flux.observe(time.Now())
		c.mu.Unlock()
	}
	if now := time.Now(); now.Before(end) {
		return reading{}, &fluxPending{path: c.file.Path(), age: now.Sub(since), err: context.DeadlineExceeded}
	}
	return r, nil
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// load reads the file into the state, without the lock. A file caught in
// flux is read again under the lock (the other libraries write in place
// while they hold it) before it is taken for an empty cache or called
// corrupt; Node's empty new file is then still empty, and loads as such.
// A call whose share of the wait for a file in flux ends first leaves the
// state as it was: Replace hands over the cache the file held a moment
// ago, and a later call goes on waiting.
func (c *Cache) load(ctx context.Context) error {
	r, err := c.read(ctx)
	if err == nil && r.inFlux() {
		err = c.withLock(ctx, func() error {
			r, err = c.readLocked(ctx)
			return err
		})
	}
	if c.beforeRecord != nil {
		c.beforeRecord()
	}
	var pending *fluxPending
	if errors.As(err, &pending) {
		c.log.Debug("msalcache: the token cache file is still being rewritten; serving what it held before", "path", c.file.Path())
		return nil
	}
	if err != nil {
		return err
	}
	c.settle(r)
	return nil
}

// settle makes r the state and returns it. Content equal to the state's
// is not parsed again. A reading begun before a Clear that has since
// returned (a Replace that read the file without the lock just before the
// Clear removed it) is not recorded, and the state after the Clear is
// returned: Clear is final.
func (c *Cache) settle(r reading) fileState {
	c.mu.Lock()
	prev := c.state
	c.mu.Unlock()
	st := fileState{version: r.version, raw: r.data}
	switch {
	case r.corrupt != nil:
		c.log.Warn("msalcache: the token cache file cannot be read; starting with an empty cache (users sign in again). A copy is kept before it is overwritten.",
			"path", c.file.Path(), "copy", c.file.Path()+".corrupt-<time>", "reason", r.corrupt.Error())
		st.snap, st.corrupt = msaljson.Empty, true
	case prev.snap != nil && prev.raw != nil && bytes.Equal(r.data, prev.raw):
		st.snap, st.corrupt = prev.snap, prev.corrupt
	default:
		var memo map[string]string
		if prev.snap != nil {
			memo = prev.snap.Seen
		}
		snap, err := msaljson.Parse(r.data, memo)
		if err != nil {
			c.log.Warn("msalcache: the token cache file cannot be read; starting with an empty cache (users sign in again). A copy is kept before it is overwritten.",
				"path", c.file.Path(), "copy", c.file.Path()+".corrupt-<time>",
				"reason", fmt.Errorf("%w: %s: %s", persistence.ErrCorrupt, c.file.Path(), jsonProblem(err)).Error())
			st.raw, st.snap, st.corrupt = nil, msaljson.Empty, true
		} else {
			st.snap = snap
		}
	}
	if !st.corrupt {
		st.upgrade = r.format != persistence.FormatNone && r.format != c.file.Format()
		if st.upgrade && !prev.upgrade {
			c.log.Info("msalcache: the token cache file is in another format; the next write converts it",
				"path", c.file.Path(), "found", string(r.format), "configured", string(c.file.Format()))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.clears != r.clears {
		return c.state // read before a Clear: what it read was signed out
	}
	c.state = st
	return st
}

// install makes st the state.
func (c *Cache) install(st fileState) {
	c.mu.Lock()
	c.state = st
	c.mu.Unlock()
}

// write replaces the file with s and returns the new state; the lock is
// held.
func (c *Cache) write(ctx context.Context, st fileState, s *msaljson.Snapshot) (fileState, error) {
	var v persistence.Version
	var err error
	if st.corrupt {
		// The unreadable file is kept aside as it is replaced, at no cost
		// in disk space (persistence.File.Overwrite).
		var copyPath string
		if copyPath, v, err = c.file.Overwrite(ctx, s.Raw); err == nil && copyPath != "" {
			c.log.Warn("msalcache: kept a copy of the unreadable token cache file", "copy", copyPath)
		}
	} else {
		v, err = c.file.Write(ctx, s.Raw)
	}
	if err != nil {
		return st, err
	}
	st = fileState{version: v, raw: s.Raw, snap: s}
	c.install(st)
	return st, nil
}

// bound gives ctx the configured deadline if it has none.
func (c *Cache) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// withLock runs fn holding the cross-process lock. A lock that cannot be
// released cleanly (another program deleted the lock file while we held
// it, as MSAL Python does after its own timeout) is logged, not returned:
// what fn did is done, and a write is complete.
func (c *Cache) withLock(ctx context.Context, fn func() error) error {
	unlock, err := c.lock.Lock(ctx)
	if err != nil {
		return err
	}
	err = fn()
	if uerr := unlock(); uerr != nil {
		c.log.Warn("msalcache: the cache lock was not released cleanly; the work done under it stands",
			"lock", c.lock.Path(), "reason", uerr.Error())
	}
	return err
}
