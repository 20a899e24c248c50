package pipeline

import (
	"context"
	"errors"
	"fmt"
)

// ErrInterrupted is matched (errors.Is) by the error Runner.Run returns when its context was
// cancelled: the running phase is recorded as interrupted and the run can be resumed. The
// CLI exits with ExitCodeInterrupted for it.
var ErrInterrupted = errors.New("interrupted")

// ErrProfileChanged is matched (errors.Is) by the error returned when a run directory was
// made from a different profile than the one given (see ProfileChangedError).
var ErrProfileChanged = errors.New("profile changed")

// ErrMissingOutput is matched (errors.Is) by RunContext.RequireOutput's errors.
var ErrMissingOutput = errors.New("missing phase output")

// PhaseError is returned by Runner.Run when a phase failed or was interrupted.
type PhaseError struct {
	Phase string
	// Status is StatusFailed or StatusInterrupted.
	Status Status
	// Cause is why the context was cancelled, for interrupted phases (a *SignalError when
	// SignalContext cancelled it).
	Cause error
	// Err is what the phase returned (a *PanicError if it panicked).
	Err error
}

func (e *PhaseError) Error() string {
	if e.Status == StatusInterrupted && e.Cause != nil && !errors.Is(e.Err, e.Cause) {
		return fmt.Sprintf("phase %s %s (%v): %v", e.Phase, e.Status, e.Cause, e.Err)
	}
	return fmt.Sprintf("phase %s %s: %v", e.Phase, e.Status, e.Err)
}

// Unwrap returns the phase's error.
func (e *PhaseError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInterrupted) true for interrupted phases.
func (e *PhaseError) Is(target error) bool {
	return target == ErrInterrupted && e.Status == StatusInterrupted
}

// PanicError is a phase's panic, turned into an error so the run state is still saved.
type PanicError struct {
	Phase string
	Value any
	// Stack is the panicking goroutine's stack.
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("phase %s panicked: %v\n\n%s", e.Phase, e.Value, e.Stack)
}

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// ProfileChangedError says a run directory records another profile than the current one.
type ProfileChangedError struct {
	StatePath string
	Recorded  ProfileRef
	Current   ProfileRef
}

func (e *ProfileChangedError) Error() string {
	return fmt.Sprintf("%s was recorded for profile %q (%s) but this run uses profile %q (%s); "+
		"use a new run directory, or force the run to continue with the changed profile",
		e.StatePath, e.Recorded.Name, e.Recorded.Digest, e.Current.Name, e.Current.Digest)
}

// Is makes errors.Is(err, ErrProfileChanged) true.
func (e *ProfileChangedError) Is(target error) bool { return target == ErrProfileChanged }

// skipError is what SkipPhase returns.
type skipError struct{ reason string }

func (e *skipError) Error() string { return "skipped: " + e.reason }

// SkipPhase returns the error a phase returns to say it had nothing to do, and why. The
// phase is recorded as skipped (not failed), the run goes on, and a resumed run does not
// run it again.
func SkipPhase(reason string) error { return &skipError{reason: reason} }

// stoppedBefore is returned when the context ended between phases: an interruption when
// it was cancelled, a plain error when its deadline passed.
func stoppedBefore(ctx context.Context, phase string) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%w before phase %s started: %w", ErrInterrupted, phase, context.Cause(ctx))
	}
	return fmt.Errorf("run stopped before phase %s started: %w", phase, context.Cause(ctx))
}
