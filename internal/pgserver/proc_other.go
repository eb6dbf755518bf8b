//go:build !unix

package pgserver

import (
	"errors"
	"os"
	"syscall"
)

// The launcher runs on Unix only (the tests that need PostgreSQL are not
// built for Windows); these let the package compile there.

func (s *Server) sysProcAttr() *syscall.SysProcAttr { return nil }

func lookupPostgres() (*owner, error) { return nil, errors.ErrUnsupported }

func stop(*os.Process) {}

func killPid(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}
