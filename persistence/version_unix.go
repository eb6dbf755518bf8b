//go:build unix

package persistence

import (
	"os"
	"syscall"
)

// versionOf: device and inode identify the file; an atomic replacement is a
// new inode. Size and nanosecond mtime catch in-place writers and a reused
// inode number.
func versionOf(fi os.FileInfo) Version {
	v := Version{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		v.id1, v.id2 = uint64(st.Dev), uint64(st.Ino)
	}
	return v
}

// versionAfterRename: rename keeps the inode and mtime, so the Version taken
// from the temp file is exactly the new file's, with no race against a later
// writer.
func versionAfterRename(_ string, tmp os.FileInfo) (Version, error) {
	return versionOf(tmp), nil
}
