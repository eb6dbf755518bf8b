//go:build !windows

package persistence

import (
	"context"
	"os"
)

// Elsewhere than Windows, an open file does not keep another process from
// reading, renaming over or removing it: no retries.

func openRead(_ context.Context, path string) (*os.File, error) { return os.Open(path) }
func rename(_ context.Context, oldpath, newpath string) error   { return os.Rename(oldpath, newpath) }
func remove(_ context.Context, path string) error               { return os.Remove(path) }
