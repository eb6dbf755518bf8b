package lock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows the lock file is opened with CreateFile directly, because the
// protocol needs what os.OpenFile does not give: FILE_SHARE_DELETE, so that
// the holder can delete the file while waiters have it open.
//
// The lock handle asks for read and write access only. Other lockers open the
// file without sharing delete access (os.OpenFile in gofrs/flock and
// AzureAD's Go extension; Python's open in portalocker): while any handle
// has delete access, or the file is marked delete-on-close, their open fails
// with a sharing violation instead of waiting for the lock. The holder
// deletes the file through a second handle opened only for that, at release
// (see deleteHeld).
//
// The OS lock is LockFileEx, exclusive, on byte 0: the byte gofrs/flock
// (AzureAD's Go extension) locks, and inside the range portalocker (MSAL
// Python) locks, so all of them exclude each other. .NET opens the file with
// FileShare.None: while it holds the file our open fails with a sharing
// violation and we wait, and while we hold it .NET's open fails and .NET
// retries.
//
// A byte-range lock is mandatory: others cannot read byte 0 of a file we
// hold. So our pid starts at byte 1, after a space, and a waiter that
// cannot read byte 0 reads from byte 1.
const contentPrefix = " "

const shareAll = windows.FILE_SHARE_READ | windows.FILE_SHARE_WRITE | windows.FILE_SHARE_DELETE

func open(path string, access, disposition uint32) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	h, err := windows.CreateFile(p, access, shareAll, nil, disposition, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}

// createExclusive creates the lock file, failing if it exists. Others can
// open it before we lock it: the caller locks it and writes our pid.
func createExclusive(path string, _ []byte) (newFile, error) {
	f, err := open(path, windows.GENERIC_READ|windows.GENERIC_WRITE, windows.CREATE_NEW)
	return newFile{f: f}, err
}

func openExisting(path string) (*os.File, error) {
	return open(path, windows.GENERIC_READ|windows.GENERIC_WRITE, windows.OPEN_EXISTING)
}

// keepOwn: a Lock does not keep the own lock file open between Lock calls
// on Windows. An open handle stops the directory from being removed until
// it is closed (Windows removes a file when its last handle closes; Wine
// refuses to), which a user who deletes the cache directory would meet.
const keepOwn = false

// openOwn opens the own lock file, creating it if missing. Nobody deletes
// it, and only this package locks it (on byte 0, as the lock file).
func openOwn(path string) (*os.File, error) {
	return open(path, windows.GENERIC_READ|windows.GENERIC_WRITE, windows.OPEN_ALWAYS)
}

// isTransient reports an error that goes away by itself: a sharing
// violation (a .NET holder opened the file without sharing) or access
// denied on an existing file (it is being deleted: a deleted file keeps its
// name until every handle to it is closed).
func isTransient(err error) bool {
	return errors.Is(err, windows.ERROR_SHARING_VIOLATION) ||
		errors.Is(err, windows.ERROR_ACCESS_DENIED) ||
		errors.Is(err, windows.ERROR_LOCK_VIOLATION)
}

func tryLockFile(f *os.File) (bool, error) {
	ol := new(windows.Overlapped)
	err := windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, windows.ERROR_LOCK_VIOLATION), errors.Is(err, windows.ERROR_IO_PENDING):
		return false, nil
	}
	return false, &fs.PathError{Op: "LockFileEx", Path: f.Name(), Err: err}
}

func unlockFile(f *os.File) error {
	ol := new(windows.Overlapped)
	if err := windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, ol); err != nil {
		return &fs.PathError{Op: "UnlockFileEx", Path: f.Name(), Err: err}
	}
	return nil
}

// deleteHeld deletes the lock file we hold, through a second handle opened
// with delete access for that alone, after checking that the path still
// names our file. POSIX semantics (Windows 10 1809 and later, NTFS) remove
// the name at once; otherwise the name stays until the last handle closes,
// and others see access denied meanwhile.
//
// A waiter of another library that has the file open without sharing delete
// access (a blocking gofrs/flock Lock, portalocker) makes that open fail for
// as long as it waits. Then the file stays, emptied and dated in the past,
// which says "no holder" to every reader of the protocol: an empty file older
// than staleEmpty is adopted at once.
func deleteHeld(f *os.File, path string, _ fs.FileInfo) error {
	d, err := openForDelete(path)
	if err != nil {
		if !errors.Is(err, windows.ERROR_SHARING_VIOLATION) {
			return err
		}
		return markReleased(f, path)
	}
	defer d.Close()
	same, err := sameFile(f, d)
	if err != nil {
		return &fs.PathError{Op: "delete", Path: path, Err: err}
	}
	if !same {
		return fmt.Errorf("%s was deleted or replaced by another program while this process held it; the lock may not have excluded that program", path)
	}
	h := windows.Handle(d.Fd())
	ex := struct{ Flags uint32 }{windows.FILE_DISPOSITION_DELETE | windows.FILE_DISPOSITION_POSIX_SEMANTICS}
	err = windows.SetFileInformationByHandle(h, windows.FileDispositionInfoEx,
		(*byte)(unsafe.Pointer(&ex)), uint32(unsafe.Sizeof(ex)))
	if err == nil {
		return nil
	}
	classic := struct{ DeleteFile bool }{true}
	err = windows.SetFileInformationByHandle(h, windows.FileDispositionInfo,
		(*byte)(unsafe.Pointer(&classic)), uint32(unsafe.Sizeof(classic)))
	if err != nil {
		return &fs.PathError{Op: "delete", Path: path, Err: err}
	}
	return nil
}

// openForDelete opens path with delete access, retrying a sharing violation
// a few times within a few tens of milliseconds: gofrs/flock's TryLock and
// AzureAD's Go extension keep the file open only for the moment they try.
func openForDelete(path string) (*os.File, error) {
	delay := firstDelay
	for try := 0; ; try++ {
		d, err := open(path, windows.DELETE|windows.FILE_READ_ATTRIBUTES, windows.OPEN_EXISTING)
		if err == nil || try == 4 || !errors.Is(err, windows.ERROR_SHARING_VIOLATION) {
			return d, err
		}
		time.Sleep(delay)
		delay *= 2
	}
}

// markReleased empties the lock file we hold and dates it in the past, for a
// lock file that could not be deleted.
func markReleased(f *os.File, path string) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	old := windows.NsecToFiletime(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	if err := windows.SetFileTime(windows.Handle(f.Fd()), nil, nil, &old); err != nil {
		return &fs.PathError{Op: "SetFileTime", Path: path, Err: err}
	}
	return nil
}

// sameFile reports whether two handles are open on the same file.
func sameFile(a, b *os.File) (bool, error) {
	var ia, ib windows.ByHandleFileInformation
	if err := windows.GetFileInformationByHandle(windows.Handle(a.Fd()), &ia); err != nil {
		return false, err
	}
	if err := windows.GetFileInformationByHandle(windows.Handle(b.Fd()), &ib); err != nil {
		return false, err
	}
	return ia.VolumeSerialNumber == ib.VolumeSerialNumber &&
		ia.FileIndexHigh == ib.FileIndexHigh && ia.FileIndexLow == ib.FileIndexLow, nil
}

// readHeldAt reads a lock file another process holds. Byte 0 is locked;
// our files and AzureAD's ("{pid} ...") have the pid after it.
func readHeldAt(f *os.File, buf []byte) (int, error) {
	n, err := f.ReadAt(buf, 0)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return f.ReadAt(buf, 1)
	}
	return n, err
}

// processAlive reports whether a process with this pid is running. Opening
// it fails with ERROR_INVALID_PARAMETER when there is no such process, and
// with access denied when it exists but is not ours to query.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return !errors.Is(err, windows.ERROR_INVALID_PARAMETER)
	}
	defer windows.CloseHandle(h)
	const stillActive = 259
	var code uint32
	if err := windows.GetExitCodeProcess(h, &code); err != nil {
		return true
	}
	return code == stillActive
}
