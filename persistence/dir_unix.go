//go:build unix

package persistence

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// checkDir refuses a directory that another user could use to replace the
// cache file: one writable by group or others, or owned by someone other
// than the current user or root.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("persistence: %s is not a directory", dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("persistence: refusing cache directory %s: it is writable by group or others (mode %04o), who could replace the cache file; use a directory only you can write (chmod go-w), e.g. in your home directory",
			dir, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := uint64(os.Getuid()); uint64(st.Uid) != uid && st.Uid != 0 {
			return fmt.Errorf("persistence: refusing cache directory %s: it belongs to user id %d, not to you (%d)", dir, st.Uid, uid)
		}
	}
	return nil
}

// checkDirTree checks dir if it exists; otherwise its nearest existing
// ancestor, where the missing directories will be created, must not be
// writable by others unless it is sticky (like /tmp). Write checks dir again
// once it has created it.
func checkDirTree(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return checkDir(dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("persistence: %w", err)
	}
	for a := filepath.Dir(dir); ; a = filepath.Dir(a) {
		fi, err := os.Stat(a)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("persistence: %s is not a directory", a)
			}
			if fi.Mode()&0o002 != 0 && fi.Mode()&fs.ModeSticky == 0 {
				return fmt.Errorf("persistence: refusing to create the cache directory %s inside %s: everyone can write there (mode %04o)", dir, a, fi.Mode().Perm())
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) || a == filepath.Dir(a) {
			return fmt.Errorf("persistence: %w", err)
		}
	}
}
