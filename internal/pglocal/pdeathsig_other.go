//go:build !linux

package pglocal

import "syscall"

// setParentDeathSignal is Linux-only; elsewhere Stop must be called.
func setParentDeathSignal(attr *syscall.SysProcAttr, sig syscall.Signal) {}
