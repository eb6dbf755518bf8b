//go:build !linux

package main

import "syscall"

// sysProcAttr: elsewhere the coordinator kills its children itself when it
// stops; a coordinator that is killed leaves them to end on their own.
func sysProcAttr() *syscall.SysProcAttr { return nil }
