package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
)

// StateFileName is the name of the run state file inside a run directory.
const StateFileName = "state.json"

// StateSchemaVersion is the version of the state.json layout this package writes. It is
// raised only for changes older readers would misread; adding fields does not raise it.
const StateSchemaVersion = 1

// Status is where a phase stands.
type Status string

// Phase statuses.
const (
	// StatusPending: the phase is selected for this run and has not started.
	StatusPending Status = "pending"
	// StatusRunning: the phase is running, or the process running it died without
	// recording an outcome (a Runner that finds this records it as interrupted).
	StatusRunning Status = "running"
	// StatusSucceeded: the phase finished its work.
	StatusSucceeded Status = "succeeded"
	// StatusFailed: the phase returned an error or panicked; Error says why.
	StatusFailed Status = "failed"
	// StatusInterrupted: the run was cancelled (SIGINT, SIGTERM) while the phase ran.
	StatusInterrupted Status = "interrupted"
	// StatusSkipped: the phase decided it had nothing to do (see SkipPhase); Error says why.
	StatusSkipped Status = "skipped"
	// StatusTornDown: what the phase made was removed afterwards (kaic down); Error says
	// how. A resumed run does the phase again.
	StatusTornDown Status = "torn-down"
)

// valid reports whether s is one of the known statuses.
func (s Status) valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusSucceeded, StatusFailed, StatusInterrupted, StatusSkipped, StatusTornDown:
		return true
	}
	return false
}

// done reports whether a phase in status s has completed its work, so a resumed run may
// skip it.
func (s Status) done() bool { return s == StatusSucceeded || s == StatusSkipped }

// Outputs are the facts a phase records for later phases and for `kaic down`: a kubeconfig
// path, a cluster name, a report path. Keys are chosen by the phase that writes them.
type Outputs map[string]string

// clone returns a copy of o; nil stays nil.
func (o Outputs) clone() Outputs {
	if o == nil {
		return nil
	}
	c := make(Outputs, len(o))
	for k, v := range o {
		c[k] = v
	}
	return c
}

// ProfileRef identifies the profile a run was made from.
type ProfileRef struct {
	// Name is the profile's name (a built-in name or the file's metadata name).
	Name string `json:"name"`
	// Digest is ProfileDigest of the resolved profile bytes.
	Digest string `json:"digest"`
}

// ProfileDigest returns the digest recorded for a resolved profile: "sha256:" followed by
// the hex sha256 of its bytes.
func ProfileDigest(resolved []byte) string {
	sum := sha256.Sum256(resolved)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// State is the content of state.json: what ran in a run directory, how it ended and what
// each phase recorded.
type State struct {
	SchemaVersion int    `json:"schemaVersion"`
	KaicVersion   string `json:"kaicVersion"`
	// RunID is the id everything the runs in this directory create carries
	// (see package ownership). Run directories of older kaic versions have none.
	RunID   string     `json:"runID,omitempty"`
	Profile ProfileRef `json:"profile"`
	Created time.Time  `json:"created"`
	Updated time.Time  `json:"updated"`
	// Phases are in pipeline order; a run of a subset of phases records only those.
	Phases []PhaseState `json:"phases"`
}

// PhaseState is the record of one phase.
type PhaseState struct {
	Name   string    `json:"name"`
	Status Status    `json:"status"`
	Start  time.Time `json:"start,omitzero"`
	End    time.Time `json:"end,omitzero"`
	// Duration is End minus Start; in JSON a Go duration string such as "1m30.5s".
	Duration time.Duration `json:"-"`
	// Error is why the phase failed, was interrupted or skipped.
	Error string `json:"error,omitempty"`
	// Outputs are what the phase recorded. They are replaced when the phase succeeds; after
	// a failure or interruption they also keep what earlier attempts recorded, since what
	// those attempts created may still exist.
	Outputs Outputs `json:"outputs,omitempty"`
}

// phaseStateJSON is PhaseState as stored: the duration as a readable string.
type phaseStateJSON struct {
	phaseStateFields
	Duration string `json:"duration,omitempty"`
}

// phaseStateFields has PhaseState's fields without its methods, so encoding it does not
// recurse into PhaseState's MarshalJSON.
type phaseStateFields PhaseState

// MarshalJSON writes the duration as a Go duration string.
func (p PhaseState) MarshalJSON() ([]byte, error) {
	j := phaseStateJSON{phaseStateFields: phaseStateFields(p)}
	if p.Duration != 0 || !p.End.IsZero() {
		j.Duration = p.Duration.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *PhaseState) UnmarshalJSON(data []byte) error {
	var j phaseStateJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*p = PhaseState(j.phaseStateFields)
	if j.Duration != "" {
		d, err := time.ParseDuration(j.Duration)
		if err != nil {
			return fmt.Errorf("phase %q: duration: %w", p.Name, err)
		}
		p.Duration = d
	}
	return nil
}

// Phase returns the record of the named phase, or nil if the state has none.
func (s *State) Phase(name string) *PhaseState {
	for i := range s.Phases {
		if s.Phases[i].Name == name {
			return &s.Phases[i]
		}
	}
	return nil
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := *s
	c.Phases = make([]PhaseState, len(s.Phases))
	for i, p := range s.Phases {
		p.Outputs = p.Outputs.clone()
		c.Phases[i] = p
	}
	return &c
}

// ErrCorruptState is matched (errors.Is) by errors for a state.json that cannot be read.
var ErrCorruptState = errors.New("corrupt run state")

// ErrUnsupportedStateVersion is matched (errors.Is) by errors for a state.json written with a
// schema version this kaic does not read.
var ErrUnsupportedStateVersion = errors.New("unsupported run state version")

// StateFileError says which state file could not be read and why.
type StateFileError struct {
	Path string
	// Kind is ErrCorruptState or ErrUnsupportedStateVersion.
	Kind error
	// Err is the detail, such as the JSON syntax error.
	Err error
}

func (e *StateFileError) Error() string {
	if errors.Is(e.Kind, ErrUnsupportedStateVersion) {
		return fmt.Sprintf("run state %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("run state %s is corrupt: %v", e.Path, e.Err)
}

// Unwrap returns both the kind and the detail, so errors.Is matches either.
func (e *StateFileError) Unwrap() []error { return []error{e.Kind, e.Err} }

// StatePath returns the path of the state file of run directory dir.
func StatePath(dir string) string { return filepath.Join(dir, StateFileName) }

// LoadState reads the run state of run directory dir. A missing file gives an error
// matching fs.ErrNotExist; a file that is not valid run state gives a *StateFileError
// naming it. LoadState takes no lock: use Lock first when the state is about to be acted on.
func LoadState(dir string) (*State, error) {
	path := StatePath(dir)
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no run state in %s: %w", dir, err)
		}
		return nil, fmt.Errorf("reading run state: %w", err)
	}
	return decodeState(path, data)
}

func decodeState(path string, data []byte) (*State, error) {
	corrupt := func(err error) error { return &StateFileError{Path: path, Kind: ErrCorruptState, Err: err} }
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, corrupt(errors.New("file is empty"))
	}
	// Read the version first: a future layout may not decode into State at all, and the
	// version error is the one that tells the user what to do.
	var version struct {
		SchemaVersion *int `json:"schemaVersion"`
	}
	if err := json.Unmarshal(data, &version); err != nil {
		return nil, corrupt(err)
	}
	switch {
	case version.SchemaVersion == nil:
		return nil, corrupt(errors.New("schemaVersion is missing"))
	case *version.SchemaVersion > StateSchemaVersion:
		return nil, &StateFileError{Path: path, Kind: ErrUnsupportedStateVersion, Err: fmt.Errorf(
			"schema version %d is newer than this kaic reads (%d); use a newer kaic",
			*version.SchemaVersion, StateSchemaVersion)}
	case *version.SchemaVersion < 1:
		return nil, corrupt(fmt.Errorf("schemaVersion %d is not valid", *version.SchemaVersion))
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, corrupt(err)
	}
	seen := make(map[string]bool, len(s.Phases))
	for i, p := range s.Phases {
		switch {
		case p.Name == "":
			return nil, corrupt(fmt.Errorf("phases[%d].name is empty", i))
		case seen[p.Name]:
			return nil, corrupt(fmt.Errorf("phases[%d]: phase %q is recorded twice", i, p.Name))
		case !p.Status.valid():
			return nil, corrupt(fmt.Errorf("phases[%d] (%s): unknown status %q", i, p.Name, p.Status))
		}
		seen[p.Name] = true
	}
	return &s, nil
}

// SaveState writes s as the run state of run directory dir, atomically: readers see either
// the previous file or the new one, never a partial write, even if the process dies midway.
func SaveState(dir string, s *State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding run state: %w", err)
	}
	data = append(data, '\n')
	if err := atomicfile.Write(StatePath(dir), data, 0o644); err != nil {
		return fmt.Errorf("saving run state: %w", err)
	}
	return nil
}
