//go:build unix

package persistence

import (
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
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

// statVersion is File.Stat's one system call, into a Stat_t on the stack:
// it allocates nothing, as it runs on every silent token call. It gives the
// same Version as versionOf of os.Stat.
func statVersion(path string) (Version, error) {
	var st unix.Stat_t
	return statInto(path, &st)
}

// statInto is statVersion that leaves the whole stat in st.
func statInto(path string, st *unix.Stat_t) (Version, error) {
	err := unix.Stat(path, st)
	for err == unix.EINTR {
		err = unix.Stat(path, st)
	}
	switch err {
	case nil:
		return versionOfStat(st), nil
	case unix.ENOENT:
		return Version{}, nil
	}
	return Version{}, &fs.PathError{Op: "stat", Path: path, Err: err}
}

func versionOfStat(st *unix.Stat_t) Version {
	return Version{exists: true, size: st.Size, mtime: st.Mtim.Nano(), id1: uint64(st.Dev), id2: uint64(st.Ino)}
}
