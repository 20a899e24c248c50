//go:build !unix

package pipeline

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

var errWouldBlock = errors.New("lock is held")

func lockFile(*os.File) error {
	return fmt.Errorf("locking run directories is not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func unlockFile(*os.File) error { return nil }
