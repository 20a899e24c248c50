package pipeline

import (
	"fmt"
	"log/slog"

	"github.com/kaic-dev/kaic/pkg/progress"
)

// RunContext is what a running phase gets besides its context: the run directory, what
// earlier phases recorded, and where to report progress. Its methods are safe for
// concurrent use.
type RunContext struct {
	// Dir is the run directory; phases write their files under it.
	Dir string
	// Phase is the name of the running phase.
	Phase string
	// Logger is for diagnostics, already tagged with the phase.
	Logger *slog.Logger
	// Progress receives the phase's progress events; StartStep and Notef use it.
	Progress progress.Reporter

	x        *execution
	previous Outputs // what earlier attempts of this phase recorded
	fresh    Outputs // what this attempt has recorded so far; guarded by x.mu
	finished bool    // guarded by x.mu
}

// StartStep reports that a step of the phase began; finish it with Done or Skip.
func (rc *RunContext) StartStep(name string) *progress.Step {
	return progress.StartStep(rc.Progress, rc.Phase, name)
}

// Notef reports a note for the reader, such as where a file was written.
func (rc *RunContext) Notef(format string, args ...any) {
	rc.Progress.Report(progress.Event{Kind: progress.Message, Phase: rc.Phase, Message: fmt.Sprintf(format, args...)})
}

// State returns a copy of the run state as recorded so far.
func (rc *RunContext) State() *State {
	return rc.x.snapshot()
}

// Output returns what the named phase recorded under key, whatever that phase's status.
// For the running phase it includes what SetOutput recorded during this attempt.
func (rc *RunContext) Output(phase, key string) (string, bool) {
	rc.x.mu.Lock()
	defer rc.x.mu.Unlock()
	if phase == rc.Phase {
		if v, ok := rc.fresh[key]; ok {
			return v, true
		}
		v, ok := rc.previous[key]
		return v, ok
	}
	rec := rc.x.state.Phase(phase)
	if rec == nil {
		return "", false
	}
	v, ok := rec.Outputs[key]
	return v, ok
}

// RequireOutput returns what an earlier phase recorded under key, or an error matching
// ErrMissingOutput that says what is missing when that phase has not succeeded or did not
// record key.
func (rc *RunContext) RequireOutput(phase, key string) (string, error) {
	rc.x.mu.Lock()
	defer rc.x.mu.Unlock()
	rec := rc.x.state.Phase(phase)
	path := StatePath(rc.Dir)
	switch {
	case rec == nil:
		return "", fmt.Errorf("%w: phase %s needs %q from phase %s, which %s does not record; run phase %s first",
			ErrMissingOutput, rc.Phase, key, phase, path, phase)
	case rec.Status != StatusSucceeded:
		return "", fmt.Errorf("%w: phase %s needs %q from phase %s, which is %s in %s; run phase %s first",
			ErrMissingOutput, rc.Phase, key, phase, rec.Status, path, phase)
	}
	v, ok := rec.Outputs[key]
	if !ok {
		return "", fmt.Errorf("%w: phase %s needs %q from phase %s, which recorded no such output in %s",
			ErrMissingOutput, rc.Phase, key, phase, path)
	}
	return v, nil
}

// SetOutput records an output of the running phase and saves the run state at once, so it
// survives even if the process is killed before the phase returns: record what must be torn
// down as soon as it exists. Outputs the phase returns are recorded on top.
func (rc *RunContext) SetOutput(key, value string) error {
	rc.x.mu.Lock()
	defer rc.x.mu.Unlock()
	if rc.finished {
		return fmt.Errorf("phase %s: SetOutput(%q) called after the phase returned", rc.Phase, key)
	}
	rc.fresh[key] = value
	rec := rc.x.state.Phase(rc.Phase)
	rec.Outputs = merge(rc.previous, rc.fresh)
	return rc.x.save()
}
