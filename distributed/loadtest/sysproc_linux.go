package main

import "syscall"

// sysProcAttr has the kernel kill a child (a worker, a replica) when the
// coordinator dies, so that an interrupted run leaves nothing running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
