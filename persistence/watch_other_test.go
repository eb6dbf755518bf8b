//go:build !unix

package persistence

import "testing"

// waitKept: nothing is kept open on this OS.
func waitKept(testing.TB, *File) {}
