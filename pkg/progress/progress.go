// Package progress carries what a kaic run is doing to the people watching it: phase and
// step events, a Reporter interface that receives them, a Printer that renders them (a live,
// self-rewriting line on a terminal, timestamped plain lines in logs and CI) and a Recorder
// that keeps them for tests and other code.
//
// Progress is for people; machine-readable run state lives in the pipeline's state.json and
// diagnostics go to log/slog.
package progress

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Kind says what an Event reports.
type Kind int

const (
	// PhaseStarted: a phase began running.
	PhaseStarted Kind = iota + 1
	// PhaseFinished: a phase ended; Status says how and Duration how long it took.
	PhaseFinished
	// PhaseSkipped: a phase was not run (for example, it already succeeded in a resumed run);
	// Message says why.
	PhaseSkipped
	// StepStarted: a step inside a phase began.
	StepStarted
	// StepFinished: a step ended; Status says how and Duration how long it took.
	StepFinished
	// Message: a note for the reader inside a phase, such as where a file was written.
	Message
)

// String returns the kind's name as used in logs.
func (k Kind) String() string {
	switch k {
	case PhaseStarted:
		return "phase-started"
	case PhaseFinished:
		return "phase-finished"
	case PhaseSkipped:
		return "phase-skipped"
	case StepStarted:
		return "step-started"
	case StepFinished:
		return "step-finished"
	case Message:
		return "message"
	}
	return "unknown"
}

// Outcomes carried in Event.Status. Phase outcomes mirror the pipeline's phase statuses.
const (
	StatusSucceeded   = "succeeded"
	StatusFailed      = "failed"
	StatusInterrupted = "interrupted"
	StatusSkipped     = "skipped"
)

// Event is one thing that happened during a run.
type Event struct {
	Kind Kind
	// Time is when it happened; a Reporter fills in the current time when it is zero.
	Time time.Time
	// Phase names the phase the event belongs to.
	Phase string
	// Step names the step, for step events.
	Step string
	// StepID tells concurrent steps apart, even when they share a name.
	StepID uint64
	// Status is the outcome, for PhaseFinished and StepFinished events.
	Status string
	// Duration is how long the phase or step took, for PhaseFinished and StepFinished.
	Duration time.Duration
	// Err is why a phase or step failed or was interrupted.
	Err error
	// Message is the text of a Message event or the reason of a skip.
	Message string
}

// Reporter receives progress events. Implementations must be safe for concurrent use:
// phases report steps from several goroutines at once.
type Reporter interface {
	Report(Event)
}

// ReporterFunc adapts a function to a Reporter. The function must be safe for concurrent use.
type ReporterFunc func(Event)

// Report calls f(e).
func (f ReporterFunc) Report(e Event) { f(e) }

// Discard is a Reporter that drops every event.
var Discard Reporter = ReporterFunc(func(Event) {})

// Recorder is a Reporter that keeps every event it receives, in order. The zero value is
// ready to use.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

// Report appends e.
func (r *Recorder) Report(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Events returns a copy of the events received so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// stepIDs hands out Step identities; a counter is enough since IDs only need to be unique
// within one process.
var stepIDs atomic.Uint64

// Step is one running step of a phase. Finish it with exactly one of Done or Skip; later
// calls are ignored, so `defer step.Done(err)` patterns are safe.
type Step struct {
	reporter Reporter
	phase    string
	name     string
	id       uint64
	start    time.Time
	once     sync.Once
}

// StartStep reports that a step named name began in phase and returns it.
func StartStep(r Reporter, phase, name string) *Step {
	if r == nil {
		r = Discard
	}
	s := &Step{reporter: r, phase: phase, name: name, id: stepIDs.Add(1), start: time.Now()}
	r.Report(Event{Kind: StepStarted, Time: s.start, Phase: phase, Step: name, StepID: s.id})
	return s
}

// Done reports the step finished: succeeded when err is nil, failed otherwise.
func (s *Step) Done(err error) {
	status := StatusSucceeded
	if err != nil {
		status = StatusFailed
	}
	s.finish(status, err, "")
}

// Skip reports the step was not carried out, and why.
func (s *Step) Skip(reason string) {
	s.finish(StatusSkipped, nil, reason)
}

func (s *Step) finish(status string, err error, message string) {
	s.once.Do(func() {
		now := time.Now()
		s.reporter.Report(Event{
			Kind: StepFinished, Time: now, Phase: s.phase, Step: s.name, StepID: s.id,
			Status: status, Duration: now.Sub(s.start), Err: err, Message: message,
		})
	})
}

// Steps is where the parts of a run (a provisioner, the stack installer,
// the check runner) report what they do for people: one step at a time,
// and notes. A pipeline phase's RunContext is one; ForPhase makes one for
// code that runs outside a pipeline (kaic down, kaic images).
type Steps interface {
	// StartStep reports that a step began; finish it with Done or Skip.
	StartStep(name string) *Step
	// Notef reports a note for the reader.
	Notef(format string, args ...any)
}

// ForPhase returns Steps that report to r as part of the named phase.
func ForPhase(r Reporter, phase string) Steps {
	if r == nil {
		r = Discard
	}
	return phaseSteps{r: r, phase: phase}
}

type phaseSteps struct {
	r     Reporter
	phase string
}

func (p phaseSteps) StartStep(name string) *Step { return StartStep(p.r, p.phase, name) }

func (p phaseSteps) Notef(format string, args ...any) {
	p.r.Report(Event{Kind: Message, Phase: p.phase, Message: fmt.Sprintf(format, args...)})
}
