// Package phases builds kaic's pipeline phases (provision, install, verify,
// report) for a resolved profile, wiring each to its backend.
package phases

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision"
	"github.com/kaic-dev/kaic/pkg/provision/existing"
	"github.com/kaic-dev/kaic/pkg/provision/kind"
)

// ProfileFileName is the resolved profile a run directory keeps, so that a
// resumed run uses exactly what the first run used.
const ProfileFileName = "profile.yaml"

// Options are command-line settings that override the profile.
type Options struct {
	// Kubeconfig and Context select the cluster of the existing backend.
	Kubeconfig string
	Context    string
	// Retain keeps kind nodes of a failed creation for debugging.
	Retain bool
	// ExportKubeconfig merges a created kind cluster into the user's kubeconfig.
	ExportKubeconfig bool
}

// Build returns the pipeline's phases for a resolved profile.
func Build(r *profile.Resolved, opts Options) []pipeline.Phase {
	return []pipeline.Phase{
		{Name: pipeline.PhaseProvision, Run: provisionPhase(r.Profile, opts)},
		{Name: pipeline.PhaseInstall, Run: installPhase(r)},
		{Name: pipeline.PhaseVerify, Run: notImplemented("running the conformance checks")},
		{Name: pipeline.PhaseReport, Run: notImplemented("writing the evidence (PRODUCT.yaml, junit.xml, results.json, e2e.log)")},
	}
}

// ProvisionerFor returns the backend of a profile.
func ProvisionerFor(p *profile.Profile, opts Options) (provision.Provisioner, error) {
	switch p.Spec.Cluster.Backend {
	case profile.BackendExisting:
		e := p.Spec.Cluster.Existing
		prov := &existing.Provisioner{KubernetesVersion: p.Spec.KubernetesVersion}
		if e != nil {
			prov.Kubeconfig, prov.Context = e.Kubeconfig, e.Context
		}
		if opts.Kubeconfig != "" {
			prov.Kubeconfig = opts.Kubeconfig
		}
		if opts.Context != "" {
			prov.Context = opts.Context
		}
		return prov, nil
	case profile.BackendKind:
		return &kind.Provisioner{Profile: p, Retain: opts.Retain, ExportKubeconfig: opts.ExportKubeconfig}, nil
	case profile.BackendCAPI:
		return nil, provision.NotImplemented("creating Cluster API clusters")
	default:
		return nil, fmt.Errorf("unknown cluster backend %q", p.Spec.Cluster.Backend)
	}
}

func provisionPhase(p *profile.Profile, opts Options) func(context.Context, *pipeline.RunContext) (pipeline.Outputs, error) {
	return func(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
		prov, err := ProvisionerFor(p, opts)
		if err != nil {
			return nil, err
		}
		rec, err := prov.Create(ctx, rc.Dir, reporter{rc})
		return pipeline.Outputs(rec), err
	}
}

func installPhase(r *profile.Resolved) func(context.Context, *pipeline.RunContext) (pipeline.Outputs, error) {
	return func(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
		if len(r.Components) == 0 {
			return nil, pipeline.SkipPhase("the profile's stack is empty")
		}
		return nil, provision.NotImplemented(fmt.Sprintf("installing the %d stack components with the Helm SDK", len(r.Components)))
	}
}

func notImplemented(what string) func(context.Context, *pipeline.RunContext) (pipeline.Outputs, error) {
	return func(context.Context, *pipeline.RunContext) (pipeline.Outputs, error) {
		return nil, provision.NotImplemented(what)
	}
}

// reporter adapts a phase's run context to provision.Reporter.
type reporter struct{ rc *pipeline.RunContext }

func (r reporter) Step(name string) func(error) {
	s := r.rc.StartStep(name)
	return s.Done
}

func (r reporter) Notef(format string, args ...any) { r.rc.Notef(format, args...) }

// WriteProfile saves the resolved profile into the run directory.
func WriteProfile(dir string, r *profile.Resolved) error {
	data, err := r.JSON()
	if err != nil {
		return err
	}
	y, err := yaml.JSONToYAML(data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+ProfileFileName+".tmp")
	if err := os.WriteFile(tmp, y, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, ProfileFileName))
}

// ErrNoProfile is returned when a run directory holds no profile to resume.
var ErrNoProfile = errors.New("run directory holds no " + ProfileFileName)

// SavedProfile is the path of a run directory's resolved profile.
func SavedProfile(dir string) (string, error) {
	path := filepath.Join(dir, ProfileFileName)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s: %w", dir, ErrNoProfile)
		}
		return "", err
	}
	return path, nil
}
