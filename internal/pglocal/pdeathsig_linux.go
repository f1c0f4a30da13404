package pglocal

import "syscall"

// setParentDeathSignal asks the kernel to send sig to the child when the
// parent dies without stopping it (a test timeout, kill -9), so no private
// postgres outlives its owner.
func setParentDeathSignal(attr *syscall.SysProcAttr, sig syscall.Signal) { attr.Pdeathsig = sig }
