//go:build unix

package pgserver

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// sysProcAttr runs initdb and the server as the owner when there is one,
// and on Linux ties their life to ours.
func (s *Server) sysProcAttr() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{}
	if s.owner != nil {
		attr.Credential = &syscall.Credential{Uid: uint32(s.owner.uid), Gid: uint32(s.owner.gid)}
	}
	setPdeathsig(attr)
	return attr
}

// stop stops p (SIGSTOP): a stopped postmaster starts no backend.
func stop(p *os.Process) { _ = p.Signal(syscall.SIGSTOP) }

// killPid sends SIGKILL to pid.
func killPid(pid int) { _ = syscall.Kill(pid, syscall.SIGKILL) }

// lookupPostgres returns the postgres user, which Debian's packages create.
func lookupPostgres() (*owner, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgserver: running as root, and PostgreSQL refuses to: no postgres user to run it as (%w); install the Debian package postgresql, or run as another user", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgserver: the postgres user has uid %q, gid %q", u.Uid, u.Gid)
	}
	return &owner{uid: uid, gid: gid}, nil
}
