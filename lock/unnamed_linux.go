package lock

import (
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// createUnnamed creates the lock file at path from an O_TMPFILE file in dir:
// an inode without a name, written and flocked before linkat(2) gives it the
// name path, failing if path exists. It costs one directory change less than
// a private named file that is linked and then unlinked. It returns
// errNoUnnamed where O_TMPFILE or linking it is unsupported.
func createUnnamed(dir, path string, content []byte) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	switch err {
	case nil:
	case unix.EISDIR, unix.EOPNOTSUPP, unix.EINVAL:
		// EISDIR: a kernel older than O_TMPFILE (3.11) took it for a
		// directory open; the others: a file system without it.
		return nil, errNoUnnamed
	default:
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	linked := false
	defer func() {
		if !linked {
			unix.Close(fd)
		}
	}()
	if err := flockFd(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, &fs.PathError{Op: "flock", Path: path, Err: err}
	}
	for len(content) > 0 {
		n, err := unix.Write(fd, content)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "write", Path: path, Err: err}
		}
		content = content[n:]
	}
	// AT_EMPTY_PATH links the descriptor itself; it needs
	// CAP_DAC_READ_SEARCH before Linux 6.10, and fails with ENOENT without
	// it. The /proc/self/fd link works for anyone where /proc is mounted.
	err = unix.Linkat(fd, "", unix.AT_FDCWD, path, unix.AT_EMPTY_PATH)
	if err == unix.ENOENT || err == unix.EPERM {
		err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW)
	}
	switch err {
	case nil:
	case unix.EEXIST:
		return nil, &fs.PathError{Op: "link", Path: path, Err: fs.ErrExist}
	case unix.ENOENT:
		if _, serr := os.Stat(dir); serr != nil {
			return nil, &fs.PathError{Op: "link", Path: path, Err: err}
		}
		return nil, errNoUnnamed // no /proc
	case unix.EPERM, unix.ENOTSUP, unix.EXDEV, unix.EMLINK, unix.ENOSYS:
		return nil, errNoUnnamed
	default:
		return nil, &fs.PathError{Op: "link", Path: path, Err: err}
	}
	linked = true
	return os.NewFile(uintptr(fd), path), nil
}
