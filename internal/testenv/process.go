package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// logTailLines is how much of a component's log an error quotes.
const logTailLines = 25

// component is one running control-plane process, started in its own
// process group with stdout and stderr going to logPath.
type component struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File

	exited  chan struct{} // closed once the process has been reaped
	waitErr error         // set before exited is closed
}

// startComponent runs binary with args, logging to logDir/<name>.log.
func startComponent(name, binary, logDir string, args []string) (*component, error) {
	return startComponentEnv(name, binary, logDir, args, nil)
}

// startComponentEnv is startComponent with environ added to the test
// binary's environment.
func startComponentEnv(name, binary, logDir string, args, environ []string) (*component, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), environ...)
	cmd.SysProcAttr = processGroupAttr()
	fmt.Fprintf(logFile, "# %s %s\n", binary, strings.Join(args, " "))
	if err := spawn(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &component{name: name, cmd: cmd, logPath: logPath, logFile: logFile, exited: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()
	return c, nil
}

// pid returns the process id, which is also its process group id.
func (c *component) pid() int { return c.cmd.Process.Pid }

// stop sends SIGTERM to the component's process group and SIGKILL after
// grace, then waits for the process to be reaped.
func (c *component) stop(grace time.Duration, logger *slog.Logger) {
	began := time.Now()
	defer func() { logger.Debug("stopped", "component", c.name, "took", time.Since(began)) }()
	select {
	case <-c.exited:
		return
	default:
	}
	signalGroup(c.pid(), syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.exited:
		// The leader is gone; anything it left in its group goes too.
		signalGroup(c.pid(), syscall.SIGKILL)
		return
	case <-timer.C:
	}
	signalGroup(c.pid(), syscall.SIGKILL)
	<-c.exited
}

// exitError returns a non-nil error once the process has exited.
func (c *component) exitError() error {
	select {
	case <-c.exited:
		if c.waitErr != nil {
			return fmt.Errorf("%s exited: %w", c.name, c.waitErr)
		}
		return fmt.Errorf("%s exited", c.name)
	default:
		return nil
	}
}

// logTail returns the last n lines of the component's log.
func (c *component) logTail(n int) string {
	return tailFile(c.logPath, n)
}

// failure wraps err with the tail of the component's log.
func (c *component) failure(err error) error {
	return &ComponentError{Component: c.name, LogPath: c.logPath, LogTail: c.logTail(logTailLines), Err: err}
}

// ComponentError reports a control-plane component that failed to start or
// become ready, with the end of its log.
type ComponentError struct {
	Component string
	LogPath   string
	LogTail   string
	Err       error
}

func (e *ComponentError) Error() string {
	return fmt.Sprintf("%s: %v\n--- last lines of %s ---\n%s", e.Component, e.Err, e.LogPath, e.LogTail)
}

func (e *ComponentError) Unwrap() error { return e.Err }

func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const maxTail = 64 << 10
	if info, err := f.Stat(); err == nil && info.Size() > maxTail {
		_, _ = f.Seek(info.Size()-maxTail, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitReady polls probe with exponential backoff (20 ms doubling to 500 ms)
// until it succeeds, the component exits or ctx ends.
func (c *component) waitReady(ctx context.Context, probe func(context.Context) error) error {
	delay := 20 * time.Millisecond
	var lastErr error
	for {
		probeCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = probe(probeCtx)
		cancel()
		if lastErr == nil {
			return nil
		}
		if err := c.exitError(); err != nil {
			return c.failure(err)
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return c.failure(fmt.Errorf("not ready: %w (last probe: %v)", context.Cause(ctx), lastErr))
		case <-c.exited:
			timer.Stop()
			return c.failure(c.exitError())
		case <-timer.C:
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// spawnRequests carries processes to start to a goroutine locked to its own
// OS thread for the life of the test binary. Linux sends the parent-death
// signal when the thread that forked the child exits, not the process, so
// forking from an arbitrary goroutine's thread could kill a component early.
var (
	spawnOnce     sync.Once
	spawnRequests chan spawnRequest
)

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnRequests = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for req := range spawnRequests {
				req.done <- req.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawnRequests <- spawnRequest{cmd: cmd, done: done}
	return <-done
}

// addressInUse reports whether a component's log shows it lost a port race.
func addressInUse(err error) bool {
	var ce *ComponentError
	return errors.As(err, &ce) && bytes.Contains([]byte(ce.LogTail), []byte("address already in use"))
}
