package pgserver

import "syscall"

// setPdeathsig has the kernel kill the process when the thread that
// started it (and so the test process) dies.
func setPdeathsig(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
