package progress

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-isatty"
)

// Mode selects how a Printer renders events.
type Mode int

const (
	// ModeAuto picks ModeLive when the output is a terminal and CI is not set to true,
	// ModePlain otherwise.
	ModeAuto Mode = iota
	// ModePlain prints one timestamped line per event, for logs and CI.
	ModePlain
	// ModeLive prints phase and step results as lines and keeps one status line, rewritten
	// in place, showing the current step and how long it has been running.
	ModeLive
)

// String returns the mode's name.
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModePlain:
		return "plain"
	case ModeLive:
		return "live"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// DetectMode returns the mode a Printer writing to w should use: ModeLive when w is a
// terminal, ModePlain when it is not, when CI is true (as set by CI systems) or when TERM is
// "dumb". getenv looks up environment variables; nil means os.Getenv.
func DetectMode(w io.Writer, getenv func(string) string) Mode {
	if getenv == nil {
		getenv = os.Getenv
	}
	if ci, err := strconv.ParseBool(getenv("CI")); err == nil && ci {
		return ModePlain
	}
	if getenv("TERM") == "dumb" {
		return ModePlain
	}
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return ModePlain
	}
	if isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()) {
		return ModeLive
	}
	return ModePlain
}

// PrinterOption configures a Printer.
type PrinterOption func(*Printer)

// WithMode forces a rendering mode instead of detecting one.
func WithMode(m Mode) PrinterOption {
	return func(p *Printer) { p.mode = m }
}

// WithTickInterval sets how often the live line is redrawn (default one second).
func WithTickInterval(d time.Duration) PrinterOption {
	return func(p *Printer) {
		if d > 0 {
			p.tick = d
		}
	}
}

// WithGetenv sets the environment lookup used to detect the mode (default os.Getenv).
func WithGetenv(getenv func(string) string) PrinterOption {
	return func(p *Printer) { p.getenv = getenv }
}

// WithClock sets the time source used for live elapsed times and for events that carry no
// time (default time.Now).
func WithClock(now func() time.Time) PrinterOption {
	return func(p *Printer) {
		if now != nil {
			p.now = now
		}
	}
}

// Printer is a Reporter that renders events for people. It is safe for concurrent use.
// Call Close when the run ends so the live line is cleared and its ticker stopped.
type Printer struct {
	w      io.Writer
	mode   Mode
	tick   time.Duration
	getenv func(string) string
	now    func() time.Time

	mu         sync.Mutex
	phase      string
	phaseStart time.Time
	steps      []liveStep
	lineShown  bool
	frame      int
	ticking    bool
	closed     bool
	stop       chan struct{}
	tickerDone chan struct{}
	// stepErrs are the errors of the failed steps of each phase, so that
	// the phase's end does not print the same error again.
	stepErrs map[string][]string
}

type liveStep struct {
	id    uint64
	phase string
	name  string
	start time.Time
}

// NewPrinter returns a Printer writing to w. Without WithMode, the mode is detected from w
// and the environment (see DetectMode).
func NewPrinter(w io.Writer, opts ...PrinterOption) *Printer {
	p := &Printer{w: w, tick: time.Second, now: time.Now}
	for _, opt := range opts {
		opt(p)
	}
	if p.mode == ModeAuto {
		p.mode = DetectMode(w, p.getenv)
	}
	return p
}

// Mode returns the mode the printer renders in: ModePlain or ModeLive.
func (p *Printer) Mode() Mode { return p.mode }

// Report renders e.
func (p *Printer) Report(e Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Time.IsZero() {
		e.Time = p.now()
	}
	e = p.dedupe(e)
	if p.mode == ModeLive {
		p.reportLive(e)
		return
	}
	if line, ok := plainLine(e); ok {
		_, _ = io.WriteString(p.w, line+"\n")
	}
}

// dedupe drops the error of a failed phase when a failed step of that
// phase already printed it: the phase's line says it failed, the step's
// line says why.
func (p *Printer) dedupe(e Event) Event {
	switch {
	case e.Kind == PhaseStarted:
		delete(p.stepErrs, e.Phase)
	case e.Kind == StepFinished && e.Err != nil:
		if p.stepErrs == nil {
			p.stepErrs = map[string][]string{}
		}
		line, _, _ := strings.Cut(e.Err.Error(), "\n")
		p.stepErrs[e.Phase] = append(p.stepErrs[e.Phase], line)
	case e.Kind == PhaseFinished && e.Err != nil:
		msg := e.Err.Error()
		for _, stepErr := range p.stepErrs[e.Phase] {
			if strings.Contains(msg, stepErr) {
				e.Err = nil
				break
			}
		}
	}
	return e
}

// Close stops the live ticker and clears the live line. Events reported afterwards are
// still printed, without a live line.
func (p *Printer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	ticking := p.ticking
	if ticking {
		close(p.stop)
	}
	p.mu.Unlock()
	if ticking {
		<-p.tickerDone
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLine()
	return nil
}

// plainLine renders one event as a timestamped line; ok is false for events that have no
// line of their own.
func plainLine(e Event) (line string, ok bool) {
	prefix := e.Time.UTC().Format(time.RFC3339) + " [" + e.Phase + "] "
	switch e.Kind {
	case PhaseStarted:
		return prefix + "started", true
	case PhaseFinished:
		return prefix + outcome(e.Status, e.Duration, e.Err, e.Message), true
	case PhaseSkipped:
		return prefix + outcome(StatusSkipped, 0, nil, e.Message), true
	case StepStarted:
		return prefix + e.Step + " ...", true
	case StepFinished:
		status := e.Status
		if status == StatusSucceeded {
			status = "ok"
		}
		return prefix + e.Step + ": " + outcome(status, e.Duration, e.Err, e.Message), true
	case Message:
		return prefix + e.Message, true
	}
	return "", false
}

// outcome renders "failed (3.2s): reason", "ok (1.0s)" or "skipped: reason".
func outcome(status string, d time.Duration, err error, message string) string {
	var b strings.Builder
	b.WriteString(status)
	if status != StatusSkipped {
		b.WriteString(" (" + FormatDuration(d) + ")")
	}
	switch {
	case err != nil:
		b.WriteString(": " + firstLine(err.Error()))
	case message != "":
		b.WriteString(": " + firstLine(message))
	}
	return b.String()
}

// firstLine keeps progress output to one line per event; full errors (panic stacks, for
// example) reach the user through the returned error and the run state.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// FormatDuration renders a duration the way progress output shows it: tenths of a second
// under a minute ("4.2s"), then whole seconds ("3m07s", "1h02m03s").
func FormatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	if d < time.Minute-50*time.Millisecond {
		return fmt.Sprintf("%.1fs", d.Round(100*time.Millisecond).Seconds())
	}
	return formatElapsed(d)
}

// formatElapsed renders whole seconds: "12s", "3m07s", "1h02m03s".
func formatElapsed(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm%02ds", h, m, s)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}

const (
	// clearLine returns the cursor to the start of the line and erases it.
	clearLine = "\r\x1b[2K"
)

var spinnerFrames = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// reportLive updates the live state, prints the event's permanent line if it has one and
// redraws the live line. Callers hold p.mu.
func (p *Printer) reportLive(e Event) {
	var line string
	switch e.Kind {
	case PhaseStarted:
		p.phase, p.phaseStart = e.Phase, e.Time
		line = "▶ " + e.Phase
	case PhaseFinished, PhaseSkipped:
		if p.phase == e.Phase {
			p.phase = ""
		}
		p.dropSteps(func(s liveStep) bool { return s.phase == e.Phase })
		status := e.Status
		if e.Kind == PhaseSkipped {
			status = StatusSkipped
		}
		line = symbol(status) + " " + e.Phase + " " + outcome(status, e.Duration, e.Err, e.Message)
	case StepStarted:
		p.steps = append(p.steps, liveStep{id: e.StepID, phase: e.Phase, name: e.Step, start: e.Time})
	case StepFinished:
		p.dropSteps(func(s liveStep) bool {
			if e.StepID != 0 {
				return s.id == e.StepID
			}
			return s.phase == e.Phase && s.name == e.Step
		})
		status := e.Status
		if status == StatusSucceeded {
			status = "ok"
		}
		line = "  " + symbol(e.Status) + " " + e.Step + " " + outcome(status, e.Duration, e.Err, e.Message)
	case Message:
		line = "  · " + e.Message
	}
	if line != "" {
		p.clearLine()
		_, _ = io.WriteString(p.w, line+"\n")
	}
	p.drawLine()
	if !p.ticking && !p.closed {
		p.ticking = true
		p.stop = make(chan struct{})
		p.tickerDone = make(chan struct{})
		go p.runTicker(p.stop, p.tickerDone)
	}
}

func symbol(status string) string {
	switch status {
	case StatusSucceeded:
		return "✓"
	case StatusFailed:
		return "✗"
	case StatusInterrupted:
		return "■"
	case StatusSkipped:
		return "↷"
	}
	return "·"
}

func (p *Printer) dropSteps(match func(liveStep) bool) {
	kept := p.steps[:0]
	for _, s := range p.steps {
		if !match(s) {
			kept = append(kept, s)
		}
	}
	p.steps = kept
}

func (p *Printer) runTicker(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(p.tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.frame++
			p.drawLine()
			p.mu.Unlock()
		}
	}
}

// drawLine rewrites the live line in place: the most recently started running step (or the
// running phase) and its elapsed time. Callers hold p.mu.
func (p *Printer) drawLine() {
	if p.closed {
		return
	}
	now := p.now()
	var label, suffix string
	switch {
	case len(p.steps) > 0:
		s := p.steps[len(p.steps)-1]
		label = s.phase + " › " + s.name
		suffix = " " + formatElapsed(now.Sub(s.start))
		if more := len(p.steps) - 1; more > 0 {
			suffix += fmt.Sprintf(" (+%d more)", more)
		}
	case p.phase != "":
		label, suffix = p.phase, " "+formatElapsed(now.Sub(p.phaseStart))
	default:
		p.clearLine()
		return
	}
	prefix := spinnerFrames[p.frame%len(spinnerFrames)] + " "
	// A line longer than the terminal wraps, and "\r" would then only rewrite its last
	// row: shorten the label, keeping the elapsed time.
	if width := terminalWidth(p.w); width > 0 {
		room := width - 1 - utf8.RuneCountInString(prefix) - utf8.RuneCountInString(suffix)
		if r := []rune(label); len(r) > room {
			label = strings.TrimRight(string(r[:max(room-1, 0)]), " ") + "…"
		}
	}
	text := prefix + label + suffix
	_, _ = io.WriteString(p.w, clearLine+text)
	p.lineShown = true
}

func (p *Printer) clearLine() {
	if p.lineShown {
		_, _ = io.WriteString(p.w, clearLine)
		p.lineShown = false
	}
}
