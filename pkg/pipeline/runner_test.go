package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/pkg/progress"
)

var (
	profileA = ProfileRef{Name: "kind-dra", Digest: ProfileDigest([]byte("profile a"))}
	profileB = ProfileRef{Name: "kind-dra", Digest: ProfileDigest([]byte("profile b"))}
)

// stepClock advances one second per reading, so every recorded time differs.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

// fakePipeline builds the four standard phases; each counts its runs and behaves as
// behaviour[name] says (succeeds with an output when absent).
type fakePipeline struct {
	runs      map[string]*atomic.Int32
	behaviour map[string]func(ctx context.Context, rc *RunContext) (Outputs, error)
}

func newFakePipeline() *fakePipeline {
	f := &fakePipeline{runs: map[string]*atomic.Int32{}, behaviour: map[string]func(context.Context, *RunContext) (Outputs, error){}}
	for _, name := range []string{PhaseProvision, PhaseInstall, PhaseVerify, PhaseReport} {
		f.runs[name] = &atomic.Int32{}
	}
	return f
}

func (f *fakePipeline) phases() []Phase {
	var phases []Phase
	for _, name := range []string{PhaseProvision, PhaseInstall, PhaseVerify, PhaseReport} {
		phases = append(phases, Phase{Name: name, Run: func(ctx context.Context, rc *RunContext) (Outputs, error) {
			f.runs[name].Add(1)
			if b := f.behaviour[name]; b != nil {
				return b(ctx, rc)
			}
			return Outputs{name + "-output": "ok"}, nil
		}})
	}
	return phases
}

func (f *fakePipeline) counts() map[string]int {
	c := map[string]int{}
	for name, n := range f.runs {
		c[name] = int(n.Load())
	}
	return c
}

func (f *fakePipeline) runner(dir string, rec *progress.Recorder) *Runner {
	r := &Runner{
		Dir:         dir,
		Phases:      f.phases(),
		KaicVersion: "v0.1.0-test",
		Profile:     profileA,
		Now:         (&stepClock{now: t0}).Now,
	}
	if rec != nil {
		r.Progress = rec
	}
	return r
}

func statuses(s *State) map[string]Status {
	m := map[string]Status{}
	for _, p := range s.Phases {
		m[p.Name] = p.Status
	}
	return m
}

func loadState(t *testing.T, dir string) *State {
	t.Helper()
	s, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRunRecordsEveryPhase(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run") // created by Run
	f := newFakePipeline()
	var rec progress.Recorder
	got, err := f.runner(dir, &rec).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	onDisk := loadState(t, dir)
	if !reflect.DeepEqual(got, onDisk) {
		t.Errorf("returned state differs from state.json:\n%+v\n%+v", got, onDisk)
	}
	if onDisk.KaicVersion != "v0.1.0-test" || onDisk.Profile != profileA || onDisk.SchemaVersion != StateSchemaVersion {
		t.Errorf("run metadata not recorded: %+v", onDisk)
	}
	if !onDisk.Updated.After(onDisk.Created) {
		t.Errorf("updated %v not after created %v", onDisk.Updated, onDisk.Created)
	}
	var names []string
	for _, p := range onDisk.Phases {
		names = append(names, p.Name)
		if p.Status != StatusSucceeded || p.Error != "" {
			t.Errorf("phase %s: status %s error %q", p.Name, p.Status, p.Error)
		}
		if p.Start.IsZero() || !p.End.After(p.Start) || p.Duration != p.End.Sub(p.Start) {
			t.Errorf("phase %s: start %v end %v duration %v", p.Name, p.Start, p.End, p.Duration)
		}
		if p.Outputs[p.Name+"-output"] != "ok" {
			t.Errorf("phase %s: outputs %v", p.Name, p.Outputs)
		}
	}
	if want := []string{PhaseProvision, PhaseInstall, PhaseVerify, PhaseReport}; !reflect.DeepEqual(names, want) {
		t.Errorf("phases recorded %v, want %v", names, want)
	}
	var kinds []string
	for _, e := range rec.Events() {
		kinds = append(kinds, e.Phase+":"+e.Kind.String()+":"+e.Status)
	}
	want := []string{
		"provision:phase-started:", "provision:phase-finished:succeeded",
		"install:phase-started:", "install:phase-finished:succeeded",
		"verify:phase-started:", "verify:phase-finished:succeeded",
		"report:phase-started:", "report:phase-finished:succeeded",
	}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("events %v, want %v", kinds, want)
	}
	assertOnlyFiles(t, dir, LockFileName, StateFileName)
}

var errKueue = errors.New("kueue not ready")

func TestFailedPhaseStopsTheRun(t *testing.T) {
	dir := t.TempDir()
	f := newFakePipeline()
	f.behaviour[PhaseInstall] = func(context.Context, *RunContext) (Outputs, error) {
		return Outputs{"release": "kueue"}, fmt.Errorf("installing: %w", errKueue)
	}
	var rec progress.Recorder
	state, err := f.runner(dir, &rec).Run(context.Background())
	if !errors.Is(err, errKueue) {
		t.Fatalf("error %v does not wrap the phase's error", err)
	}
	if errors.Is(err, ErrInterrupted) {
		t.Error("a failure must not look like an interruption")
	}
	var pe *PhaseError
	if !errors.As(err, &pe) || pe.Phase != PhaseInstall || pe.Status != StatusFailed {
		t.Errorf("error %v is not a failed *PhaseError for install", err)
	}
	if got := err.Error(); got != "phase install failed: installing: kueue not ready" {
		t.Errorf("error text %q", got)
	}
	want := map[string]Status{PhaseProvision: StatusSucceeded, PhaseInstall: StatusFailed, PhaseVerify: StatusPending, PhaseReport: StatusPending}
	for _, s := range []*State{state, loadState(t, dir)} {
		if got := statuses(s); !reflect.DeepEqual(got, want) {
			t.Errorf("statuses %v, want %v", got, want)
		}
		install := s.Phase(PhaseInstall)
		if install.Error != "installing: kueue not ready" || install.Outputs["release"] != "kueue" || install.End.IsZero() {
			t.Errorf("install record %+v", install)
		}
	}
	if c := f.counts(); c[PhaseVerify] != 0 || c[PhaseReport] != 0 {
		t.Errorf("phases after the failure ran: %v", c)
	}
	last := rec.Events()[len(rec.Events())-1]
	if last.Kind != progress.PhaseFinished || last.Status != progress.StatusFailed || !errors.Is(last.Err, errKueue) {
		t.Errorf("last event %+v", last)
	}
}

func TestResumeSkipsSucceededPhases(t *testing.T) {
	for _, failure := range []Status{StatusFailed, StatusInterrupted} {
		t.Run(string(failure), func(t *testing.T) {
			dir := t.TempDir()
			first := newFakePipeline()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			first.behaviour[PhaseVerify] = func(context.Context, *RunContext) (Outputs, error) {
				if failure == StatusInterrupted {
					cancel()
					return nil, context.Canceled
				}
				return nil, errors.New("check failed")
			}
			if _, err := first.runner(dir, nil).Run(ctx); err == nil {
				t.Fatal("first run succeeded")
			}
			if got := loadState(t, dir).Phase(PhaseVerify).Status; got != failure {
				t.Fatalf("verify recorded %s, want %s", got, failure)
			}

			second := newFakePipeline()
			var rec progress.Recorder
			r := second.runner(dir, &rec)
			r.Resume = true
			state, err := r.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got, want := second.counts(), map[string]int{PhaseProvision: 0, PhaseInstall: 0, PhaseVerify: 1, PhaseReport: 1}; !reflect.DeepEqual(got, want) {
				t.Errorf("resume ran %v, want %v", got, want)
			}
			for _, s := range state.Phases {
				if s.Status != StatusSucceeded {
					t.Errorf("phase %s is %s after resume", s.Name, s.Status)
				}
			}
			// The skipped phases keep their first run's record.
			if got := state.Phase(PhaseProvision).Outputs["provision-output"]; got != "ok" {
				t.Errorf("provision outputs lost on resume: %v", state.Phase(PhaseProvision).Outputs)
			}
			var skipped []string
			for _, e := range rec.Events() {
				if e.Kind == progress.PhaseSkipped {
					skipped = append(skipped, e.Phase+": "+e.Message)
				}
			}
			if want := []string{"provision: already succeeded", "install: already succeeded"}; !reflect.DeepEqual(skipped, want) {
				t.Errorf("skip events %v, want %v", skipped, want)
			}
		})
	}
}

func TestResumeRerunsEverythingAfterTheFirstUnfinishedPhase(t *testing.T) {
	dir := t.TempDir()
	s := &State{SchemaVersion: StateSchemaVersion, Profile: profileA, Created: t0, Phases: []PhaseState{
		{Name: PhaseProvision, Status: StatusSucceeded},
		{Name: PhaseInstall, Status: StatusFailed, Error: "boom"},
		{Name: PhaseVerify, Status: StatusSucceeded},
		{Name: PhaseReport, Status: StatusSkipped},
	}}
	if err := SaveState(dir, s); err != nil {
		t.Fatal(err)
	}
	f := newFakePipeline()
	r := f.runner(dir, nil)
	r.Resume = true
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := f.counts(), map[string]int{PhaseProvision: 0, PhaseInstall: 1, PhaseVerify: 1, PhaseReport: 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("resume ran %v, want %v", got, want)
	}
}

func TestResumeAfterTeardownDoesThePhaseAgain(t *testing.T) {
	dir := t.TempDir()
	s := &State{SchemaVersion: StateSchemaVersion, RunID: "20261203-00000001", Profile: profileA, Created: t0, Phases: []PhaseState{
		{Name: PhaseProvision, Status: StatusSucceeded, Outputs: Outputs{"kubeconfig": "k"}},
		{Name: PhaseInstall, Status: StatusTornDown, Error: "the stack was uninstalled by kaic down --stacks-only"},
		{Name: PhaseVerify, Status: StatusSucceeded},
		{Name: PhaseReport, Status: StatusSucceeded},
	}}
	if err := SaveState(dir, s); err != nil {
		t.Fatal(err)
	}
	f := newFakePipeline()
	r := f.runner(dir, nil)
	r.Resume, r.RunID = true, "20261203-00000001"
	got, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c, want := f.counts(), map[string]int{PhaseProvision: 0, PhaseInstall: 1, PhaseVerify: 1, PhaseReport: 1}; !reflect.DeepEqual(c, want) {
		t.Errorf("resume ran %v, want %v", c, want)
	}
	if st := statuses(got); st[PhaseInstall] != StatusSucceeded {
		t.Errorf("statuses %v", st)
	}

	// The directory belongs to its run: another run id is refused.
	r = f.runner(dir, nil)
	r.RunID = "20261203-00000002"
	if _, err := r.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "records run 20261203-00000001") {
		t.Errorf("a run with another id: err = %v", err)
	}
}

func TestRunWithoutResumeRerunsEverything(t *testing.T) {
	dir := t.TempDir()
	f := newFakePipeline()
	for range 2 {
		if _, err := f.runner(dir, nil).Run(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.counts(); got[PhaseProvision] != 2 || got[PhaseReport] != 2 {
		t.Errorf("runs %v, want every phase twice", got)
	}
}

func TestResumeNeedsState(t *testing.T) {
	r := newFakePipeline().runner(t.TempDir(), nil)
	r.Resume = true
	_, err := r.Run(context.Background())
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "cannot resume") {
		t.Errorf("error %v, want a cannot-resume error matching fs.ErrNotExist", err)
	}
}

func TestProfileChangeRefused(t *testing.T) {
	dir := t.TempDir()
	f := newFakePipeline()
	f.behaviour[PhaseInstall] = func(context.Context, *RunContext) (Outputs, error) { return nil, errKueue }
	if _, err := f.runner(dir, nil).Run(context.Background()); !errors.Is(err, errKueue) {
		t.Fatal(err)
	}
	delete(f.behaviour, PhaseInstall)
	before, _ := os.ReadFile(StatePath(dir))

	for _, resume := range []bool{true, false} {
		r := f.runner(dir, nil)
		r.Resume = resume
		r.Profile = profileB
		state, err := r.Run(context.Background())
		if !errors.Is(err, ErrProfileChanged) {
			t.Fatalf("resume=%v: error %v, want ErrProfileChanged", resume, err)
		}
		if state != nil {
			t.Errorf("resume=%v: a refused run returned state", resume)
		}
		for _, want := range []string{StatePath(dir), profileA.Digest, profileB.Digest, "force"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %s", err, want)
			}
		}
	}
	if c := f.counts(); c[PhaseProvision] != 1 || c[PhaseInstall] != 1 {
		t.Errorf("refused runs ran phases: %v", c)
	}
	if after, _ := os.ReadFile(StatePath(dir)); string(after) != string(before) {
		t.Error("refused runs changed state.json")
	}

	r := f.runner(dir, nil)
	r.Resume = true
	r.Profile = profileB
	r.AllowProfileChange = true
	state, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if state.Profile != profileB || loadState(t, dir).Profile != profileB {
		t.Errorf("forced run recorded profile %+v, want %+v", state.Profile, profileB)
	}
}

func TestOnlySelectedPhasesRunAndAreRecorded(t *testing.T) {
	dir := t.TempDir()
	f := newFakePipeline()
	f.behaviour[PhaseInstall] = func(_ context.Context, rc *RunContext) (Outputs, error) {
		kubeconfig, err := rc.RequireOutput(PhaseProvision, "kubeconfig")
		if err != nil {
			return nil, err
		}
		return Outputs{"used": kubeconfig}, nil
	}
	f.behaviour[PhaseProvision] = func(context.Context, *RunContext) (Outputs, error) {
		return Outputs{"kubeconfig": "/tmp/kc"}, nil
	}

	// install alone, before provision ever ran: a clear error, and only install recorded.
	r := f.runner(dir, nil)
	r.Only = []string{PhaseInstall}
	_, err := r.Run(context.Background())
	if !errors.Is(err, ErrMissingOutput) {
		t.Fatalf("error %v, want ErrMissingOutput", err)
	}
	for _, want := range []string{`needs "kubeconfig" from phase provision`, StatePath(dir), "run phase provision first"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := statuses(loadState(t, dir)); !reflect.DeepEqual(got, map[string]Status{PhaseInstall: StatusFailed}) {
		t.Errorf("recorded %v, want install alone", got)
	}

	// provision alone: recorded before install, install's record untouched.
	r.Only = []string{PhaseProvision}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := loadState(t, dir)
	if len(s.Phases) != 2 || s.Phases[0].Name != PhaseProvision || s.Phases[1].Name != PhaseInstall || s.Phases[1].Status != StatusFailed {
		t.Errorf("phases after provision-only run: %+v", s.Phases)
	}

	// Order in Only does not matter; pipeline order does.
	r.Only = []string{PhaseVerify, PhaseInstall}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = loadState(t, dir)
	if got := statuses(s); !reflect.DeepEqual(got, map[string]Status{PhaseProvision: StatusSucceeded, PhaseInstall: StatusSucceeded, PhaseVerify: StatusSucceeded}) {
		t.Errorf("statuses %v", got)
	}
	if s.Phase(PhaseInstall).Outputs["used"] != "/tmp/kc" {
		t.Errorf("install did not read provision's output: %v", s.Phase(PhaseInstall).Outputs)
	}
	if c := f.counts(); c[PhaseReport] != 0 || c[PhaseProvision] != 1 {
		t.Errorf("runs %v", c)
	}
}

func TestInvalidRunner(t *testing.T) {
	noop := func(context.Context, *RunContext) (Outputs, error) { return nil, nil }
	tests := []struct {
		name string
		r    Runner
		want string
	}{
		{"no dir", Runner{Profile: profileA, Phases: []Phase{{Name: "a", Run: noop}}}, "Dir is empty"},
		{"no digest", Runner{Dir: "x", Phases: []Phase{{Name: "a", Run: noop}}}, "Profile.Digest is empty"},
		{"no phases", Runner{Dir: "x", Profile: profileA}, "no phases"},
		{"nameless", Runner{Dir: "x", Profile: profileA, Phases: []Phase{{Run: noop}}}, "Phases[0] has no name"},
		{"twice", Runner{Dir: "x", Profile: profileA, Phases: []Phase{{Name: "a", Run: noop}, {Name: "a", Run: noop}}}, `phase "a" is listed twice`},
		{"no run", Runner{Dir: "x", Profile: profileA, Phases: []Phase{{Name: "a"}}}, `phase "a" has no Run function`},
		{"unknown only", Runner{Dir: "x", Profile: profileA, Phases: []Phase{{Name: "a", Run: noop}, {Name: "b", Run: noop}}, Only: []string{"c"}},
			`unknown phase "c" (phases: a, b)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.r.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestLockContention(t *testing.T) {
	dir := t.TempDir()
	lock, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakePipeline()
	_, err = f.runner(dir, nil).Run(context.Background())
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("error %v, want ErrLocked", err)
	}
	want := fmt.Sprintf("run directory %s is in use by another process (pid %d)", dir, os.Getpid())
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if c := f.counts(); c[PhaseProvision] != 0 {
		t.Error("a phase ran without the lock")
	}
	if _, err := os.Stat(StatePath(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Error("state.json was written without the lock")
	}
	if err := lock.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := lock.Unlock(); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
	if _, err := f.runner(dir, nil).Run(context.Background()); err != nil {
		t.Errorf("run after unlock: %v", err)
	}

	// The runner holds the lock while phases run.
	f.behaviour[PhaseVerify] = func(context.Context, *RunContext) (Outputs, error) {
		_, err := Lock(dir)
		if !errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("locking during a run: got %v, want ErrLocked", err)
		}
		return nil, nil
	}
	if _, err := f.runner(dir, nil).Run(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestPanickingPhaseIsRecordedFailed(t *testing.T) {
	dir := t.TempDir()
	f := newFakePipeline()
	f.behaviour[PhaseInstall] = func(context.Context, *RunContext) (Outputs, error) {
		var m map[string]int
		//lint:ignore SA5000 the phase must panic with a runtime error
		m["kaboom"]++
		return nil, nil
	}
	state, err := f.runner(dir, nil).Run(context.Background())
	var pe *PanicError
	if !errors.As(err, &pe) || pe.Phase != PhaseInstall {
		t.Fatalf("error %v is not a *PanicError for install", err)
	}
	var rt interface{ RuntimeError() }
	if !errors.As(err, &rt) {
		t.Error("the runtime error is not reachable through the panic error")
	}
	for _, s := range []*State{state, loadState(t, dir)} {
		install := s.Phase(PhaseInstall)
		if install.Status != StatusFailed {
			t.Errorf("install is %s, want failed", install.Status)
		}
		for _, want := range []string{"phase install panicked: assignment to entry in nil map", "goroutine ", "runner_test.go"} {
			if !strings.Contains(install.Error, want) {
				t.Errorf("recorded error lacks %q:\n%s", want, install.Error)
			}
		}
		if s.Phase(PhaseVerify).Status != StatusPending {
			t.Errorf("verify is %s after a panic, want pending", s.Phase(PhaseVerify).Status)
		}
	}
}

func TestCancellationInterruptsThePhase(t *testing.T) {
	dir := t.TempDir()
	f := newFakePipeline()
	started := make(chan struct{})
	f.behaviour[PhaseInstall] = func(ctx context.Context, rc *RunContext) (Outputs, error) {
		if err := rc.SetOutput("release", "kueue"); err != nil {
			return nil, err
		}
		close(started)
		<-ctx.Done()
		return nil, fmt.Errorf("waiting for kueue: %w", ctx.Err())
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		<-started
		cancel(&SignalError{Signal: syscall.SIGINT})
	}()
	var rec progress.Recorder
	state, err := f.runner(dir, &rec).Run(ctx)
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("error %v does not match ErrInterrupted", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v does not wrap the phase's error", err)
	}
	const want = "phase install interrupted (received SIGINT): waiting for kueue: context canceled"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	for _, s := range []*State{state, loadState(t, dir)} {
		if got, want := statuses(s), map[string]Status{PhaseProvision: StatusSucceeded, PhaseInstall: StatusInterrupted, PhaseVerify: StatusPending, PhaseReport: StatusPending}; !reflect.DeepEqual(got, want) {
			t.Errorf("statuses %v, want %v", got, want)
		}
		install := s.Phase(PhaseInstall)
		if install.Error != want || install.Outputs["release"] != "kueue" || install.End.IsZero() {
			t.Errorf("install record %+v", install)
		}
	}
	var finished progress.Event
	for _, e := range rec.Events() {
		if e.Kind == progress.PhaseFinished && e.Phase == PhaseInstall {
			finished = e
		}
	}
	if finished.Status != progress.StatusInterrupted || finished.Err == nil || finished.Err.Error() != "received SIGINT" {
		t.Errorf("install finish event %+v", finished)
	}
}

func TestCancellationBetweenPhases(t *testing.T) {
	dir := t.TempDir()
	f := newFakePipeline()
	ctx, cancel := context.WithCancel(context.Background())
	f.behaviour[PhaseProvision] = func(context.Context, *RunContext) (Outputs, error) {
		cancel() // the work is done when the signal arrives
		return Outputs{"cluster": "kaic"}, nil
	}
	_, err := f.runner(dir, nil).Run(ctx)
	if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "before phase install started") {
		t.Fatalf("error %v, want ErrInterrupted before install", err)
	}
	if got := statuses(loadState(t, dir)); got[PhaseProvision] != StatusSucceeded || got[PhaseInstall] != StatusPending {
		t.Errorf("statuses %v", got)
	}
	if c := f.counts(); c[PhaseInstall] != 0 {
		t.Error("install ran after cancellation")
	}
}

func TestDeadlineIsAFailureNotAnInterruption(t *testing.T) {
	f := newFakePipeline()
	f.behaviour[PhaseProvision] = func(ctx context.Context, _ *RunContext) (Outputs, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	// Long enough for provision to start even on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	dir := t.TempDir()
	_, err := f.runner(dir, nil).Run(ctx)
	if err == nil || errors.Is(err, ErrInterrupted) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a failure wrapping context.DeadlineExceeded", err)
	}
	if got := loadState(t, dir).Phase(PhaseProvision).Status; got != StatusFailed {
		t.Errorf("provision is %s, want failed", got)
	}
}

func TestDeadlineBetweenPhases(t *testing.T) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := newFakePipeline().runner(t.TempDir(), nil).Run(ctx)
	if err == nil || errors.Is(err, ErrInterrupted) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v, want a deadline failure that is not an interruption", err)
	}
}

func TestSkippedPhase(t *testing.T) {
	dir := t.TempDir()
	f := newFakePipeline()
	f.behaviour[PhaseVerify] = func(context.Context, *RunContext) (Outputs, error) {
		return nil, SkipPhase("no checks selected")
	}
	var rec progress.Recorder
	if _, err := f.runner(dir, &rec).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := loadState(t, dir)
	if v := s.Phase(PhaseVerify); v.Status != StatusSkipped || v.Error != "no checks selected" {
		t.Errorf("verify record %+v", v)
	}
	if s.Phase(PhaseReport).Status != StatusSucceeded {
		t.Error("the run stopped at a skipped phase")
	}
	r := f.runner(dir, nil)
	r.Resume = true
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c := f.counts(); c[PhaseVerify] != 1 {
		t.Errorf("resume reran a skipped phase: %v", c)
	}
}

func TestOutputs(t *testing.T) {
	dir := t.TempDir()
	f := newFakePipeline()
	attempt := 0
	f.behaviour[PhaseProvision] = func(_ context.Context, rc *RunContext) (Outputs, error) {
		attempt++
		if err := rc.SetOutput("cluster", fmt.Sprintf("kaic-%d", attempt)); err != nil {
			return nil, err
		}
		// Saved at once: a killed process still leaves the cluster's name behind.
		onDisk, err := LoadState(rc.Dir)
		if err != nil {
			return nil, err
		}
		if got := onDisk.Phase(PhaseProvision).Outputs["cluster"]; got != fmt.Sprintf("kaic-%d", attempt) {
			return nil, fmt.Errorf("SetOutput not saved: state.json has cluster=%q", got)
		}
		if v, ok := rc.Output(PhaseProvision, "cluster"); !ok || v != fmt.Sprintf("kaic-%d", attempt) {
			return nil, fmt.Errorf("Output of the running phase = %q, %v", v, ok)
		}
		switch attempt {
		case 1:
			return Outputs{"network": "kind"}, errors.New("nodes not ready")
		case 2:
			return Outputs{"kubeconfig": "/kc"}, errors.New("still not ready")
		}
		return Outputs{"kubeconfig": "/kc"}, nil
	}
	// After failures, outputs of every attempt are kept (things to tear down); a success
	// replaces them with what it recorded.
	want := []Outputs{
		{"cluster": "kaic-1", "network": "kind"},
		{"cluster": "kaic-2", "network": "kind", "kubeconfig": "/kc"},
		{"cluster": "kaic-3", "kubeconfig": "/kc"},
	}
	for i := range 3 {
		_, _ = f.runner(dir, nil).Run(context.Background())
		if got := loadState(t, dir).Phase(PhaseProvision).Outputs; !reflect.DeepEqual(got, want[i]) {
			t.Errorf("after attempt %d outputs %v, want %v", i+1, got, want[i])
		}
	}
}

func TestRunContextConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	f := newFakePipeline()
	var leaked *RunContext
	f.behaviour[PhaseVerify] = func(_ context.Context, rc *RunContext) (Outputs, error) {
		leaked = rc
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				step := rc.StartStep(fmt.Sprintf("check-%d", i))
				if _, err := rc.RequireOutput(PhaseInstall, "install-output"); err != nil {
					errs <- err
				}
				errs <- rc.SetOutput(fmt.Sprintf("check-%d", i), "pass")
				rc.Notef("check %d done", i)
				_ = rc.State()
				step.Done(nil)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	var rec progress.Recorder
	if _, err := f.runner(dir, &rec).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(loadState(t, dir).Phase(PhaseVerify).Outputs); got != 16 {
		t.Errorf("verify recorded %d outputs, want 16", got)
	}
	steps := 0
	for _, e := range rec.Events() {
		if e.Kind == progress.StepFinished && e.Phase == PhaseVerify {
			steps++
		}
	}
	if steps != 16 {
		t.Errorf("%d step events, want 16", steps)
	}
	if err := leaked.SetOutput("late", "x"); err == nil {
		t.Error("SetOutput after the phase returned was accepted")
	}
}

func TestPhaseLeftRunningByADeadProcess(t *testing.T) {
	dir := t.TempDir()
	if err := SaveState(dir, &State{SchemaVersion: StateSchemaVersion, Profile: profileA, Created: t0, Phases: []PhaseState{
		{Name: PhaseProvision, Status: StatusSucceeded},
		{Name: PhaseInstall, Status: StatusRunning, Start: t0},
	}}); err != nil {
		t.Fatal(err)
	}
	f := newFakePipeline()
	f.behaviour[PhaseInstall] = func(_ context.Context, rc *RunContext) (Outputs, error) {
		return nil, errKueue
	}
	r := f.runner(dir, nil)
	r.Resume = true
	r.Only = []string{PhaseProvision} // install is not selected: its record is only repaired
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	install := loadState(t, dir).Phase(PhaseInstall)
	if install.Status != StatusInterrupted || !strings.Contains(install.Error, "exited without recording an outcome") {
		t.Errorf("install record %+v, want interrupted by a dead process", install)
	}
}

func TestCorruptStateStopsTheRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(StatePath(dir), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFakePipeline()
	_, err := f.runner(dir, nil).Run(context.Background())
	if !errors.Is(err, ErrCorruptState) || !strings.Contains(err.Error(), StatePath(dir)) {
		t.Errorf("error %v, want ErrCorruptState naming the file", err)
	}
	if f.counts()[PhaseProvision] != 0 {
		t.Error("a phase ran over a corrupt state")
	}
}
