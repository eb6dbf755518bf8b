package persistence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// maxFileSize bounds what Read loads into memory. MSAL caches are kilobytes
// to a few megabytes; anything this big is not a cache file.
const maxFileSize = 256 << 20

// File is the cache file at one path, sealed by one Protector. Its methods
// are safe for concurrent use by multiple goroutines; a File holds no state
// besides its path, its Protector and (on Unix) descriptors of the file and
// its directory that make Stat cheap, so any number of Files (in any number
// of processes) may share a path. Writes replace the file atomically;
// nothing here locks: callers that read-modify-write hold a cross-process
// lock. Close releases the descriptors.
type File struct {
	path  string
	p     Protector
	watch watcher // makes Stat cheap where the OS allows (watch_unix.go)
	// link makes Overwrite's hard link; nil means os.Link. Tests stand in
	// a file system without hard links.
	link func(oldname, newname string) error
}

// Version identifies one state of the file: the file's identity, size and
// modification time. If another process atomically replaces the file, the
// Version changes, even when size and time happen to match (the replacement
// is a new file; and every Write makes the new file's modification time
// later than the one it replaces). Versions are comparable with ==; the zero
// Version means "no file".
type Version struct {
	exists bool
	size   int64
	mtime  int64  // nanoseconds since the Unix epoch
	id1    uint64 // Unix: device; Windows: creation time
	//lint:ignore U1000 set and compared on Unix only
	id2 uint64 // Unix: inode
}

// Exists reports whether v is the Version of an existing file.
func (v Version) Exists() bool { return v.exists }

// Size is the file's size in bytes (0 for the zero Version).
func (v Version) Size() int64 { return v.size }

// NewFile returns the File at path, sealed with p. It checks, and creates
// nothing:
//   - path is made absolute;
//   - path must not be a symbolic link, a directory or another non-regular
//     file (a missing file is fine);
//   - on Unix, the directory holding it must be owned by the current user
//     (or root) and not writable by group or others, since anyone who can
//     write the directory can replace the cache file; if the directory does
//     not exist yet, its nearest existing ancestor must not be writable by
//     others (unless it has the sticky bit, like /tmp).
func NewFile(path string, p Protector) (*File, error) {
	if path == "" {
		return nil, errors.New("persistence: empty cache file path")
	}
	if p == nil {
		return nil, errors.New("persistence: nil Protector")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	fi, err := os.Lstat(abs)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("persistence: refusing cache file %s: it is a symbolic link (whoever controls the link controls where tokens go); give the real path", abs)
	case err == nil && !fi.Mode().IsRegular():
		return nil, fmt.Errorf("persistence: refusing cache file %s: it is not a regular file (%v)", abs, fi.Mode().Type())
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("persistence: %w", err)
	}
	if err := checkDirTree(filepath.Dir(abs)); err != nil {
		return nil, err
	}
	return &File{path: abs, p: p}, nil
}

// Path is the absolute path of the cache file.
func (f *File) Path() string { return f.path }

// Protection is the Protector that seals the file.
func (f *File) Protection() Protector { return f.p }

// Format is the format Write produces: FormatEnvelope, FormatDPAPI,
// FormatPlaintext, or FormatUnknown for a Protector from outside this package.
// A Read that reports another format means the file should be rewritten.
func (f *File) Format() Format { return formatOf(f.p) }

// Stat returns the current Version of the file at the path: on Unix from
// fstats of the file and its directory, kept open, while nothing shows that
// the file is no longer the one at the path (see watcher), else from a stat
// of the path. A missing file is the zero Version and no error. Stat holds
// no lock across a system call: on a hung mount, each call hangs on its own.
func (f *File) Stat() (Version, error) { return f.watch.stat(f.path) }

// Close releases the descriptors Stat keeps open, without waiting for a Stat
// in progress. The File stays usable: later calls to Stat stat the path.
// Close is idempotent.
func (f *File) Close() error { return f.watch.close() }

// Read reads the whole file, detects its format and returns the plaintext
// (MSAL JSON) and the Version of exactly the bytes read (taken from the open
// handle before reading, so any later change gives another Version).
//
// A missing file is nil, the zero Version and no error. A file that cannot be
// decoded returns an error wrapping ErrCorrupt, together with its Version. A
// plaintext file is read whatever the Protector (so a file left by a
// plaintext fallback upgrades on the next Write); an envelope or a DPAPI blob
// only by the Protector that made it: with another Protector the error wraps
// ErrUnavailable, not ErrCorrupt (a process that has that protection can read
// the file, so it must not be overwritten). Plaintext JSON is validated;
// sealed formats are authenticated by their protection.
func (f *File) Read(ctx context.Context) ([]byte, Version, error) {
	b, v, _, err := f.ReadFormat(ctx)
	return b, v, err
}

// ReadFormat is Read that also returns the format found in the file
// (FormatNone for a missing file).
func (f *File) ReadFormat(ctx context.Context) ([]byte, Version, Format, error) {
	raw, v, err := f.ReadRaw(ctx)
	if err != nil || !v.exists {
		return nil, Version{}, FormatNone, err
	}
	pt, fm, err := f.Decode(ctx, raw)
	if err != nil {
		return nil, v, fm, err
	}
	return pt, v, fm, nil
}

// ReadRaw reads the file's bytes as they are, sealed, and returns them with
// the Version of exactly those bytes. A missing file is nil, the zero
// Version and no error. Decode opens what it read; ReadFormat does both.
// A caller that knows the plaintext of a plaintext file can compare the
// bytes and skip Decode.
func (f *File) ReadRaw(ctx context.Context) ([]byte, Version, error) {
	return readFile(ctx, f.path)
}

// Decode detects the format of raw, bytes of the file as ReadRaw returns
// them, and returns the plaintext and the format, as Read does. It may
// decrypt in place: raw is not to be used afterwards.
func (f *File) Decode(ctx context.Context, raw []byte) ([]byte, Format, error) {
	if len(raw) == 0 {
		// An empty file is an empty cache: MSAL Node and Python create the
		// cache file empty before their first write.
		return []byte{}, FormatNone, nil
	}
	fm := DetectFormat(raw)
	pt, err := f.decode(ctx, raw, fm)
	if err != nil {
		return nil, fm, fmt.Errorf("read %s: %w", f.path, err)
	}
	return pt, fm, nil
}

func (f *File) decode(ctx context.Context, raw []byte, fm Format) ([]byte, error) {
	native := formatOf(f.p)
	switch {
	case fm == FormatPlaintext:
		return plaintext{}.Open(ctx, raw)
	case fm == native || native == FormatUnknown:
		if o, ok := f.p.(inPlaceOpener); ok {
			return o.openInPlace(ctx, raw)
		}
		return f.p.Open(ctx, raw)
	// A file sealed by another protection is not corrupt: a process that
	// has that protection (a desktop session with the keyring, next to this
	// one on the plaintext fallback) reads it.
	case fm == FormatEnvelope:
		return nil, fmt.Errorf("%w: the file is an msalcache envelope, encrypted with a key kept in the macOS Keychain or a Linux Secret Service, which this process does not use (its protection is %s), so it cannot open it; the file is left as it is. Unlock the keyring (or start one for this session) so that this process uses it too, or give this process a cache path of its own (say, for headless use)",
			ErrUnavailable, f.p.Name())
	case fm == FormatDPAPI:
		return nil, fmt.Errorf("%w: the file is a Windows DPAPI blob, which only the Windows user who wrote it can open, on Windows (this process's protection is %s); the file is left as it is. Give this process a cache path of its own, or remove the file to start over",
			ErrUnavailable, f.p.Name())
	}
	return nil, fmt.Errorf("%w: unrecognized content (neither JSON, an msalcache envelope nor a DPAPI blob)", ErrCorrupt)
}

// inPlaceOpener is a Protector that can decrypt into the buffer it is given.
type inPlaceOpener interface {
	openInPlace(ctx context.Context, sealed []byte) ([]byte, error)
}

// Write seals plaintext with the Protector and replaces the file atomically:
// a temporary file in the same directory (0600) is written, synced, closed and
// renamed over the file; missing directories are created 0700. Readers see
// the old or the new file, never a mix. On every failure the temporary file
// is removed and the old file is left as it was. The new file's mtime is
// stamped past the time of the write (see stampLater). Write returns the
// Version of the new file.
func (f *File) Write(ctx context.Context, plaintext []byte) (Version, error) {
	sealed, err := f.p.Seal(ctx, plaintext)
	if err != nil {
		return Version{}, err
	}
	return writeAtomic(ctx, f.path, sealed, nil)
}

// Remove removes the cache file and the copies Quarantine kept of it (they
// hold tokens too). A missing file is not an error.
func (f *File) Remove() error {
	err := remove(context.Background(), f.path)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, f.removeCopies(0))
}

// Verify checks that the cache can be stored: it runs the Protector's Probe
// (for a keyring, a separate item is written, read and deleted), creates the
// cache directory (0700) if missing, and writes, syncs and removes a temporary
// file there. It never touches the cache file.
func (f *File) Verify(ctx context.Context) error {
	if err := f.p.Probe(ctx); err != nil {
		return fmt.Errorf("verify %s protection: %w", f.p.Name(), err)
	}
	dir := filepath.Dir(f.path)
	if err := makeDir(dir); err != nil {
		return fmt.Errorf("verify cache directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".verify-*")
	if err != nil {
		return fmt.Errorf("verify cache directory: %w", err)
	}
	_, werr := tmp.Write([]byte("msalcache verify\n"))
	serr := tmp.Sync()
	cerr := tmp.Close()
	rerr := remove(ctx, tmp.Name())
	if err := errors.Join(werr, serr, cerr, rerr); err != nil {
		return fmt.Errorf("verify cache directory: %w", err)
	}
	return nil
}

// readFile reads the file at path and returns its bytes and the Version of
// the open handle, taken before reading. A missing file is nil, Version{}, nil.
func readFile(ctx context.Context, path string) ([]byte, Version, error) {
	fh, err := openRead(ctx, path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Version{}, nil
	}
	if err != nil {
		return nil, Version{}, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, Version{}, err
	}
	if !fi.Mode().IsRegular() {
		return nil, Version{}, fmt.Errorf("read %s: not a regular file", path)
	}
	if fi.Size() > maxFileSize {
		return nil, versionOf(fi), fmt.Errorf("read %s: %w: the file is %d bytes, too large for a token cache (the limit is %d MiB; MSAL caches are kilobytes to a few megabytes), so it is not read", path, ErrCorrupt, fi.Size(), maxFileSize>>20)
	}
	// One byte more than the size, so a file that has not grown is read in
	// one call and io.EOF ends the loop without a reallocation.
	b := make([]byte, 0, fi.Size()+1)
	for {
		n, err := fh.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, Version{}, err
		}
		if len(b) > maxFileSize {
			return nil, Version{}, fmt.Errorf("read %s: %w: the file grew past %d bytes while being read", path, ErrCorrupt, maxFileSize)
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
	return b, versionOf(fi), nil
}

// tempInfix marks writeAtomic's temporary files: ".<name>.tmp-<random>".
const tempInfix = ".tmp-"

// staleTemp is the age after which a temporary file is taken for one left by
// a writer that was killed between creating and renaming it. A live write
// takes milliseconds.
const staleTemp = 10 * time.Minute

// sweepTemps removes the temporary files of name in dir that killed writers
// left behind. Best effort: a failure only leaves the litter in place.
func sweepTemps(dir, name string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "."+name+tempInfix+"*"))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > staleTemp {
			os.Remove(m)
		}
	}
}

// writeAtomic replaces path with data: temp file in the same directory,
// write, sync, close, rename. The temp file is removed on every failure.
// If beforeRename is not nil, it runs once the temp file is complete, right
// before the rename; if it fails, nothing is renamed.
func writeAtomic(ctx context.Context, path string, data []byte, beforeRename func() error) (v Version, err error) {
	dir := filepath.Dir(path)
	if err := makeDir(dir); err != nil {
		return Version{}, err
	}
	sweepTemps(dir, filepath.Base(path))
	// os.CreateTemp creates the file 0600 with O_EXCL and a random name.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+tempInfix+"*")
	if err != nil {
		return Version{}, err
	}
	name := tmp.Name()
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close() // may already be closed; the error does not matter then
			if rerr := remove(ctx, name); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return Version{}, err
	}
	if err := tmp.Sync(); err != nil {
		return Version{}, err
	}
	if err := tmp.Close(); err != nil {
		return Version{}, err
	}
	if err := stampLater(name, path); err != nil {
		return Version{}, err
	}
	fi, err := os.Stat(name)
	if err != nil {
		return Version{}, err
	}
	if beforeRename != nil {
		if err := beforeRename(); err != nil {
			return Version{}, err
		}
	}
	if err := rename(ctx, name, path); err != nil {
		return Version{}, err
	}
	renamed = true
	return versionAfterRename(path, fi)
}

// stampLater sets the modification time of the new file tmp, before it is
// renamed over target, to an instant no reader can have read from its clock
// before this write, as the file system stores it: later than now (taken
// here, under the caller's lock), in a later millisecond than now, and later
// than the file it replaces. The other MSAL libraries decide whether to
// reload by comparing the file's mtime with a clock reading they took after
// their own last load or save under the lock: MSAL Python reloads only if
// mtime > time.time() read after its save, MSAL Node only if mtime (in
// milliseconds) > Date.now() read after its load. The kernel would stamp the
// file from a clock that lags the wall clock by up to a tick, and a coarse
// file system (ext2/ext3 with small inodes, FAT) truncates it to the second
// (two on FAT): a write right after theirs would then look older than their
// reading, and their next save would drop it. So the time set is the next
// millisecond boundary after now; where the file system cannot store it
// (it reads back truncated to or before the millisecond of now) the next
// second's, then the next two seconds' boundary. The stamp can thus lie up
// to a tick of the file system in the future, which costs the other
// libraries at most a redundant reload until then. Being later than the
// replaced file also keeps two writes in one tick apart where the mtime is
// part of the Version (Windows has no cheap file identity). Best effort: a
// file system that cannot store any of these keeps what it has.
func stampLater(tmp, target string) error {
	floor := time.Now()
	if old, err := os.Stat(target); err == nil && old.ModTime().After(floor) {
		floor = old.ModTime()
	}
	past := nextTick(floor, time.Millisecond)
	for _, tick := range []time.Duration{time.Millisecond, time.Second, 2 * time.Second} {
		if err := os.Chtimes(tmp, time.Time{}, nextTick(floor, tick)); err != nil {
			return err
		}
		fi, err := os.Stat(tmp)
		if err != nil {
			return err
		}
		if !fi.ModTime().Before(past) {
			return nil
		}
	}
	return nil
}

// nextTick is the first multiple of tick since the Unix epoch after t.
func nextTick(t time.Time, tick time.Duration) time.Time {
	ns := t.UnixNano()
	return time.Unix(0, ns-ns%int64(tick)+int64(tick))
}

// makeDir creates dir (0700) and its missing parents, then checks that it is
// safe to keep the cache in (see checkDir).
func makeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return checkDir(dir)
}
