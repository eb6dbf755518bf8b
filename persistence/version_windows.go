package persistence

import (
	"os"
	"syscall"
)

// versionOf: os.Stat gives no cheap file index on Windows, so the creation
// time stands in for identity (a renamed-in temp file is a new file), next to
// size and mtime (and Write makes each new mtime later than the replaced
// one's, which covers file-name tunneling of the creation time).
func versionOf(fi os.FileInfo) Version {
	v := Version{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if d, ok := fi.Sys().(*syscall.Win32FileAttributeData); ok {
		v.id1 = uint64(d.CreationTime.HighDateTime)<<32 | uint64(d.CreationTime.LowDateTime)
	}
	return v
}

// versionAfterRename stats the renamed file: NTFS may give it the creation
// time of the file it replaced (tunneling), so the temp file's is not it.
func versionAfterRename(path string, _ os.FileInfo) (Version, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Version{}, err
	}
	return versionOf(fi), nil
}
