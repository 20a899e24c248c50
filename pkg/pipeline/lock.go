package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// LockFileName is the name of the lock file inside a run directory.
const LockFileName = ".lock"

// ErrLocked is matched (errors.Is) by the error returned when another process holds a run
// directory's lock.
var ErrLocked = errors.New("run directory is locked")

// LockedError says which run directory is in use and, when known, by which process.
type LockedError struct {
	Dir string
	// PID is the process holding the lock, or 0 when it could not be read.
	PID int
}

func (e *LockedError) Error() string {
	holder := "another process"
	if e.PID > 0 {
		holder = "another process (pid " + strconv.Itoa(e.PID) + ")"
	}
	return fmt.Sprintf("run directory %s is in use by %s; wait for it to finish or stop it", e.Dir, holder)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// DirLock is an exclusive lock on a run directory, held until Unlock. The operating system
// releases it when the holding process exits, however it exits, so a crashed run never
// leaves a directory locked.
type DirLock struct {
	file *os.File
}

// Lock takes the exclusive lock of run directory dir (the file <dir>/.lock, created if
// needed) without waiting. If another process holds it, the error is a *LockedError.
func Lock(dir string) (*DirLock, error) {
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, &LockedError{Dir: dir, PID: readLockPID(path)}
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// Record who holds the lock so a second process can name it.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &DirLock{file: f}, nil
}

// Unlock releases the lock. It is safe to call more than once.
func (l *DirLock) Unlock() error {
	if l == nil || l.file == nil {
		return nil
	}
	f := l.file
	l.file = nil
	// Clear the pid first, while still holding the lock, so the file never names a process
	// that no longer holds it.
	_ = f.Truncate(0)
	err := unlockFile(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func readLockPID(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
