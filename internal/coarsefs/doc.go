// Package coarsefs gives tests a directory on a loop-mounted ext2 file
// system, whose timestamps are coarse: taken from the kernel's coarse clock
// (one tick, and behind the wall clock), or whole seconds. It needs root and
// e2fsprogs; tests mount it in a mount namespace of their own (see
// InNamespace), so that the mount goes with the namespace however the test
// ends.
//
// Linux only: elsewhere the package is empty.
package coarsefs
