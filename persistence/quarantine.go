package persistence

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// keepCopies is how many copies of bad cache files Quarantine keeps per
// cache file; older ones are removed.
const keepCopies = 5

// copyInfix names Quarantine's copies: "<name>.corrupt-<UTC time>". The time
// has a fixed width, so the names sort oldest first.
const (
	copyInfix  = ".corrupt"
	copyLayout = "20060102T150405.000000000Z"
)

// Quarantine keeps the current file, as its raw bytes, in a new file
// "<path>.corrupt-<UTC time>" (0600) next to it, and returns that path. Call
// it before overwriting a file that cannot be read, so that nothing is lost
// for good. Each call keeps its own copy, never replacing an earlier one; the
// newest five are kept and older ones removed. Remove removes them all.
//
// A file over the size limit is renamed to the copy's name instead of
// copied: it is no token cache, and a copy would cost as much disk again.
// A missing file is an error matching fs.ErrNotExist. Overwrite keeps the
// file aside as it replaces it, without needing room for a copy.
func (f *File) Quarantine() (string, error) {
	ctx := context.Background()
	src, err := openRead(ctx, f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &fs.PathError{Op: "quarantine", Path: f.path, Err: fs.ErrNotExist}
	}
	if err != nil {
		return "", err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("quarantine %s: not a regular file", f.path)
	}
	var dst string
	if fi.Size() > maxFileSize {
		src.Close() // Windows renames no open file
		dst, err = f.moveAside(ctx)
	} else {
		dst, err = f.copyTo(src)
	}
	if err != nil {
		return "", fmt.Errorf("quarantine %s: %w", f.path, err)
	}
	// Best effort: a copy that cannot be removed only takes room.
	_ = f.removeCopies(keepCopies)
	return dst, nil
}

// copyTo copies src into a new copy file, created exclusively (0600) so that
// no earlier copy is ever replaced.
func (f *File) copyTo(src io.Reader) (string, error) {
	for n := 0; ; n++ {
		dst := f.copyName(n)
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) && n < 100 {
			continue
		}
		if err != nil {
			return "", err
		}
		_, err = io.Copy(out, src)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
			return "", err
		}
		return dst, nil
	}
}

// moveAside renames the file to a copy name that is not taken.
func (f *File) moveAside(ctx context.Context) (string, error) {
	for n := 0; n < 100; n++ {
		dst := f.copyName(n)
		if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := rename(ctx, f.path, dst); err != nil {
			return "", err
		}
		// Best effort: the file may belong to a sister library's mode.
		_ = os.Chmod(dst, 0o600)
		return dst, nil
	}
	return "", errors.New("no free name for the copy")
}

// copyName is the name of a new copy; n > 0 disambiguates copies made in
// the same nanosecond.
func (f *File) copyName(n int) string {
	name := f.path + copyInfix + "-" + time.Now().UTC().Format(copyLayout)
	if n > 0 {
		name += "-" + strconv.Itoa(n)
	}
	return name
}

// removeCopies removes all but the newest keep copies of bad files, and the
// single "<path>.corrupt" of earlier versions when keep is 0.
func (f *File) removeCopies(keep int) error {
	dir, base := filepath.Split(f.path)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var copies []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, base+copyInfix+"-") || (keep == 0 && name == base+copyInfix) {
			copies = append(copies, name)
		}
	}
	slices.Sort(copies)
	var errs []error
	for _, name := range copies[:max(len(copies)-keep, 0)] {
		if err := remove(context.Background(), filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Overwrite is Write for a file that cannot be read: it replaces the file
// atomically with plaintext, sealed, and keeps the file it replaces under a
// new name "<path>.corrupt-<UTC time>" (0600), which it returns (empty if
// there was no file). The copies are bounded as Quarantine's are. Call it
// holding the cross-process lock.
//
// It needs no more free disk space than Write: the new file is written
// first, then the old one is hard-linked to the copy's name and the new one
// renamed over it, so the path never lacks a file and the old file's data
// blocks go to the copy. Where the file system has no hard links, the old
// file is copied, or, when that fails too (a full disk) or the file is over
// the size limit, renamed to the copy's name right before the new one takes
// its place. If the write fails, the file stays at the path and no copy is
// left behind.
func (f *File) Overwrite(ctx context.Context, plaintext []byte) (string, Version, error) {
	sealed, err := f.p.Seal(ctx, plaintext)
	if err != nil {
		return "", Version{}, err
	}
	var aside setAside
	v, err := writeAtomic(ctx, f.path, sealed, func() (err error) {
		aside, err = f.setAside(ctx)
		return err
	})
	if err != nil {
		return "", Version{}, errors.Join(err, aside.undo(ctx, f.path))
	}
	if aside.copy != "" {
		// Best effort: a hard link shares the old file's mode, which may
		// be a sister library's.
		_ = os.Chmod(aside.copy, 0o600)
		// Best effort: a copy that cannot be removed only takes room.
		_ = f.removeCopies(keepCopies)
	}
	return aside.copy, v, nil
}

// setAside is how Overwrite kept the old file: under the name copy, as a
// hard link or a copy of its bytes, or renamed there (moved).
type setAside struct {
	copy  string
	moved bool
}

// setAside keeps the file at the path under a new copy name: a hard link,
// else a copy of its bytes (not for a file over the size limit), else a
// rename. A missing file is kept as nothing.
func (f *File) setAside(ctx context.Context) (setAside, error) {
	fi, err := os.Lstat(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return setAside{}, nil
	}
	if err != nil {
		return setAside{}, err
	}
	if !fi.Mode().IsRegular() {
		return setAside{}, fmt.Errorf("keeping %s aside: not a regular file", f.path)
	}
	dst, lerr := f.linkAside()
	if lerr == nil {
		return setAside{copy: dst}, nil
	}
	var cerr error
	if fi.Size() <= maxFileSize {
		if dst, cerr = f.copyAside(ctx); cerr == nil {
			return setAside{copy: dst}, nil
		}
	}
	dst, merr := f.moveAside(ctx)
	if merr != nil {
		return setAside{}, fmt.Errorf("keeping %s aside: %w", f.path, errors.Join(lerr, cerr, merr))
	}
	return setAside{copy: dst, moved: true}, nil
}

// undo takes back a setting aside after the new file did not take the
// path: a copy goes (the file is still at the path), a moved file comes
// back.
func (a setAside) undo(ctx context.Context, path string) error {
	switch {
	case a.copy == "":
		return nil
	case a.moved:
		return rename(ctx, a.copy, path)
	}
	return remove(ctx, a.copy)
}

// linkAside hard-links the file to a copy name that is not taken.
func (f *File) linkAside() (string, error) {
	link := f.link
	if link == nil {
		link = os.Link
	}
	for n := 0; ; n++ {
		dst := f.copyName(n)
		err := link(f.path, dst)
		if errors.Is(err, fs.ErrExist) && n < 100 {
			continue
		}
		if err != nil {
			return "", err
		}
		return dst, nil
	}
}

// copyAside copies the file's bytes to a new copy.
func (f *File) copyAside(ctx context.Context) (string, error) {
	src, err := openRead(ctx, f.path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	return f.copyTo(src)
}
