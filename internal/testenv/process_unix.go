//go:build unix && !linux

package testenv

import "syscall"

// processGroupAttr puts a component in its own process group. Outside Linux
// there is no parent-death signal, so a test binary that crashes can leave
// components behind.
func processGroupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup signals every process in the group led by pid.
func signalGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
}
