//go:build unix && !linux

package pgserver

import "syscall"

// setPdeathsig: only Linux can tie the server's life to its parent's; the
// caller stops it elsewhere.
func setPdeathsig(*syscall.SysProcAttr) {}
