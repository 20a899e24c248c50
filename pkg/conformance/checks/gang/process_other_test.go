//go:build !linux

package gang

import "syscall"

// processAttr has no parent-death signal to ask for outside Linux; the
// Kueue manager then outlives a test binary that dies.
func processAttr() *syscall.SysProcAttr { return nil }
