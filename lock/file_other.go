//go:build !(darwin || dragonfly || freebsd || illumos || linux || netbsd || openbsd || windows)

package lock

import (
	"errors"
	"io/fs"
	"os"
)

// Other systems (aix, solaris, plan9, js, wasip1, ...): no lock. Lock
// returns an error wrapping errors.ErrUnsupported.

const contentPrefix = ""

func unsupported(op, path string) error {
	return &fs.PathError{Op: op, Path: path, Err: errors.ErrUnsupported}
}

func createExclusive(path string, _ []byte) (newFile, error) {
	return newFile{}, unsupported("lock", path)
}
func openExisting(path string) (*os.File, error) { return nil, unsupported("lock", path) }
func openOwn(path string) (*os.File, error)      { return nil, unsupported("lock", path) }

const keepOwn = false

func isTransient(error) bool                                  { return false }
func tryLockFile(f *os.File) (bool, error)                    { return false, unsupported("lock", f.Name()) }
func unlockFile(f *os.File) error                             { return unsupported("unlock", f.Name()) }
func deleteHeld(f *os.File, path string, _ fs.FileInfo) error { return unsupported("delete", path) }
func readHeldAt(f *os.File, buf []byte) (int, error)          { return 0, unsupported("read", f.Name()) }
func processAlive(int) bool                                   { return true }
