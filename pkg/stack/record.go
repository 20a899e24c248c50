package stack

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kaic-dev/kaic/pkg/atomicfile"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// RecordsFileName is the file in the run directory that lists what the
// install phase installed.
const RecordsFileName = "releases.json"

// Kinds of component.
const (
	KindHelm      = "helm"
	KindManifests = "manifests"
)

// Actions a record reports.
const (
	ActionInstalled  = "installed"
	ActionUpgraded   = "upgraded"
	ActionUnchanged  = "unchanged"
	ActionApplied    = "applied"
	ActionFailed     = "failed"
	ActionNotStarted = "not-started"
	// ActionStarted is the action of a component still installing (or
	// whose install was interrupted).
	ActionStarted = "started"
)

// Record is what was installed for one component.
type Record struct {
	Component string   `json:"component"`
	Kind      string   `json:"kind"`
	DependsOn []string `json:"dependsOn,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	// Release, Chart (the reference as declared), ChartName, Version and
	// Digest (sha256 of the chart archive) describe a Helm release;
	// Revision is its revision after this run.
	Release   string `json:"release,omitempty"`
	Chart     string `json:"chart,omitempty"`
	Source    string `json:"source,omitempty"`
	ChartName string `json:"chartName,omitempty"`
	Version   string `json:"version,omitempty"`
	Digest    string `json:"digest,omitempty"`
	Revision  int    `json:"revision,omitempty"`
	// Objects are what a manifests component applied, and the objects it
	// found already there and left alone (PreExisting).
	Objects []ObjectRef `json:"objects,omitempty"`
	// RunID is the id of the run that recorded the component; what the
	// run created carries it as the ownership.RunIDLabel label.
	RunID string `json:"runID,omitempty"`
	// PreExisting says a Helm release of the component's name was there
	// before, not installed by this run, and was left alone (the install
	// stopped on it); Owner says who its labels name.
	PreExisting bool `json:"preExisting,omitempty"`
	// Adopted says the release was there before, installed by Owner, and
	// was taken over (adopt): from then on it is the run's own.
	Adopted bool   `json:"adopted,omitempty"`
	Owner   string `json:"owner,omitempty"`
	// Action is what this run did: installed, upgraded, unchanged,
	// applied, failed, not-started, or started (interrupted).
	Action   string    `json:"action"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Duration string    `json:"duration,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// ObjectRef names an applied object.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	// PreExisting says the object existed before the apply and was not
	// the run's: it was neither changed nor will it be deleted. Owner
	// says who its labels name.
	PreExisting bool   `json:"preExisting,omitempty"`
	Owner       string `json:"owner,omitempty"`
}

// sameObject reports whether a and b name the same object.
func (o ObjectRef) sameObject(b ObjectRef) bool {
	return o.APIVersion == b.APIVersion && o.Kind == b.Kind && o.Namespace == b.Namespace && o.Name == b.Name
}

// Created reports whether the run created (or had taken over) what r
// records: a release it installed or adopted, or objects it applied. A
// release that was there before and left alone is not the run's.
func (r Record) Created() bool {
	return !r.PreExisting || r.Adopted
}

// MergeRecords returns earlier with each record of now replacing the
// earlier record of its component, so that a later run in the same
// directory never forgets what an earlier one created: the objects an
// earlier record created stay listed when the new record lacks them (its
// apply stopped early or did not start), and a release adopted earlier
// stays marked adopted.
func MergeRecords(earlier, now []Record) []Record {
	out := append([]Record(nil), earlier...)
	for _, r := range now {
		i := slices.IndexFunc(out, func(e Record) bool { return e.Component == r.Component })
		if i < 0 {
			out = append(out, r)
			continue
		}
		out[i] = mergeRecord(out[i], r)
	}
	return out
}

func mergeRecord(old, r Record) Record {
	if old.Adopted && !r.Adopted && !r.PreExisting && old.Release == r.Release && old.Namespace == r.Namespace {
		r.Adopted, r.Owner = true, old.Owner
	}
	var kept []ObjectRef
	for _, o := range old.Objects {
		if o.PreExisting || slices.ContainsFunc(r.Objects, o.sameObject) {
			continue
		}
		kept = append(kept, o)
	}
	if len(kept) > 0 {
		r.Objects = append(kept, r.Objects...)
	}
	return r
}

func (o ObjectRef) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

func newRecord(c profile.Component) Record {
	r := Record{Component: c.Name, DependsOn: c.DependsOn, Namespace: c.Namespace}
	if c.Helm != nil {
		r.Kind = KindHelm
		r.Release = c.ReleaseName()
		r.Chart = c.Helm.Chart
		if c.Helm.Repo != "" {
			r.Chart = c.Helm.Repo + " " + c.Helm.Chart
		}
		r.Version = c.ChartVersion()
		r.Digest = c.Helm.Digest
	} else {
		r.Kind = KindManifests
		r.Version = c.Version
	}
	return r
}

// recordsFile is the on-disk form of the records.
type recordsFile struct {
	Components []Record `json:"components"`
}

// WriteRecords saves records into dir/releases.json, replacing it
// atomically.
func WriteRecords(dir string, records []Record) error {
	data, err := json.MarshalIndent(recordsFile{Components: records}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, RecordsFileName), append(data, '\n'), 0o644)
}

// ErrNoRecords is returned when a run directory records no installation.
var ErrNoRecords = errors.New("no stack installation recorded")

// ReadRecords loads dir/releases.json.
func ReadRecords(dir string) ([]Record, error) {
	path := filepath.Join(dir, RecordsFileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrNoRecords)
	}
	if err != nil {
		return nil, err
	}
	var f recordsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f.Components, nil
}

func schemaGVK(r ObjectRef) schema.GroupVersionKind {
	return schema.FromAPIVersionAndKind(r.APIVersion, r.Kind)
}
