// Package phases builds kaic's pipeline phases (provision, install, verify,
// report) for a resolved profile, wiring each to its backend.
package phases

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks"
	"github.com/kaic-dev/kaic/pkg/evidence"
	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/pipeline/progress"
	"github.com/kaic-dev/kaic/pkg/probe/image"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision"
	"github.com/kaic-dev/kaic/pkg/provision/capi"
	"github.com/kaic-dev/kaic/pkg/provision/existing"
	"github.com/kaic-dev/kaic/pkg/provision/kind"
	"github.com/kaic-dev/kaic/pkg/stack"
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
	// Parallel bounds how many stack components install at once (0: the
	// default); Set holds --set COMPONENT.KEY=VALUE overrides.
	Parallel int
	Set      []string
	// CheckParallel overrides spec.checks.parallel (how many checks run at
	// once) when above zero.
	CheckParallel int
	// Checks are the checks the verify phase can run; nil means the
	// built-in ones.
	Checks *conformance.Registry
	// Checklist says where the official checklist is read from.
	Checklist conformance.Source
	// KaicVersion is recorded in the evidence.
	KaicVersion string
}

// Build returns the pipeline's phases for a resolved profile.
func Build(r *profile.Resolved, opts Options) []pipeline.Phase {
	return []pipeline.Phase{
		{Name: pipeline.PhaseProvision, Run: provisionPhase(r.Profile, opts)},
		{Name: pipeline.PhaseInstall, Run: installPhase(r, opts)},
		{Name: pipeline.PhaseVerify, Run: verifyPhase(r, opts)},
		{Name: pipeline.PhaseReport, Run: reportPhase(r, opts)},
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
		return &capi.Provisioner{Profile: p, Retain: opts.Retain}, nil
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

func installPhase(r *profile.Resolved, opts Options) func(context.Context, *pipeline.RunContext) (pipeline.Outputs, error) {
	return func(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
		if len(r.Components) == 0 {
			return nil, pipeline.SkipPhase("the profile's stack is empty")
		}
		// The cluster is the one provisioned in this run directory, else the
		// one --kubeconfig names: install works against any cluster.
		path, kubeContext := "", ""
		recorded, err := rc.RequireOutput(pipeline.PhaseProvision, provision.KeyKubeconfig)
		switch {
		case err == nil:
			path = recorded
		case opts.Kubeconfig != "":
			if path, err = filepath.Abs(opts.Kubeconfig); err != nil {
				return nil, err
			}
			kubeContext = opts.Context
		default:
			return nil, err
		}
		// Recorded so that kaic down --stacks-only finds the same cluster.
		outputs := pipeline.Outputs{"releases": stack.RecordsFileName, provision.KeyKubeconfig: path, provision.KeyContext: kubeContext}
		kubeconfig, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading the cluster's kubeconfig: %w", err)
		}
		set, err := stack.ParseSet(opts.Set)
		if err != nil {
			return nil, err
		}
		stackOpts := []stack.Option{
			stack.WithKubeconfig(kubeconfig, kubeContext),
			stack.WithOverrides(set),
			stack.WithLogger(rc.Logger),
			stack.WithReporter(reporter{rc}),
		}
		if opts.Parallel > 0 {
			stackOpts = append(stackOpts, stack.WithParallel(opts.Parallel))
		}
		if ref := ProbeImage(r.Profile); ref != "" {
			stackOpts = append(stackOpts, stack.WithEmbeddedChartValues(map[string]any{"image": ref}))
		}
		installer, err := stack.New(stackOpts...)
		if err != nil {
			return nil, err
		}
		records, err := installer.Install(ctx, r.Components)
		if len(records) > 0 {
			if werr := stack.WriteRecords(rc.Dir, records); werr != nil {
				return nil, errors.Join(err, werr)
			}
			rc.Notef("releases recorded in %s", filepath.Join(rc.Dir, stack.RecordsFileName))
		}
		return outputs, err
	}
}

// ProbeImage is the image kaic's own charts run (kaic-fake-gpu's driver is
// `kaic probe dra-driver`): the profile's checks.probeImage, else the probe
// image `kaic probe image` builds from this binary, whose tag is derived
// from the binary's content. "" when neither is known; the chart then says
// its image is required.
func ProbeImage(p *profile.Profile) string {
	if p.Spec.Checks.ProbeImage != "" {
		return p.Spec.Checks.ProbeImage
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		return ""
	}
	return image.Reference(data)
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

// verifyPhase runs the profile's checks against the cluster (the one
// --kubeconfig names, else the one the provision phase recorded), saves
// each result as it completes and writes the evidence. Failed checks make
// it return a *conformance.ChecksFailedError after the evidence is written.
func verifyPhase(r *profile.Resolved, opts Options) func(context.Context, *pipeline.RunContext) (pipeline.Outputs, error) {
	return func(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
		kubeconfig, kubeContext := opts.Kubeconfig, opts.Context
		if kubeconfig == "" {
			var err error
			if kubeconfig, err = rc.RequireOutput(pipeline.PhaseProvision, provision.KeyKubeconfig); err != nil {
				return nil, err
			}
			if kubeContext == "" {
				kubeContext, _ = rc.Output(pipeline.PhaseProvision, provision.KeyContext)
			}
		}
		cfg, err := existing.RESTConfig(kubeconfig, kubeContext)
		if err != nil {
			return nil, fmt.Errorf("cluster of %s: %w", kubeconfig, err)
		}
		env, err := conformance.NewEnv(cfg, r.Profile)
		if err != nil {
			return nil, err
		}
		// Checks run the same probe image kaic's charts run.
		if ref := ProbeImage(r.Profile); ref != "" {
			env.ProbeImage = ref
		}
		catalog, err := conformance.Builtin(r.Profile.Spec.ConformanceVersion)
		if err != nil {
			return nil, err
		}
		registry := opts.Checks
		if registry == nil {
			registry = checks.ForProfile(r.Profile)
		}
		resultsDir := filepath.Join(rc.Dir, conformance.ResultsDirName)
		if err := os.RemoveAll(resultsDir); err != nil {
			return nil, err
		}
		runner := conformance.ForProfile(r.Profile, catalog, registry, *env)
		if opts.CheckParallel > 0 {
			runner.Parallel = opts.CheckParallel
		}
		runner.ResultsDir, runner.Logger = resultsDir, rc.Logger
		var mu sync.Mutex
		steps := map[string]*progress.Step{}
		runner.OnStart = func(req conformance.Requirement) {
			mu.Lock()
			defer mu.Unlock()
			steps[req.ID] = rc.StartStep(req.ID)
		}
		runner.OnResult = func(res conformance.Result) {
			mu.Lock()
			step := steps[res.ID]
			mu.Unlock()
			if step == nil {
				step = rc.StartStep(res.ID)
			}
			switch res.Status {
			case conformance.Failed:
				step.Done(errors.New(res.Reason))
			case conformance.Passed:
				step.Done(nil)
			default:
				step.Skip(string(res.Status) + ": " + res.Reason)
			}
		}
		results, runErr := runner.Run(ctx)
		outputs := pipeline.Outputs{"results": resultsDir}
		written, err := evidence.Regenerate(context.WithoutCancel(ctx), rc.Dir, r.Profile, opts.Checklist, opts.KaicVersion)
		if err != nil {
			return outputs, errors.Join(runErr, fmt.Errorf("writing the evidence: %w", err))
		}
		outputs["evidence"] = written.Dir
		for _, w := range written.Warnings {
			rc.Notef("warning: %s", w)
		}
		rc.Notef("evidence written to %s", written.Dir)
		if runErr != nil {
			return outputs, runErr
		}
		return outputs, conformance.FailedChecks(results)
	}
}

// reportPhase rewrites the evidence from the results the verify phase
// saved.
func reportPhase(r *profile.Resolved, opts Options) func(context.Context, *pipeline.RunContext) (pipeline.Outputs, error) {
	return func(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
		written, err := evidence.Regenerate(ctx, rc.Dir, r.Profile, opts.Checklist, opts.KaicVersion)
		if err != nil {
			return nil, err
		}
		for _, w := range written.Warnings {
			rc.Notef("warning: %s", w)
		}
		rc.Notef("evidence written to %s", written.Dir)
		return pipeline.Outputs{"evidence": written.Dir}, nil
	}
}
