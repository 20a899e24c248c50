package robust

import "syscall"

// processAttr puts the KubeRay operator in its own process group and has
// the kernel kill it when the test binary exits, however it exits.
func processAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
