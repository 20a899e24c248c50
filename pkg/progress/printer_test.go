package progress

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

func TestPlainLines(t *testing.T) {
	tests := []struct {
		name  string
		event Event
		want  string
	}{
		{"phase started", Event{Kind: PhaseStarted, Time: t0, Phase: "provision"},
			"2026-05-01T10:00:00Z [provision] started"},
		{"phase succeeded", Event{Kind: PhaseFinished, Time: t0.Add(42 * time.Second), Phase: "provision", Status: StatusSucceeded, Duration: 42100 * time.Millisecond},
			"2026-05-01T10:00:42Z [provision] succeeded (42.1s)"},
		{"phase failed", Event{Kind: PhaseFinished, Time: t0, Phase: "verify", Status: StatusFailed, Duration: 3*time.Minute + 7*time.Second, Err: errors.New("boom")},
			"2026-05-01T10:00:00Z [verify] failed (3m07s): boom"},
		{"phase interrupted", Event{Kind: PhaseFinished, Time: t0, Phase: "install", Status: StatusInterrupted, Duration: 1500 * time.Millisecond, Err: errors.New("received SIGINT")},
			"2026-05-01T10:00:00Z [install] interrupted (1.5s): received SIGINT"},
		{"phase skipped", Event{Kind: PhaseSkipped, Time: t0, Phase: "provision", Message: "already succeeded"},
			"2026-05-01T10:00:00Z [provision] skipped: already succeeded"},
		{"step started", Event{Kind: StepStarted, Time: t0, Phase: "install", Step: "kueue"},
			"2026-05-01T10:00:00Z [install] kueue ..."},
		{"step ok", Event{Kind: StepFinished, Time: t0, Phase: "install", Step: "kueue", Status: StatusSucceeded, Duration: 250 * time.Millisecond},
			"2026-05-01T10:00:00Z [install] kueue: ok (0.3s)"},
		{"step failed keeps first line", Event{Kind: StepFinished, Time: t0, Phase: "install", Step: "kueue", Status: StatusFailed, Duration: time.Hour + 2*time.Minute + 3*time.Second, Err: errors.New("timed out\ndetails")},
			"2026-05-01T10:00:00Z [install] kueue: failed (1h02m03s): timed out ..."},
		{"step skipped", Event{Kind: StepFinished, Time: t0, Phase: "verify", Step: "gang", Status: StatusSkipped, Message: "N/A"},
			"2026-05-01T10:00:00Z [verify] gang: skipped: N/A"},
		{"message", Event{Kind: Message, Time: t0, Phase: "provision", Message: "kubeconfig written to /run/kubeconfig"},
			"2026-05-01T10:00:00Z [provision] kubeconfig written to /run/kubeconfig"},
		{"local time printed as UTC", Event{Kind: PhaseStarted, Time: t0.In(time.FixedZone("X", 2*3600)), Phase: "report"},
			"2026-05-01T10:00:00Z [report] started"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := NewPrinter(&buf, WithMode(ModePlain))
			p.Report(tt.event)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want+"\n" {
				t.Errorf("got  %q\nwant %q", got, tt.want+"\n")
			}
		})
	}
}

func TestPlainFillsMissingTime(t *testing.T) {
	var buf bytes.Buffer
	p := NewPrinter(&buf, WithMode(ModePlain), WithClock(func() time.Time { return t0 }))
	p.Report(Event{Kind: Message, Phase: "report", Message: "hello"})
	if want := "2026-05-01T10:00:00Z [report] hello\n"; buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0.0s"},
		{-time.Second, "0.0s"},
		{40 * time.Millisecond, "0.0s"},
		{1234 * time.Millisecond, "1.2s"},
		{59900 * time.Millisecond, "59.9s"},
		{59960 * time.Millisecond, "1m00s"},
		{61 * time.Second, "1m01s"},
		{time.Hour, "1h00m00s"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.d); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestDetectMode(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	// Writers that are not terminals always get plain output.
	if got := DetectMode(&bytes.Buffer{}, env()); got != ModePlain {
		t.Errorf("buffer: got %v, want plain", got)
	}
	if got := NewPrinter(&bytes.Buffer{}, WithGetenv(env())).Mode(); got != ModePlain {
		t.Errorf("printer on buffer: got %v, want plain", got)
	}
	if got := NewPrinter(&bytes.Buffer{}, WithMode(ModeLive)).Mode(); got != ModeLive {
		t.Errorf("forced live: got %v", got)
	}
}

// liveOutput runs fn against a live-mode printer and returns what it wrote.
func liveOutput(t *testing.T, fn func(p *Printer, clock *fakeClock)) string {
	t.Helper()
	var buf lockedBuffer
	clock := &fakeClock{now: t0}
	p := NewPrinter(&buf, WithMode(ModeLive), WithClock(clock.Now), WithTickInterval(time.Hour))
	fn(p, clock)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestLiveLines(t *testing.T) {
	out := liveOutput(t, func(p *Printer, clock *fakeClock) {
		p.Report(Event{Kind: PhaseStarted, Time: t0, Phase: "install"})
		p.Report(Event{Kind: StepStarted, Time: t0, Phase: "install", Step: "kueue", StepID: 1})
		clock.Add(12 * time.Second)
		p.Report(Event{Kind: StepStarted, Time: clock.Now(), Phase: "install", Step: "keda", StepID: 2})
		clock.Add(3 * time.Second)
		p.Report(Event{Kind: StepFinished, Time: clock.Now(), Phase: "install", Step: "keda", StepID: 2, Status: StatusSucceeded, Duration: 3 * time.Second})
		p.Report(Event{Kind: StepFinished, Time: clock.Now(), Phase: "install", Step: "kueue", StepID: 1, Status: StatusFailed, Duration: 15 * time.Second, Err: errors.New("not ready")})
		p.Report(Event{Kind: PhaseFinished, Time: clock.Now(), Phase: "install", Status: StatusFailed, Duration: 15 * time.Second, Err: errors.New("kueue: not ready")})
	})
	want := strings.Join([]string{
		// Phase start: a permanent line, then the live line for the phase.
		"▶ install\n", clearLine + "⠋ install 0s",
		// Step starts only change the live line; the newest running step is shown.
		clearLine + "⠋ install › kueue 0s",
		clearLine + "⠋ install › keda 0s (+1 more)",
		// A permanent line first erases the live line, then the live line is redrawn.
		clearLine + "  ✓ keda ok (3.0s)\n", clearLine + "⠋ install › kueue 15s",
		clearLine + "  ✗ kueue failed (15.0s): not ready\n", clearLine + "⠋ install 15s",
		clearLine + "✗ install failed (15.0s)\n",
	}, "")
	if out != want {
		t.Errorf("live output:\ngot  %q\nwant %q", out, want)
	}
}

func TestLiveTickerRewritesElapsed(t *testing.T) {
	var buf lockedBuffer
	clock := &fakeClock{now: t0}
	p := NewPrinter(&buf, WithMode(ModeLive), WithClock(clock.Now), WithTickInterval(5*time.Millisecond))
	p.Report(Event{Kind: PhaseStarted, Time: t0, Phase: "verify"})
	p.Report(Event{Kind: StepStarted, Time: t0, Phase: "verify", Step: "gang scheduling", StepID: 7})
	clock.Add(65 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "verify › gang scheduling 1m05s") {
		if time.Now().After(deadline) {
			t.Fatalf("ticker never redrew the elapsed time; output %q", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.HasSuffix(out, clearLine) {
		t.Errorf("Close should leave the live line cleared; output ends %q", out[max(0, len(out)-40):])
	}
	// After Close no ticker writes any more.
	n := len(buf.String())
	time.Sleep(30 * time.Millisecond)
	if len(buf.String()) != n {
		t.Error("printer kept writing after Close")
	}
}

func TestPrinterConcurrentSteps(t *testing.T) {
	for _, mode := range []Mode{ModePlain, ModeLive} {
		t.Run(mode.String(), func(t *testing.T) {
			var buf lockedBuffer
			p := NewPrinter(&buf, WithMode(mode), WithTickInterval(time.Millisecond))
			p.Report(Event{Kind: PhaseStarted, Phase: "verify"})
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s := StartStep(p, "verify", fmt.Sprintf("check-%02d", i))
					time.Sleep(time.Millisecond)
					s.Done(nil)
					s.Done(errors.New("ignored: a step finishes once"))
				}()
			}
			wg.Wait()
			p.Report(Event{Kind: PhaseFinished, Phase: "verify", Status: StatusSucceeded})
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for i := range 20 {
				if n := strings.Count(out, fmt.Sprintf("check-%02d: ok", i)) + strings.Count(out, fmt.Sprintf("check-%02d ok", i)); n != 1 {
					t.Errorf("check-%02d finished %d times in output, want 1", i, n)
				}
			}
			if strings.Contains(out, "ignored") {
				t.Error("a second Done was reported")
			}
			if p.Mode() == ModeLive && len(p.steps) != 0 {
				t.Errorf("%d steps still tracked as running", len(p.steps))
			}
		})
	}
}

func TestRecorderAndStep(t *testing.T) {
	var rec Recorder
	s := StartStep(&rec, "install", "cert-manager")
	s.Skip("already installed")
	s.Done(nil)
	StartStep(nil, "x", "a nil reporter is allowed").Done(nil)
	ev := rec.Events()
	if len(ev) != 2 {
		t.Fatalf("got %d events, want 2: %+v", len(ev), ev)
	}
	if ev[0].Kind != StepStarted || ev[1].Kind != StepFinished || ev[1].Status != StatusSkipped || ev[1].Message != "already installed" {
		t.Errorf("unexpected events %+v", ev)
	}
	if ev[0].StepID == 0 || ev[0].StepID != ev[1].StepID {
		t.Errorf("step ids %d and %d should be equal and non-zero", ev[0].StepID, ev[1].StepID)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

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

// A phase that fails with the error of one of its steps prints it once, on
// the step's line; an error of the phase's own is still printed.
func TestPhaseFailureDoesNotRepeatTheStepsError(t *testing.T) {
	var buf bytes.Buffer
	p := NewPrinter(&buf, WithMode(ModePlain))
	pull := errors.New(`failed to pull image "kindest/node:v1.37.0": exit status 1`)
	p.Report(Event{Kind: PhaseStarted, Time: t0, Phase: "provision"})
	p.Report(Event{Kind: StepFinished, Time: t0, Phase: "provision", Step: "creating kind cluster", Status: StatusFailed, Err: pull})
	p.Report(Event{Kind: PhaseFinished, Time: t0, Phase: "provision", Status: StatusFailed, Err: fmt.Errorf("creating kind cluster kaic-dra: %w", pull)})
	p.Report(Event{Kind: PhaseStarted, Time: t0, Phase: "install"})
	p.Report(Event{Kind: PhaseFinished, Time: t0, Phase: "install", Status: StatusFailed, Err: errors.New("no cluster recorded")})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if n := strings.Count(out, "failed to pull image"); n != 1 {
		t.Errorf("the step's error is printed %d times:\n%s", n, out)
	}
	if !strings.Contains(out, "[provision] failed (0.0s)\n") {
		t.Errorf("the phase's failure is not printed on its own:\n%s", out)
	}
	if !strings.Contains(out, "[install] failed (0.0s): no cluster recorded") {
		t.Errorf("an error of the phase's own is not printed:\n%s", out)
	}
}
