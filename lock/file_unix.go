//go:build darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd

package lock

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// On Unix the OS lock is flock(2), exclusive, on the whole file: the call
// gofrs/flock, MSAL Python's portalocker and .NET (FileShare.None) make.
// It belongs to the open file, so a lock is on exactly the file we opened,
// and the kernel drops it when its holder dies.

// contentPrefix goes before our pid in the lock file: nothing on Unix.
const contentPrefix = ""

// createExclusive creates the lock file at path, failing if it exists, with
// content in it and our OS lock on it from the first moment it has its name:
// a file without a name is written and flocked first, then linked to path
// (linkat(2) fails if path exists, like O_EXCL). So a holder killed at any
// moment leaves either no lock file, or one with its pid in it whose OS lock
// the kernel dropped, which the next process recovers at once; never an
// empty file, which could be an O_EXCL holder that has not written its pid
// yet and is given a second's grace.
//
// The file without a name is an O_TMPFILE file on Linux (see
// createUnnamed). Elsewhere, or where the file system does not support
// O_TMPFILE, it is a private file in the same directory, unlinked once
// linked (link(2) is atomic on NFS too); a process killed between creating
// and unlinking it leaves a small ".<name>.new-*" file behind. Where hard
// links are not supported it falls back to O_CREAT|O_EXCL, and the caller
// locks the file and writes the pid.
func createExclusive(path string, content []byte) (newFile, error) {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if !noUnnamed {
		f, err := createUnnamed(dir, path, content)
		if !errors.Is(err, errNoUnnamed) {
			return ready(f, err)
		}
	}
	f, err := os.CreateTemp(dir, "."+name+".new-*")
	if err != nil {
		// Name the lock file, not the private one, in the error.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return newFile{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	linked := false
	defer func() {
		os.Remove(f.Name())
		if !linked {
			f.Close()
		}
	}()
	if err := flockFile(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return newFile{}, &fs.PathError{Op: "flock", Path: f.Name(), Err: err}
	}
	if _, err := f.Write(content); err != nil {
		return newFile{}, err
	}
	switch err := os.Link(f.Name(), path); {
	case err == nil:
		linked = true
		return ready(f, nil)
	case errors.Is(err, fs.ErrExist):
		return newFile{}, err
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.EOPNOTSUPP),
		errors.Is(err, unix.EXDEV), errors.Is(err, unix.EMLINK), errors.Is(err, unix.ENOSYS):
		// No hard links here (FAT, some FUSE and SMB mounts).
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		return newFile{f: f}, err
	default:
		return newFile{}, err
	}
}

// errNoUnnamed says that createUnnamed cannot work here: no O_TMPFILE (not
// Linux, or not this file system), or no way to link the file.
var errNoUnnamed = errors.New("lock: no unnamed files here")

// noUnnamed makes createExclusive skip createUnnamed: tests of the fallback
// set it.
var noUnnamed = false

// ready returns a file that createUnnamed or a private link made: locked,
// with our pid, named by path since it was linked.
func ready(f *os.File, err error) (newFile, error) {
	if err != nil {
		return newFile{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		// It is linked and ours: release it as unlock would.
		os.Remove(f.Name())
		f.Close()
		return newFile{}, err
	}
	return newFile{f: f, ready: true, fi: fi}, nil
}

func openExisting(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR, 0)
}

// keepOwn: a Lock keeps the own lock file open between Lock calls.
const keepOwn = true

// openOwn opens the own lock file, creating it if missing.
func openOwn(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}

// isTransient reports an error that goes away by itself: none on Unix.
func isTransient(error) bool { return false }

func tryLockFile(f *os.File) (bool, error) {
	err := flockFile(f, unix.LOCK_EX|unix.LOCK_NB)
	switch err {
	case nil:
		return true, nil
	case unix.EWOULDBLOCK:
		return false, nil
	}
	return false, &fs.PathError{Op: "flock", Path: f.Name(), Err: err}
}

func unlockFile(f *os.File) error {
	if err := flockFile(f, unix.LOCK_UN); err != nil {
		return &fs.PathError{Op: "funlock", Path: f.Name(), Err: err}
	}
	return nil
}

// flockFile calls flock(2) on f's descriptor, through SyscallConn rather than
// Fd, which costs two fcntl calls each time.
func flockFile(f *os.File, how int) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = rc.Control(func(fd uintptr) { ferr = flockFd(int(fd), how) })
	if err != nil {
		return err
	}
	return ferr
}

// flockFd calls flock(2), again if a signal interrupts it.
func flockFd(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// deleteHeld removes the lock file we hold. Unix deletes by name, so check
// first that the name is still ours: a sister library that deletes the lock
// file after releasing its OS lock (AzureAD's Go extension, MSAL Python) may
// have removed it, and another process may have created a new one since.
func deleteHeld(f *os.File, path string, fi fs.FileInfo) error {
	cur, err := os.Stat(path)
	if err != nil || !os.SameFile(cur, fi) {
		return fmt.Errorf("%s was deleted or replaced by another program while this process held it; the lock may not have excluded that program", path)
	}
	return os.Remove(path)
}

// readHeldAt reads a lock file another process holds: flock does not stop reads.
func readHeldAt(f *os.File, buf []byte) (int, error) { return f.ReadAt(buf, 0) }

// processAlive reports whether a process with this pid exists. kill with
// signal 0 only checks: it delivers nothing. EPERM means the process exists
// but belongs to another user. A zombie (dead, not yet reaped) has dropped
// its locks and counts as dead.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	if err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	return !zombie(pid)
}

// zombie reads the state of pid on Linux; elsewhere it says false.
func zombie(pid int) bool {
	if runtime.GOOS != "linux" && runtime.GOOS != "android" {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": comm may contain anything, so find the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
