package kaic

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/ownership"
	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// Names of what a run directory holds. RunDir is the only code that joins
// them to a directory.
const (
	// StateFile is the run state: phases, their outcomes and outputs.
	StateFile = pipeline.StateFileName
	// ProfileFile is the resolved profile the run was made from, so a
	// resumed run uses exactly what the first one used.
	ProfileFile = "profile.yaml"
	// ReleasesFile lists every stack component the runs in the directory
	// installed, and what existed before them.
	ReleasesFile = "releases.json"
	// ResultsDir holds one result file per check.
	ResultsDir = conformance.ResultsDirName
	// KubeconfigFile is the kubeconfig of the run's cluster (the user's
	// own kubeconfig is never written).
	KubeconfigFile = "kubeconfig"
	// LogsDir holds logs exported from the cluster.
	LogsDir = "logs"
)

// ErrNoProfile is returned when a run directory holds no profile.
var ErrNoProfile = errors.New("run directory holds no " + ProfileFile)

// RunDir is a run directory held by this process: OpenRunDir takes its
// lock before anything is written, and Close releases it. Every file in it
// is written atomically (the file and the directory synced), so a crash
// leaves the old content or the new. Its methods are safe for concurrent
// use.
type RunDir struct {
	path string
	lock *pipeline.DirLock
	mu   sync.Mutex // serialises read-modify-write of releases.json
}

// OpenRunDir creates path if needed and takes its lock without waiting: a
// second process gets a *pipeline.LockedError naming the holder, and
// nothing in the directory has been written by then.
func OpenRunDir(path string) (*RunDir, error) {
	if path == "" {
		return nil, errors.New("no run directory given")
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("creating run directory: %w", err)
	}
	lock, err := pipeline.Lock(path)
	if err != nil {
		return nil, err
	}
	return &RunDir{path: path, lock: lock}, nil
}

// OpenExistingRunDir is OpenRunDir for a directory a run already wrote: it
// fails, creating nothing, when path holds no run state.
func OpenExistingRunDir(path string) (*RunDir, error) {
	if _, err := os.Stat(filepath.Join(path, StateFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &UsageError{Err: fmt.Errorf("%s is not a kaic run directory (no %s): %w", path, StateFile, err)}
		}
		return nil, err
	}
	return OpenRunDir(path)
}

// Close releases the lock.
func (d *RunDir) Close() error { return d.lock.Unlock() }

// Path is the directory.
func (d *RunDir) Path() string { return d.path }

// Join returns the path of name inside the directory.
func (d *RunDir) Join(name ...string) string {
	return filepath.Join(append([]string{d.path}, name...)...)
}

// State reads the run state; an error matching fs.ErrNotExist when no run
// has been recorded yet.
func (d *RunDir) State() (*pipeline.State, error) { return pipeline.LoadState(d.path) }

// SaveState writes the run state.
func (d *RunDir) SaveState(s *pipeline.State) error { return pipeline.SaveState(d.path, s) }

// RunID returns the id of the runs in this directory: the one state.json
// records, else a new one. Everything the runs create carries it.
func (d *RunDir) RunID(now time.Time) (string, error) {
	s, err := d.State()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ownership.NewRunID(now), nil
	case err != nil:
		return "", err
	case s.RunID == "":
		return ownership.NewRunID(now), nil
	}
	return s.RunID, nil
}

// WriteProfile saves the resolved profile.
func (d *RunDir) WriteProfile(r *profile.Resolved) error {
	data, err := r.JSON()
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(data)
	if err != nil {
		return err
	}
	return atomicfile.Write(d.Join(ProfileFile), y, 0o644)
}

// SavedProfile is the path of the saved profile, or an error matching
// ErrNoProfile.
func (d *RunDir) SavedProfile() (string, error) { return savedProfile(d.path) }

func savedProfile(dir string) (string, error) {
	path := filepath.Join(dir, ProfileFile)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s: %w", dir, ErrNoProfile)
		}
		return "", err
	}
	return path, nil
}

// releasesFile is releases.json as stored.
type releasesFile struct {
	Components []stack.Record `json:"components"`
}

// Releases reads releases.json; an error matching stack.ErrNoRecords when
// no install has been recorded.
func (d *RunDir) Releases() ([]stack.Record, error) {
	path := d.Join(ReleasesFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, stack.ErrNoRecords)
	}
	if err != nil {
		return nil, err
	}
	var f releasesFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f.Components, nil
}

// RecordReleases merges records into releases.json: what earlier runs in
// the directory recorded stays, so that kaic down never forgets what one
// of them created.
func (d *RunDir) RecordReleases(records ...stack.Record) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	earlier, err := d.Releases()
	if err != nil && !errors.Is(err, stack.ErrNoRecords) {
		return err
	}
	return d.writeReleases(stack.MergeRecords(earlier, records))
}

// ReplaceReleases writes exactly records (after an uninstall, what is
// left).
func (d *RunDir) ReplaceReleases(records []stack.Record) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writeReleases(records)
}

func (d *RunDir) writeReleases(records []stack.Record) error {
	if records == nil {
		records = []stack.Record{}
	}
	data, err := json.MarshalIndent(releasesFile{Components: records}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(d.Join(ReleasesFile), append(data, '\n'), 0o644)
}

// RecordTeardown marks a phase as torn down in the run state, so that a
// resumed run does it again instead of using what no longer exists.
func (d *RunDir) RecordTeardown(phase, why string, outputs pipeline.Outputs, now time.Time) error {
	s, err := d.State()
	if err != nil {
		return err
	}
	rec := s.Phase(phase)
	if rec == nil {
		return nil
	}
	rec.Status, rec.Error, rec.End, rec.Outputs = pipeline.StatusTornDown, why, now.UTC(), outputs
	s.Updated = now.UTC()
	return d.SaveState(s)
}
