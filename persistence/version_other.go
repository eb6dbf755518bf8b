//go:build !unix && !windows

package persistence

import (
	"errors"
	"io/fs"
	"os"
)

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

// statVersion is File.Stat's system call.
func statVersion(path string) (Version, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Version{}, nil
	}
	if err != nil {
		return Version{}, err
	}
	return versionOf(fi), nil
}
