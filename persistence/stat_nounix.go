//go:build !unix

package persistence

import (
	"errors"
	"io/fs"
	"os"
)

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
