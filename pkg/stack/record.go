package stack

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

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
	// Objects are what a manifests component applied.
	Objects []ObjectRef `json:"objects,omitempty"`
	// Action is what this run did: installed, upgraded, unchanged,
	// applied, failed or not-started.
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
	tmp := filepath.Join(dir, "."+RecordsFileName+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, RecordsFileName))
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
