//go:build !linux

package redisserver

import "syscall"

// sysProcAttr: only Linux can tie the server's life to its parent's; the
// caller stops it elsewhere.
func sysProcAttr() *syscall.SysProcAttr { return nil }
