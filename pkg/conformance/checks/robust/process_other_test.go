//go:build !linux

package robust

import "syscall"

// processAttr has no parent-death signal to ask for outside Linux; the
// KubeRay operator then outlives a test binary that dies.
func processAttr() *syscall.SysProcAttr { return nil }
