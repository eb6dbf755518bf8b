package redisserver

import "syscall"

// sysProcAttr has the kernel kill redis-server when the process that
// started it dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
