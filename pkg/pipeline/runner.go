package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kaic-dev/kaic/pkg/progress"
)

// Names of kaic's phases, in pipeline order. They are shared here so the CLI and the phase
// implementations agree on them without importing each other.
const (
	PhaseProvision = "provision"
	PhaseInstall   = "install"
	PhaseVerify    = "verify"
	PhaseReport    = "report"
)

// Phase is one stage of the pipeline.
type Phase struct {
	// Name identifies the phase in state.json and progress output.
	Name string
	// Run does the phase's work. It must return promptly once ctx is cancelled; the
	// returned error is then recorded and the phase marked interrupted. Outputs returned
	// with an error are recorded too, so partial work (a cluster already created) can be
	// found and torn down. Return SkipPhase(reason) when there is nothing to do.
	Run func(ctx context.Context, rc *RunContext) (Outputs, error)
}

// Runner runs phases in order in one run directory and records the run in its state.json.
// Set its fields and call Run; a Runner may be run more than once.
type Runner struct {
	// Dir is the run directory; it is created if needed.
	Dir string
	// Phases are all the pipeline's phases, in order.
	Phases []Phase
	// Only selects a subset of Phases by name (run in pipeline order whatever the order
	// here); empty runs them all. Phases not selected are neither run nor recorded, and
	// what the state already records for them is kept.
	Only []string
	// Resume skips the selected phases that already succeeded (or were skipped), up to the
	// first one that did not: that one and every selected phase after it run. Without
	// Resume every selected phase runs. Resume needs an existing state.json.
	Resume bool
	// AllowProfileChange lets a run continue in a directory whose state.json was recorded
	// for a different profile digest; the new profile is then recorded.
	AllowProfileChange bool
	// KaicVersion is the version of kaic doing the run, recorded in state.json.
	KaicVersion string
	// RunID is recorded in state.json when it records none yet; a state that records
	// another one is an error (the directory belongs to another run).
	RunID string
	// LockHeld says the caller already holds the directory's lock (see Lock) for the
	// whole run; otherwise Run takes it.
	LockHeld bool
	// Profile identifies the resolved profile; Digest is required (see ProfileDigest).
	Profile ProfileRef
	// Progress receives phase and step events; nil discards them.
	Progress progress.Reporter
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// Now is the clock used for recorded times; nil means time.Now.
	Now func() time.Time
}

// Run runs the selected phases and returns the final run state.
//
// A phase that fails stops the run: it is recorded failed with its error, later phases do
// not run, and the error is a *PhaseError. A panic in a phase is recorded the same way, as a
// *PanicError. When ctx is cancelled the running phase is recorded interrupted and the error
// matches ErrInterrupted; a context whose deadline passes fails the phase instead, since a
// timeout is not the user stopping the run. The state is saved after every change, whatever
// the outcome. The returned state is nil only when the run could not start: an invalid
// Runner, a locked directory, an unreadable state.json or a changed profile.
func (r *Runner) Run(ctx context.Context) (*State, error) {
	selected, err := r.selected()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating run directory: %w", err)
	}
	if !r.LockHeld {
		lock, err := Lock(r.Dir)
		if err != nil {
			return nil, err
		}
		defer func() { _ = lock.Unlock() }()
	}

	x := &execution{
		dir:      r.Dir,
		now:      r.Now,
		reporter: r.Progress,
		logger:   r.Logger,
	}
	if x.now == nil {
		x.now = time.Now
	}
	if x.reporter == nil {
		x.reporter = progress.Discard
	}
	if x.logger == nil {
		x.logger = slog.New(slog.DiscardHandler)
	}
	if err := x.open(r); err != nil {
		return nil, err
	}

	// Plan: on resume, skip the leading phases already done.
	start := 0
	if r.Resume {
		for start < len(selected) && x.state.Phase(selected[start].Name).Status.done() {
			start++
		}
	}
	for _, p := range selected[start:] {
		rec := x.state.Phase(p.Name)
		rec.Status, rec.Start, rec.End, rec.Duration, rec.Error = StatusPending, time.Time{}, time.Time{}, 0, ""
	}
	if err := x.save(); err != nil {
		return nil, err
	}

	for _, p := range selected[:start] {
		rec := x.state.Phase(p.Name)
		x.logger.Info("skipping phase", "phase", p.Name, "status", rec.Status)
		x.reporter.Report(progress.Event{
			Kind: progress.PhaseSkipped, Time: x.now(), Phase: p.Name,
			Message: "already " + string(rec.Status),
		})
	}
	for _, p := range selected[start:] {
		if ctx.Err() != nil {
			return x.snapshot(), stoppedBefore(ctx, p.Name)
		}
		if err := x.runPhase(ctx, p); err != nil {
			return x.snapshot(), err
		}
	}
	return x.snapshot(), nil
}

// selected validates the Runner and returns the phases to consider, in pipeline order.
func (r *Runner) selected() ([]Phase, error) {
	var problems []string
	if r.Dir == "" {
		problems = append(problems, "Dir is empty")
	}
	if r.Profile.Digest == "" {
		problems = append(problems, "Profile.Digest is empty")
	}
	if len(r.Phases) == 0 {
		problems = append(problems, "no phases")
	}
	names := make([]string, 0, len(r.Phases))
	for i, p := range r.Phases {
		switch {
		case p.Name == "":
			problems = append(problems, fmt.Sprintf("Phases[%d] has no name", i))
		case slices.Contains(names, p.Name):
			problems = append(problems, fmt.Sprintf("phase %q is listed twice", p.Name))
		case p.Run == nil:
			problems = append(problems, fmt.Sprintf("phase %q has no Run function", p.Name))
		}
		names = append(names, p.Name)
	}
	for _, name := range r.Only {
		if !slices.Contains(names, name) {
			problems = append(problems, fmt.Sprintf("unknown phase %q (phases: %s)", name, strings.Join(names, ", ")))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("invalid pipeline runner: %s", strings.Join(problems, "; "))
	}
	if len(r.Only) == 0 {
		return slices.Clone(r.Phases), nil
	}
	var selected []Phase
	for _, p := range r.Phases {
		if slices.Contains(r.Only, p.Name) {
			selected = append(selected, p)
		}
	}
	return selected, nil
}

// execution is one Run: the state being recorded and where it goes. mu guards state, which
// phases may update concurrently through RunContext.SetOutput.
type execution struct {
	dir      string
	now      func() time.Time
	reporter progress.Reporter
	logger   *slog.Logger

	mu    sync.Mutex
	state *State
}

// open loads the run state, or starts a new one, and checks it belongs to this run.
func (x *execution) open(r *Runner) error {
	now := x.now()
	state, err := LoadState(r.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if r.Resume {
			return fmt.Errorf("cannot resume: %w", err)
		}
		state = &State{SchemaVersion: StateSchemaVersion, Profile: r.Profile, Created: now}
	case err != nil:
		return err
	case state.Profile.Digest != r.Profile.Digest:
		changed := &ProfileChangedError{StatePath: StatePath(r.Dir), Recorded: state.Profile, Current: r.Profile}
		if !r.AllowProfileChange {
			return changed
		}
		x.logger.Warn("continuing with a changed profile", "error", changed.Error())
	}
	switch {
	case state.RunID == "":
		state.RunID = r.RunID
	case r.RunID != "" && state.RunID != r.RunID:
		return fmt.Errorf("%s records run %s, not %s", StatePath(r.Dir), state.RunID, r.RunID)
	}
	state.SchemaVersion = StateSchemaVersion
	state.KaicVersion = r.KaicVersion
	state.Profile = r.Profile

	// A phase still "running" was left by a process that died (the lock proves no other
	// process is running it now).
	for i := range state.Phases {
		if p := &state.Phases[i]; p.Status == StatusRunning {
			p.Status = StatusInterrupted
			p.Error = "the process running this phase exited without recording an outcome"
			x.logger.Warn("phase was left running by an earlier process", "phase", p.Name)
		}
	}
	state.Phases = recordsInOrder(state.Phases, r.Phases, r.Only)
	x.state = state
	return nil
}

// recordsInOrder returns records with one for every selected phase, in pipeline order;
// records of phases this pipeline does not know are kept after them.
func recordsInOrder(records []PhaseState, phases []Phase, only []string) []PhaseState {
	byName := make(map[string]PhaseState, len(records))
	for _, rec := range records {
		byName[rec.Name] = rec
	}
	out := make([]PhaseState, 0, len(phases))
	for _, p := range phases {
		rec, ok := byName[p.Name]
		if !ok && (len(only) == 0 || slices.Contains(only, p.Name)) {
			rec, ok = PhaseState{Name: p.Name, Status: StatusPending}, true
		}
		if ok {
			out = append(out, rec)
		}
		delete(byName, p.Name)
	}
	for _, rec := range records {
		if _, unknown := byName[rec.Name]; unknown {
			out = append(out, rec)
		}
	}
	return out
}

// save writes the state. Callers hold x.mu or own the execution exclusively.
func (x *execution) save() error {
	x.state.Updated = x.now()
	if err := SaveState(x.dir, x.state); err != nil {
		return err
	}
	x.logger.Debug("run state saved", "path", StatePath(x.dir))
	return nil
}

func (x *execution) snapshot() *State {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.state.Clone()
}

// runPhase runs one phase and records its outcome; the error is non-nil when the run must
// stop.
func (x *execution) runPhase(ctx context.Context, p Phase) error {
	x.mu.Lock()
	rec := x.state.Phase(p.Name)
	previous := rec.Outputs.clone()
	start := x.now()
	rec.Status, rec.Start = StatusRunning, start
	err := x.save()
	x.mu.Unlock()
	if err != nil {
		return err
	}
	x.logger.Info("phase started", "phase", p.Name)
	x.reporter.Report(progress.Event{Kind: progress.PhaseStarted, Time: start, Phase: p.Name})

	rc := &RunContext{
		Dir:      x.dir,
		Phase:    p.Name,
		Logger:   x.logger.With("phase", p.Name),
		Progress: x.reporter,
		x:        x,
		previous: previous,
		fresh:    Outputs{},
	}
	outputs, phaseErr := callPhase(ctx, p, rc)

	x.mu.Lock()
	end := x.now()
	rc.finished = true
	for k, v := range outputs {
		rc.fresh[k] = v
	}
	rec = x.state.Phase(p.Name)
	rec.End, rec.Duration = end, end.Sub(start)
	var skip *skipError
	var panicked *PanicError
	var runErr error
	switch {
	case phaseErr == nil:
		rec.Status, rec.Error = StatusSucceeded, ""
	case errors.As(phaseErr, &skip) && !errors.As(phaseErr, &panicked):
		rec.Status, rec.Error = StatusSkipped, skip.reason
	case errors.Is(ctx.Err(), context.Canceled) && !errors.As(phaseErr, &panicked):
		rec.Status = StatusInterrupted
		runErr = &PhaseError{Phase: p.Name, Status: StatusInterrupted, Cause: context.Cause(ctx), Err: phaseErr}
		rec.Error = runErr.Error()
	default:
		rec.Status, rec.Error = StatusFailed, phaseErr.Error()
		runErr = &PhaseError{Phase: p.Name, Status: StatusFailed, Err: phaseErr}
	}
	if rec.Status == StatusSucceeded || rec.Status == StatusSkipped {
		rec.Outputs = nonEmpty(rc.fresh)
	} else {
		rec.Outputs = nonEmpty(merge(previous, rc.fresh))
	}
	saveErr := x.save()
	status, duration := rec.Status, rec.Duration
	x.mu.Unlock()

	x.logger.Info("phase finished", "phase", p.Name, "status", status, "duration", duration)
	ev := progress.Event{
		Kind: progress.PhaseFinished, Time: end, Phase: p.Name,
		Status: string(status), Duration: duration,
	}
	switch status {
	case StatusSkipped:
		ev.Message = skip.reason
	case StatusFailed:
		ev.Err = phaseErr
	case StatusInterrupted:
		// Why the run stopped ("received SIGINT") says more than the phase's own
		// "context canceled".
		ev.Err = context.Cause(ctx)
	}
	x.reporter.Report(ev)
	return errors.Join(runErr, saveErr)
}

// callPhase runs the phase, turning a panic into a *PanicError.
func callPhase(ctx context.Context, p Phase, rc *RunContext) (outputs Outputs, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Phase: p.Name, Value: v, Stack: debug.Stack()}
		}
	}()
	return p.Run(ctx, rc)
}

func merge(base, over Outputs) Outputs {
	out := base.clone()
	if out == nil {
		out = Outputs{}
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

func nonEmpty(o Outputs) Outputs {
	if len(o) == 0 {
		return nil
	}
	return o.clone()
}
