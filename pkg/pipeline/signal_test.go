package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/pkg/progress"
)

// The end-to-end tests re-run this test binary as a small kaic-like program (helperMain)
// and signal it like a user pressing Ctrl-C would.
const (
	helperDirEnv    = "KAIC_PIPELINE_TEST_HELPER_DIR"
	helperModeEnv   = "KAIC_PIPELINE_TEST_HELPER_MODE"
	helperResumeEnv = "KAIC_PIPELINE_TEST_HELPER_RESUME"
	helperReadyLine = "install is waiting"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperDirEnv); dir != "" {
		os.Exit(helperMain(dir, os.Getenv(helperModeEnv), os.Getenv(helperResumeEnv) == "1"))
	}
	os.Exit(m.Run())
}

// helperMain runs provision → install → verify in dir the way the CLI does. Its install
// phase, by mode: "block" waits for cancellation, "ignore" never returns (ignoring
// cancellation), anything else succeeds.
func helperMain(dir, mode string, resume bool) int {
	ctx, stop := SignalContext(context.Background())
	defer stop()
	printer := progress.NewPrinter(os.Stderr, progress.WithMode(progress.ModePlain))
	defer printer.Close()
	r := &Runner{
		Dir:         dir,
		Resume:      resume,
		KaicVersion: "v0.0.0-helper",
		Profile:     profileA,
		Progress:    printer,
		Phases: []Phase{
			{Name: PhaseProvision, Run: func(context.Context, *RunContext) (Outputs, error) {
				return Outputs{"cluster": "kaic"}, nil
			}},
			{Name: PhaseInstall, Run: func(ctx context.Context, rc *RunContext) (Outputs, error) {
				if mode != "block" && mode != "ignore" {
					return Outputs{"installed": "yes"}, nil
				}
				step := rc.StartStep("waiting for kueue")
				fmt.Println(helperReadyLine)
				if mode == "ignore" {
					select {}
				}
				<-ctx.Done()
				step.Done(ctx.Err())
				return nil, fmt.Errorf("waiting for kueue: %w", ctx.Err())
			}},
			{Name: PhaseVerify, Run: func(context.Context, *RunContext) (Outputs, error) {
				return nil, nil
			}},
		},
	}
	_, err := r.Run(ctx)
	switch {
	case errors.Is(err, ErrInterrupted):
		fmt.Fprintln(os.Stderr, "error:", err)
		return ExitCodeInterrupted
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// helper is a running helper process.
type helper struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	ready  chan struct{} // closed when the install phase is blocked
	done   chan error    // receives cmd.Wait's result
}

func startHelper(t *testing.T, dir, mode string, resume bool) *helper {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperModeEnv+"="+mode, "CI=true")
	if resume {
		cmd.Env = append(cmd.Env, helperResumeEnv+"=1")
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stderr: &lockedBuffer{}, ready: make(chan struct{}), done: make(chan error, 1)}
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		// Read stdout to the end before Wait, which closes it.
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			if lines.Text() == helperReadyLine {
				close(h.ready)
			}
		}
		h.done <- cmd.Wait()
	}()
	return h
}

// waitReady waits until the helper's install phase is blocked.
func (h *helper) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-h.ready:
	case err := <-h.done:
		t.Fatalf("helper exited before install started: %v\n%s", err, h.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("helper never reached install:\n%s", h.stderr)
	}
}

// wait returns the helper's exit code.
func (h *helper) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-h.done:
		var exitErr *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &exitErr):
			return exitErr.ExitCode()
		}
		t.Fatalf("helper: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("helper did not exit:\n%s", h.stderr)
	}
	return -1
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSIGINTInterruptsAndResumeContinues(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	h := startHelper(t, dir, "block", false)
	// The lock only sits on the directory while a helper runs; wait for the phase first.
	h.waitReady(t)
	if err := h.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := h.wait(t); code != ExitCodeInterrupted {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, ExitCodeInterrupted, h.stderr)
	}
	stderr := h.stderr.String()
	for _, want := range []string{
		"SIGINT: stopping the current phase and saving the run state",
		"[install] waiting for kueue: failed (",
		"[install] interrupted (",
		"): received SIGINT",
		"error: phase install interrupted (received SIGINT): waiting for kueue: context canceled",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	s := loadState(t, dir)
	if got := statuses(s); got[PhaseProvision] != StatusSucceeded || got[PhaseInstall] != StatusInterrupted || got[PhaseVerify] != StatusPending {
		t.Fatalf("state after SIGINT: %v", got)
	}
	if !strings.Contains(s.Phase(PhaseInstall).Error, "received SIGINT") {
		t.Errorf("install error %q does not say why", s.Phase(PhaseInstall).Error)
	}

	resumed := startHelper(t, dir, "ok", true)
	if code := resumed.wait(t); code != 0 {
		t.Fatalf("resume exit code %d; stderr:\n%s", code, resumed.stderr)
	}
	stderr = resumed.stderr.String()
	if !strings.Contains(stderr, "[provision] skipped: already succeeded") || strings.Contains(stderr, "[provision] started") {
		t.Errorf("resume did not skip provision:\n%s", stderr)
	}
	s = loadState(t, dir)
	for _, p := range s.Phases {
		if p.Status != StatusSucceeded {
			t.Errorf("after resume phase %s is %s", p.Name, p.Status)
		}
	}
	if s.Phase(PhaseInstall).Outputs["installed"] != "yes" {
		t.Errorf("install outputs %v", s.Phase(PhaseInstall).Outputs)
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	h := startHelper(t, dir, "ignore", false)
	h.waitReady(t)
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Give the first signal time to land so the second is seen as a second one.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(h.stderr.String(), "SIGTERM: stopping") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := h.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := h.wait(t); code != ExitCodeInterrupted {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, ExitCodeInterrupted, h.stderr)
	}
	if !strings.Contains(h.stderr.String(), "SIGTERM again: exiting now") {
		t.Errorf("stderr:\n%s", h.stderr)
	}
	// The process died mid-phase: the record says so, and a resume repairs and reruns it.
	if got := loadState(t, dir).Phase(PhaseInstall).Status; got != StatusRunning {
		t.Fatalf("install is %s after a hard exit, want running", got)
	}
	resumed := startHelper(t, dir, "ok", true)
	if code := resumed.wait(t); code != 0 {
		t.Fatalf("resume exit code %d; stderr:\n%s", code, resumed.stderr)
	}
	if got := statuses(loadState(t, dir)); got[PhaseInstall] != StatusSucceeded || got[PhaseVerify] != StatusSucceeded {
		t.Errorf("after resume: %v", got)
	}
}
