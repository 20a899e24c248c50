//go:build !linux

package probe

import "os"

// unameRelease reads the kernel release where uname(2) is not wrapped; the
// probe only runs in Linux containers.
func unameRelease() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	return string(b), err
}
