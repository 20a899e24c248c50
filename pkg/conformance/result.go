package conformance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
)

// Status is the outcome of a check or of one of its tests.
type Status string

// The outcomes a result can have. NotApplicable is only given by the
// runner, for requirements the profile opts out of.
const (
	Passed        Status = "pass"
	Failed        Status = "fail"
	Skipped       Status = "skip"
	NotApplicable Status = "N/A"
)

// Result is the outcome of one requirement in a run.
type Result struct {
	ID       string `json:"id"`
	TestName string `json:"testName"`
	Category string `json:"category"`
	Level    Level  `json:"level"`
	Status   Status `json:"status"`
	// Reason says why a check failed or was skipped, or holds the notes of
	// an opt-out. Empty for a pass.
	Reason string `json:"reason,omitempty"`
	// Shown says, in a few phrases, what a passing check showed the
	// platform do (T.Shown), for PRODUCT.yaml's notes.
	Shown []string `json:"shown,omitempty"`
	// Namespace is the namespace the check ran in.
	Namespace string        `json:"namespace,omitempty"`
	Start     time.Time     `json:"start"`
	Duration  time.Duration `json:"duration"`
	// Test is the check's top-level test with its subtests; nil for results
	// given without running a check (N/A, excluded, no check).
	Test *TestRecord `json:"test,omitempty"`
	// Transcript is what the check did and saw, in order.
	Transcript []Entry `json:"transcript,omitempty"`
	// APIRequests counts the requests the check's clients sent to the API
	// server, by verb (get, list, watch, create, update, patch, delete),
	// namespace creation and cleanup included.
	APIRequests map[string]int `json:"apiRequests,omitempty"`
	// Waits counts the check's waits (conformance.StartWait); WaitRequests
	// are the requests other than watches it sent while waiting, over
	// WaitTime. A wait on a watch sends one list; polling sends more.
	Waits        int           `json:"waits,omitempty"`
	WaitRequests int           `json:"waitRequests,omitempty"`
	WaitTime     time.Duration `json:"waitTime,omitempty"`
	// CleanupProblems are what the time-boxed cleanup could not finish,
	// such as a namespace still terminating. They do not change Status.
	CleanupProblems []string `json:"cleanupProblems,omitempty"`
}

// Tests returns the result's top-level test followed by all of its
// subtests, depth first.
func (r Result) Tests() []*TestRecord {
	if r.Test == nil {
		return nil
	}
	var out []*TestRecord
	var walk func(*TestRecord)
	walk = func(tr *TestRecord) {
		out = append(out, tr)
		for _, s := range tr.Subtests {
			walk(s)
		}
	}
	walk(r.Test)
	return out
}

// TestRecord is one test of a check: the check's top-level test (named
// after the requirement, e.g. TestDRASupport) or a subtest of it
// (TestDRASupport/APIServed).
type TestRecord struct {
	// Name is the full name, with subtest names joined by "/".
	Name     string        `json:"name"`
	Status   Status        `json:"status"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	// Output are the lines the test logged, as go test -v prints them
	// (without file:line prefixes).
	Output   []string      `json:"output,omitempty"`
	Subtests []*TestRecord `json:"subtests,omitempty"`
}

// EntryKind classifies a transcript entry.
type EntryKind string

// Transcript entry kinds.
const (
	EntryStep    EntryKind = "step"    // a heading: what the check does next
	EntryLog     EntryKind = "log"     // a line logged with Logf
	EntryApply   EntryKind = "apply"   // an object applied; Body is its manifest
	EntryObserve EntryKind = "observe" // observed state; Body holds the value
	EntryError   EntryKind = "error"   // a failure (Errorf, Fatalf, panic, timeout)
	EntrySkip    EntryKind = "skip"    // a skip with its reason
	EntryCleanup EntryKind = "cleanup" // what cleanup did or could not do
	EntryShown   EntryKind = "shown"   // what the check showed the platform does (T.Shown)
)

// Entry is one line of a check's transcript.
type Entry struct {
	Time time.Time `json:"time"`
	// Test is the full name of the test that recorded the entry.
	Test string    `json:"test"`
	Kind EntryKind `json:"kind"`
	Text string    `json:"text"`
	// Body is a manifest (YAML) or an observed value, shown verbatim.
	Body string `json:"body,omitempty"`
}

// ResultsDirName is the directory of a run directory holding one JSON file
// per finished requirement.
const ResultsDirName = "results"

// SaveResult writes r to dir/<id>.json atomically, so a reader never sees
// a partial file.
func SaveResult(dir string, r Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("saving result of %s: %w", r.ID, err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("saving result of %s: %w", r.ID, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, r.ID+".json"), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("saving result of %s: %w", r.ID, err)
	}
	return nil
}

// LoadResults reads the results saved in dir, sorted by id. A missing
// directory holds no results.
func LoadResults(dir string) ([]Result, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r Result
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("reading result %s: %w", f, err)
		}
		if r.ID == "" || r.ID+".json" != filepath.Base(f) {
			return nil, fmt.Errorf("reading result %s: it holds id %q", f, r.ID)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Result) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// ChecksFailedError is returned when a run completed and some checks
// failed, or some MUST requirements the profile selected were not verified
// (no check for them yet, or the check skipped itself). The CLI exits with
// its own code for it: such a run demonstrates nothing about those
// requirements.
type ChecksFailedError struct {
	// IDs are the failed requirements, in catalog order.
	IDs []string
	// Must counts how many of them are MUST requirements.
	Must int
	// Unverified are the selected MUST requirements that were skipped.
	Unverified []string
}

func (e *ChecksFailedError) Error() string {
	var parts []string
	if len(e.IDs) > 0 {
		parts = append(parts, fmt.Sprintf("%d check(s) failed (%d MUST): %s", len(e.IDs), e.Must, strings.Join(e.IDs, ", ")))
	}
	if len(e.Unverified) > 0 {
		parts = append(parts, fmt.Sprintf("%d MUST requirement(s) not verified: %s", len(e.Unverified), strings.Join(e.Unverified, ", ")))
	}
	return strings.Join(parts, "; ")
}

// Reasons of results the profile deselected; such skips are the user's
// choice, not a gap in the run.
const (
	ReasonNotSelected = "not selected by the profile (spec.checks.include)"
	ReasonExcluded    = "excluded by the profile (spec.checks.exclude)"
	ReasonNotFocused  = "not selected by --focus"
	ReasonSkipFlag    = "skipped by --skip"
)

// Deselected reports whether a result is a skip the user chose (profile
// selection or the command line), not a gap in the run.
func Deselected(r Result) bool {
	if r.Status != Skipped {
		return false
	}
	switch r.Reason {
	case ReasonNotSelected, ReasonExcluded, ReasonNotFocused, ReasonSkipFlag:
		return true
	}
	return false
}

// FailedChecks returns a *ChecksFailedError naming the failed results and
// the selected MUST requirements that were skipped, or nil when there are
// none.
func FailedChecks(results []Result) error {
	e := &ChecksFailedError{}
	for _, r := range results {
		switch {
		case r.Status == Failed:
			e.IDs = append(e.IDs, r.ID)
			if r.Level == Must {
				e.Must++
			}
		case r.Status == Skipped && r.Level == Must && !Deselected(r):
			e.Unverified = append(e.Unverified, r.ID)
		}
	}
	if len(e.IDs) == 0 && len(e.Unverified) == 0 {
		return nil
	}
	return e
}
