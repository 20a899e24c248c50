//go:build !unix

package progress

import "io"

// terminalWidth returns 0: the width is unknown here, so live lines are not shortened.
func terminalWidth(io.Writer) int { return 0 }
