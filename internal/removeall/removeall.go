// Package removeall removes a directory tree with os.Remove alone.
//
// Go 1.26's os.RemoveAll on Windows deletes through
// NtSetInformationFile(FileDispositionInformationEx), which Wine 8.0 answers
// with "Invalid function", so it fails there, where the Windows tests run.
// DeleteFile and RemoveDirectory, which os.Remove calls, work everywhere.
package removeall

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// RemoveAll removes dir and everything in it, children before parents. A
// missing dir is not an error. The first file it cannot remove (on Windows,
// say, one that is still open) stops it, with that error.
func RemoveAll(dir string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, p := range slices.Backward(paths) {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}
