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
// A missing file is an error matching fs.ErrNotExist.
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
