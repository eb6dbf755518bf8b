package msalcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"

	"github.com/msalcache/msalcache/internal/msaljson"
	"github.com/msalcache/msalcache/lock"
	"github.com/msalcache/msalcache/persistence"
)

// Cache is a persistent MSAL token cache in one file, shared safely by every
// process that opens the same path. Pass it to MSAL Go with
// public.WithCache(c).
//
// A Cache is safe for concurrent use by multiple goroutines and by several
// MSAL clients at once. Processes coordinate through a lock file next to the
// cache file ("<path>.lockfile").
type Cache struct {
	file    *persistence.File
	lock    *lock.Lock
	log     *slog.Logger
	timeout time.Duration

	mu sync.Mutex
	// version is the state of the file that current describes; current is
	// nil until the file is first read.
	version persistence.Version
	current *msaljson.Snapshot
	// corrupt is set while current stands for an undecodable file, which
	// is copied aside before it is first overwritten.
	corrupt bool
	// upgrade is set while the file is readable but in another format than
	// the configured one (say, plaintext left by WithPlaintextFallback): the
	// next Export rewrites it in the configured format.
	upgrade bool
	// views holds, per MSAL cache object, the snapshot its memory holds: it
	// tells Replace whether Unmarshal is needed and is Export's merge base.
	views map[any]*msaljson.Snapshot
	// marshaled maps the entries of MSAL's last Marshal to their canonical
	// form: most entries repeat from one Export to the next.
	marshaled map[string]string
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
		views:   map[any]*msaljson.Snapshot{},
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
// lock (writes are atomic renames) and unmarshals it into u.
func (c *Cache) Replace(ctx context.Context, u cache.Unmarshaler, _ cache.ReplaceHints) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.file.Stat()
	if err != nil {
		return fmt.Errorf("msalcache: loading the token cache: %w", err)
	}
	if c.current != nil && v == c.version && c.views[u] == c.current {
		return nil // the hot path: one stat
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if c.current == nil || v != c.version {
		if err := c.load(ctx, false); err != nil {
			return fmt.Errorf("msalcache: loading the token cache: %w", err)
		}
	}
	if c.views[u] == c.current {
		return nil
	}
	held, dropped, err := unmarshal(u, c.current)
	if err != nil {
		return fmt.Errorf("msalcache: loading the token cache: %w", err)
	}
	if held != c.current {
		// Entries MSAL cannot take are left out (salvage.go); the file
		// is copied aside before it is next written.
		c.log.Warn("msalcache: MSAL cannot load some entries of the token cache file; they are left out (their users sign in again). A copy of the file is kept before it is next written.",
			"path", c.file.Path(), "copy", c.file.Path()+".corrupt-<time>", "dropped", describeDropped(dropped))
		c.current, c.corrupt = held, true
	}
	c.view(u, c.current)
	return nil
}

// Export saves MSAL's cache. MSAL Go calls it after every change, and also
// when nothing changed: then nothing is locked, read or written. Otherwise,
// under the cross-process lock, it merges its changes into what the file
// holds now (other processes may have written since), entry by entry, and
// writes the result atomically if it differs from the file.
func (c *Cache) Export(ctx context.Context, m cache.Marshaler, _ cache.ExportHints) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	data, err := m.Marshal()
	if err != nil {
		// Its message may quote cache content: not passed on.
		return errors.New("msalcache: saving the token cache: MSAL could not marshal it")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	base := c.views[m]
	if base == nil {
		base = msaljson.Empty
	}
	ours, err := msaljson.Parse(data, c.marshaled)
	if err != nil {
		return fmt.Errorf("msalcache: saving the token cache: MSAL's JSON: %s", jsonProblem(err))
	}
	c.marshaled = ours.Seen
	if ours.Equal(base) && !c.upgrade {
		return nil // nothing changed since m was last synced
	}
	err = c.withLock(ctx, func() error {
		if err := c.refresh(ctx); err != nil {
			return err
		}
		merged := msaljson.Merge(base, ours, c.current)
		if !merged.Equal(c.current) || c.upgrade {
			if err := c.write(ctx, merged); err != nil {
				return fmt.Errorf("%s: %w", c.file.Path(), err)
			}
		}
		if merged.Equal(ours) {
			c.view(m, c.current)
		} else {
			c.view(m, ours) // m lacks what others wrote: the next Replace hands it over
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("msalcache: saving the token cache: %w", err)
	}
	return nil
}

// Clear removes the cache file under the lock: every account is signed out,
// in every process that shares the file. The keyring key stays.
func (c *Cache) Clear(ctx context.Context) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.withLock(ctx, func() error {
		if err := c.file.Remove(); err != nil {
			return err
		}
		c.current, c.version, c.corrupt, c.upgrade = msaljson.Empty, persistence.Version{}, false, false
		clear(c.views)
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
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if err := c.file.Verify(ctx); err != nil {
		return fmt.Errorf("msalcache: verify: %w", err)
	}
	return nil
}

// refresh makes current describe the file as it is now; c.mu and the lock
// are held.
func (c *Cache) refresh(ctx context.Context) error {
	v, err := c.file.Stat()
	if err != nil {
		return err
	}
	if c.current != nil && v == c.version {
		return nil
	}
	return c.load(ctx, true)
}

// load reads the file into current. A file that does not decode is read
// again under the lock before it is called corrupt: other MSAL libraries
// write in place while holding the lock, so a lock-free read can see half a
// file. A corrupt file is treated as empty and kept aside before it is
// overwritten. c.mu is held; locked says whether the lock is too.
func (c *Cache) load(ctx context.Context, locked bool) error {
	data, v, format, err := c.file.ReadFormat(ctx)
	var snap *msaljson.Snapshot
	if err == nil {
		var memo map[string]string
		if c.current != nil {
			memo = c.current.Seen
		}
		snap, err = msaljson.Parse(data, memo)
		if err != nil {
			err = fmt.Errorf("%w: %s: %s", persistence.ErrCorrupt, c.file.Path(), jsonProblem(err))
		}
	}
	if errors.Is(err, persistence.ErrCorrupt) && !locked {
		return c.withLock(ctx, func() error { return c.load(ctx, true) })
	}
	switch {
	case errors.Is(err, persistence.ErrCorrupt):
		c.log.Warn("msalcache: the token cache file cannot be read; starting with an empty cache (users sign in again). A copy is kept before it is overwritten.",
			"path", c.file.Path(), "copy", c.file.Path()+".corrupt-<time>", "reason", err.Error())
		c.current, c.version, c.corrupt, c.upgrade = msaljson.Empty, v, true, false
		return nil
	case err != nil:
		return err
	}
	c.current, c.version, c.corrupt = snap, v, false
	c.upgrade = format != persistence.FormatNone && format != c.file.Format()
	if c.upgrade {
		c.log.Info("msalcache: the token cache file is in another format; the next write converts it",
			"path", c.file.Path(), "found", string(format), "configured", string(c.file.Format()))
	}
	return nil
}

// write replaces the file with s; c.mu and the lock are held.
func (c *Cache) write(ctx context.Context, s *msaljson.Snapshot) error {
	if c.corrupt {
		copyPath, err := c.file.Quarantine()
		if err != nil {
			return fmt.Errorf("keeping a copy of the unreadable cache file before overwriting it: %w", err)
		}
		c.log.Warn("msalcache: kept a copy of the unreadable token cache file", "copy", copyPath)
	}
	v, err := c.file.Write(ctx, s.Raw)
	if err != nil {
		return err
	}
	c.current, c.version, c.corrupt, c.upgrade = s, v, false, false
	return nil
}

// view records that MSAL cache object x holds s.
func (c *Cache) view(x any, s *msaljson.Snapshot) {
	if len(c.views) >= 64 {
		clear(c.views) // many short-lived clients: forget, they reload once
	}
	c.views[x] = s
}

// bound gives ctx the configured deadline if it has none.
func (c *Cache) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// withLock runs fn holding the cross-process lock.
func (c *Cache) withLock(ctx context.Context, fn func() error) (err error) {
	unlock, err := c.lock.Lock(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if uerr := unlock(); uerr != nil && err == nil {
			err = fmt.Errorf("releasing the cache lock: %w", uerr)
		}
	}()
	return fn()
}
