package testenv

import "syscall"

// processGroupAttr puts a component in its own process group and has the
// kernel SIGKILL it when the test binary dies, whatever the cause.
func processGroupAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup signals every process in the group led by pid.
func signalGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
}
