//go:build unix

package distributed

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
