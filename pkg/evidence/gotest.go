package evidence

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// TestEvent is one event of a go test -json stream (the format of
// cmd/test2json).
type TestEvent struct {
	Time    *time.Time `json:",omitempty"`
	Action  string
	Package string   `json:",omitempty"`
	Test    string   `json:",omitempty"`
	Elapsed *float64 `json:",omitempty"`
	Output  *string  `json:",omitempty"`
}

// Events returns the run as the event stream go test -json would print if
// every check were a Go test: one top-level test per requirement,
// subtests as TestX/Sub. Requirements that were not run (N/A, excluded)
// are skipped tests whose output says why.
func Events(run *Run) []TestEvent {
	var evs []TestEvent
	start, end := run.span()
	at := func(t time.Time) *time.Time {
		t = t.UTC()
		return &t
	}
	output := func(t time.Time, test, text string) {
		evs = append(evs, TestEvent{Time: at(t), Action: "output", Package: Package, Test: test, Output: &text})
	}
	evs = append(evs, TestEvent{Time: at(start), Action: "start", Package: Package})
	header := fmt.Sprintf("kaic %s: Kubernetes AI Conformance v%s checks", orDev(run.KaicVersion), run.Version)
	if run.Profile != nil {
		header += fmt.Sprintf(", profile %s, accelerator model %s", run.Profile.Metadata.Name, run.Profile.Spec.Accelerator.Model)
	}
	output(start, "", header+"\n")
	if run.Simulated() {
		output(start, "", run.SimulatedNotice()+"\n")
	}
	failed := false
	for _, res := range run.ordered() {
		if res.Test == nil {
			continue
		}
		failed = failed || res.Test.Status == conformance.Failed
		var runEvents func(tr *conformance.TestRecord)
		runEvents = func(tr *conformance.TestRecord) {
			evs = append(evs, TestEvent{Time: at(tr.Start), Action: "run", Package: Package, Test: tr.Name})
			output(tr.Start, tr.Name, "=== RUN   "+tr.Name+"\n")
			for _, line := range tr.Output {
				output(tr.Start, tr.Name, "    "+strings.ReplaceAll(line, "\n", "\n        ")+"\n")
			}
			for _, s := range tr.Subtests {
				runEvents(s)
			}
		}
		runEvents(res.Test)
		var endEvents func(tr *conformance.TestRecord, depth int)
		endEvents = func(tr *conformance.TestRecord, depth int) {
			action, word := actionOf(tr.Status)
			elapsed := seconds(tr.Duration)
			done := tr.Start.Add(tr.Duration)
			output(done, tr.Name, fmt.Sprintf("%s--- %s: %s (%.2fs)\n", strings.Repeat("    ", depth), word, tr.Name, elapsed))
			evs = append(evs, TestEvent{Time: at(done), Action: action, Package: Package, Test: tr.Name, Elapsed: &elapsed})
			for _, s := range tr.Subtests {
				endEvents(s, depth+1)
			}
		}
		endEvents(res.Test, 0)
	}
	total := seconds(end.Sub(start))
	if failed {
		output(end, "", "FAIL\n")
		output(end, "", fmt.Sprintf("FAIL\t%s\t%.3fs\n", Package, total))
		evs = append(evs, TestEvent{Time: at(end), Action: "fail", Package: Package, Elapsed: &total})
	} else {
		output(end, "", "PASS\n")
		output(end, "", fmt.Sprintf("ok  \t%s\t%.3fs\n", Package, total))
		evs = append(evs, TestEvent{Time: at(end), Action: "pass", Package: Package, Elapsed: &total})
	}
	return evs
}

func actionOf(s conformance.Status) (action, word string) {
	switch s {
	case conformance.Passed:
		return "pass", "PASS"
	case conformance.Failed:
		return "fail", "FAIL"
	default:
		return "skip", "SKIP"
	}
}

// seconds rounds a duration the way go test prints it, to 0.01s.
func seconds(d time.Duration) float64 {
	return math.Round(d.Seconds()*100) / 100
}

func orDev(v string) string {
	if v == "" {
		return "dev"
	}
	return v
}

// ResultsJSON returns results.json: the go test -json stream of the run,
// one event per line.
func ResultsJSON(run *Run) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, ev := range Events(run) {
		if err := enc.Encode(ev); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// E2ELog returns e2e.log: the go test -v text of the run, which is the
// concatenated output of Events.
func E2ELog(run *Run) []byte {
	var buf bytes.Buffer
	for _, ev := range Events(run) {
		if ev.Action == "output" && ev.Output != nil {
			buf.WriteString(*ev.Output)
		}
	}
	return buf.Bytes()
}
