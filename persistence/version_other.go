//go:build !unix && !windows

package persistence

import "os"

// versionOf: size and mtime only.
func versionOf(fi os.FileInfo) Version {
	return Version{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

func versionAfterRename(path string, _ os.FileInfo) (Version, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Version{}, err
	}
	return versionOf(fi), nil
}
