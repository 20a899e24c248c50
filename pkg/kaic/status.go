package kaic

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"time"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/pipeline"
)

// RunStatus is what a run directory says about its run: the phases and the
// results of the checks recorded so far. It is read without the directory's
// lock, so it can be taken while a run is going.
type RunStatus struct {
	Dir     string                `json:"dir"`
	RunID   string                `json:"runID,omitempty"`
	Profile string                `json:"profile,omitempty"`
	Updated time.Time             `json:"updated"`
	Phases  []pipeline.PhaseState `json:"phases"`
	// Checks are the results recorded so far, in the checklist's order when
	// the checklist is known.
	Checks []CheckStatus `json:"checks"`
	// Counts counts Checks by status.
	Counts map[conformance.Status]int `json:"counts"`
	// Verdict is why the checks recorded so far do not show the selected
	// requirements met (failed checks, unverified MUSTs); "" when they do.
	Verdict string `json:"verdict,omitempty"`
	failed  error
}

// CheckStatus is one recorded check result, without its transcript.
type CheckStatus struct {
	ID       string             `json:"id"`
	TestName string             `json:"testName"`
	Level    conformance.Level  `json:"level"`
	Status   conformance.Status `json:"status"`
	Reason   string             `json:"reason,omitempty"`
	Start    time.Time          `json:"start"`
	Duration time.Duration      `json:"duration"`
}

// Err is the verdict as an error: a *conformance.ChecksFailedError when
// checks failed or selected MUST requirements were not verified, else nil.
func (s *RunStatus) Err() error { return s.failed }

// Status reads the state and the recorded check results of the run in dir.
func (c *Client) Status(dir string) (*RunStatus, error) {
	st, err := pipeline.LoadState(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &UsageError{Err: fmt.Errorf("%s is not a kaic run directory (no %s)", dir, pipeline.StateFileName)}
	}
	if err != nil {
		return nil, err
	}
	s := &RunStatus{Dir: dir, RunID: st.RunID, Profile: st.Profile.Name, Updated: st.Updated, Phases: st.Phases,
		Counts: map[conformance.Status]int{}}
	results, err := conformance.LoadResults(filepath.Join(dir, ResultsDir))
	if err != nil {
		return nil, err
	}
	// In the checklist's order, as the evidence lists them.
	if saved, err := savedProfile(dir); err == nil {
		if r, err := NewLoader().Load(saved); err == nil {
			if cat, err := conformance.Builtin(r.Profile.Spec.ConformanceVersion); err == nil {
				order := map[string]int{}
				for i, req := range cat.Requirements {
					order[req.ID] = i
				}
				slices.SortStableFunc(results, func(a, b conformance.Result) int { return order[a.ID] - order[b.ID] })
			}
		}
	}
	for _, r := range results {
		s.Checks = append(s.Checks, CheckStatus{ID: r.ID, TestName: r.TestName, Level: r.Level, Status: r.Status,
			Reason: r.Reason, Start: r.Start, Duration: r.Duration})
		s.Counts[r.Status]++
	}
	if s.failed = conformance.FailedChecks(results); s.failed != nil {
		s.Verdict = s.failed.Error()
	}
	return s, nil
}
