//go:build darwin || dragonfly || freebsd || illumos || netbsd || openbsd

package lock

import "os"

// createUnnamed: only Linux has O_TMPFILE.
func createUnnamed(dir, path string, content []byte) (*os.File, error) { return nil, errNoUnnamed }
