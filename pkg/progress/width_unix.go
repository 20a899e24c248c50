//go:build unix

package progress

import (
	"io"

	"golang.org/x/sys/unix"
)

// terminalWidth returns the column count of the terminal behind w, or 0 when unknown.
func terminalWidth(w io.Writer) int {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}
