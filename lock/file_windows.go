package lock

import (
	"errors"
	"io/fs"
	"os"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows the lock file is opened with CreateFile directly, because the
// protocol needs what os.OpenFile does not give:
//
//   - FILE_SHARE_DELETE, so the holder can delete the file while waiters
//     have it open, and DELETE access, to delete it through the handle we
//     hold (never by name, so never someone else's file);
//   - FILE_FLAG_DELETE_ON_CLOSE on a file we create, so that a holder that
//     dies leaves no file behind: Windows deletes it when the process's
//     handles close.
//
// The OS lock is LockFileEx, exclusive, on byte 0: the byte gofrs/flock
// (AzureAD's Go extension) locks, and inside the range portalocker (MSAL
// Python) locks, so all of them exclude each other. .NET opens the file with
// FileShare.None: while it holds the file our open fails with a sharing
// violation and we wait, and while we hold it .NET's open fails.
//
// A byte-range lock is mandatory: others cannot read byte 0 of a file we
// hold. So our pid starts at byte 1, after a space, and a waiter that
// cannot read byte 0 reads from byte 1.
const contentPrefix = " "

const shareAll = windows.FILE_SHARE_READ | windows.FILE_SHARE_WRITE | windows.FILE_SHARE_DELETE

func open(path string, disposition, flags uint32) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE|windows.DELETE,
		shareAll, nil, disposition, windows.FILE_ATTRIBUTE_NORMAL|flags, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}

func createExclusive(path string, _ []byte) (*os.File, error) {
	return open(path, windows.CREATE_NEW, windows.FILE_FLAG_DELETE_ON_CLOSE)
}

func openExisting(path string) (*os.File, error) {
	return open(path, windows.OPEN_EXISTING, 0)
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

// deleteHeld deletes the file through our handle. POSIX semantics (Windows
// 10 1809 and later, NTFS) remove the name at once; otherwise the name stays
// until the last handle closes, and others see access denied meanwhile.
func deleteHeld(f *os.File, path string, _ fs.FileInfo) error {
	h := windows.Handle(f.Fd())
	ex := struct{ Flags uint32 }{windows.FILE_DISPOSITION_DELETE | windows.FILE_DISPOSITION_POSIX_SEMANTICS}
	err := windows.SetFileInformationByHandle(h, windows.FileDispositionInfoEx,
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
