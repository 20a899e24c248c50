package kaic

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks"
	"github.com/kaic-dev/kaic/pkg/evidence"
	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
	"github.com/kaic-dev/kaic/pkg/provision/existing"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// run is one run of phases in a held run directory: what every phase
// needs besides its context.
type run struct {
	c        *Client
	dir      *RunDir
	runID    string
	resolved *profile.Resolved
	opts     RunOptions
	// probe is the run's probe image.
	probe ProbeImagePlan
}

// phases returns the pipeline's phases for the run.
func (r *run) phases() []pipeline.Phase {
	return []pipeline.Phase{
		{Name: pipeline.PhaseProvision, Run: r.provision},
		{Name: pipeline.PhaseInstall, Run: r.install},
		{Name: pipeline.PhaseVerify, Run: r.verify},
		{Name: pipeline.PhaseReport, Run: r.report},
	}
}

func (r *run) provision(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
	p := r.resolved.Profile
	b, err := backendOf(p)
	if err != nil {
		return nil, err
	}
	images, err := r.c.probeLoad(r.probe)
	if err != nil {
		return nil, err
	}
	prov := b.provisioner(p, provisionerOptions{
		runID:            r.runID,
		getenv:           r.c.getenv,
		target:           adopted(p, r.opts.Cluster),
		retain:           r.opts.Retain,
		exportKubeconfig: r.opts.ExportKubeconfig,
		images:           images,
	})
	rec, err := prov.Create(ctx, provision.Paths{Dir: r.dir.Path(), Kubeconfig: r.dir.Join(KubeconfigFile)}, rc)
	return pipeline.Outputs(rec), err
}

func (r *run) install(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
	if len(r.resolved.Components) == 0 {
		return nil, pipeline.SkipPhase("the profile's stack is empty")
	}
	target, err := runCluster(rc.State(), rc.Dir, r.resolved.Profile, r.opts.Cluster)
	if err != nil {
		return nil, err
	}
	kubeconfig, err := kubeconfigOf(target)
	if err != nil {
		return nil, err
	}
	set, err := stack.ParseSet(r.opts.Set)
	if err != nil {
		return nil, err
	}
	if runsKaicCharts(r.resolved.Components) {
		if err := r.ensureProbeLoaded(ctx, rc); err != nil {
			return nil, err
		}
	}
	// Each component is recorded as it starts and as it ends, so that an
	// interrupted install is torn down whole by kaic down.
	var recordErr error
	var mu sync.Mutex
	stackOpts := []stack.Option{
		stack.WithKubeconfig(kubeconfig, target.Context),
		stack.WithOverrides(set),
		stack.WithLogger(rc.Logger),
		stack.WithProgress(rc),
		stack.WithRunID(r.runID),
		stack.WithAdopt(r.opts.Adopt...),
		stack.WithRecorder(func(rec stack.Record) {
			if err := r.dir.RecordReleases(rec); err != nil {
				mu.Lock()
				recordErr = errors.Join(recordErr, err)
				mu.Unlock()
			}
		}),
	}
	if r.opts.InstallParallel > 0 {
		stackOpts = append(stackOpts, stack.WithParallel(r.opts.InstallParallel))
	}
	stackOpts = append(stackOpts, stack.WithEmbeddedChartValues(map[string]any{"image": r.probe.Ref}))
	installer, err := stack.New(stackOpts...)
	if err != nil {
		return nil, err
	}
	records, err := installer.Install(ctx, r.resolved.Components)
	if len(records) > 0 {
		if werr := r.dir.RecordReleases(records...); werr != nil {
			recordErr = errors.Join(recordErr, werr)
		}
		rc.Notef("releases recorded in %s", r.dir.Join(ReleasesFile))
	}
	if recordErr != nil {
		err = errors.Join(err, fmt.Errorf("recording the releases: %w", recordErr))
	}
	// The cluster installed into, so that kaic down --stacks-only and
	// verify find it on a cluster no provision phase recorded.
	return pipeline.Outputs{"releases": ReleasesFile, provision.KeyKubeconfig: target.Kubeconfig, provision.KeyContext: target.Context}, err
}

// verify runs the profile's checks against the run's cluster, saves each
// result as it completes and writes the evidence. Failed checks make it
// return a *conformance.ChecksFailedError after the evidence is written.
func (r *run) verify(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
	p := r.resolved.Profile
	target, err := runCluster(rc.State(), rc.Dir, p, r.opts.Cluster)
	if err != nil {
		return nil, err
	}
	cfg, err := existing.RESTConfig(target.Kubeconfig, target.Context)
	if err != nil {
		return nil, fmt.Errorf("cluster of %s: %w", describeKubeconfig(target), err)
	}
	env, err := conformance.NewEnv(cfg, p)
	if err != nil {
		return nil, err
	}
	env.RunID = r.runID
	// Checks run the same probe image kaic's charts run.
	env.ProbeImage = r.probe.Ref
	if err := r.ensureProbeLoaded(ctx, rc); err != nil {
		return nil, err
	}
	// A cluster kaic cannot use ends the run here, before any check runs
	// and before any evidence is written.
	summary, dra, err := verifyPreflight(ctx, cfg, p, env.ProbeImage, r.runID, rc)
	if err != nil {
		return nil, err
	}
	env.DRAAPI = dra
	if err := rc.SetOutput("preflight", summary); err != nil {
		return nil, err
	}
	catalog, err := conformance.Builtin(p.Spec.ConformanceVersion)
	if err != nil {
		return nil, err
	}
	registry := r.c.checks
	if registry == nil {
		registry = checks.ForProfile(p)
	}
	resultsDir := r.dir.Join(ResultsDir)
	var keep map[string]conformance.Result
	if r.opts.RerunFailed {
		if keep, err = passedResults(resultsDir); err != nil {
			return nil, err
		}
		rc.Notef("rerunning the checks that did not pass; keeping the results of %d that passed", len(keep))
	}
	if err := os.RemoveAll(resultsDir); err != nil {
		return nil, err
	}
	runner := conformance.ForProfile(p, catalog, registry, *env)
	if r.opts.CheckParallel > 0 {
		runner.Parallel = r.opts.CheckParallel
	}
	if runner.Focus, runner.Skip, err = r.opts.checkSelection(); err != nil {
		return nil, err
	}
	runner.Keep = keep
	runner.ResultsDir, runner.Logger = resultsDir, rc.Logger
	reportChecks(runner, rc)
	results, runErr := runner.Run(ctx)
	outputs := pipeline.Outputs{"results": resultsDir}
	written, err := r.c.writeEvidence(context.WithoutCancel(ctx), r.dir, r.resolved)
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

// passedResults reads the results of the run directory's last verify and
// returns those that passed, by id.
func passedResults(dir string) (map[string]conformance.Result, error) {
	prev, err := conformance.LoadResults(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the earlier results to rerun: %w", err)
	}
	if len(prev) == 0 {
		return nil, fmt.Errorf("%s holds no results of an earlier verify to rerun", dir)
	}
	keep := map[string]conformance.Result{}
	for _, res := range prev {
		if res.Status == conformance.Passed {
			keep[res.ID] = res
		}
	}
	return keep, nil
}

// reportChecks shows each check as a step of the phase.
func reportChecks(runner *conformance.Runner, steps progress.Steps) {
	var mu sync.Mutex
	started := map[string]*progress.Step{}
	runner.OnMissing = func(missing string, ids []string) {
		steps.Notef("preflight: %s; not running %s", missing, strings.Join(ids, ", "))
	}
	runner.OnStart = func(req conformance.Requirement) {
		mu.Lock()
		defer mu.Unlock()
		started[req.ID] = steps.StartStep(req.ID)
	}
	runner.OnResult = func(res conformance.Result) {
		mu.Lock()
		step := started[res.ID]
		mu.Unlock()
		if step == nil {
			step = steps.StartStep(res.ID)
		}
		switch res.Status {
		case conformance.Failed:
			step.Done(errors.New(res.Reason))
		case conformance.Passed:
			step.Done(nil)
		case conformance.NotApplicable:
			step.Skip("N/A: " + res.Reason)
		default:
			step.Skip(res.Reason)
		}
	}
}

// report rewrites the evidence from the results the verify phase saved.
func (r *run) report(ctx context.Context, rc *pipeline.RunContext) (pipeline.Outputs, error) {
	written, err := r.c.writeEvidence(ctx, r.dir, r.resolved)
	if err != nil {
		return nil, err
	}
	for _, w := range written.Warnings {
		rc.Notef("warning: %s", w)
	}
	rc.Notef("evidence written to %s", written.Dir)
	return pipeline.Outputs{"evidence": written.Dir}, nil
}

// writeEvidence writes the evidence of the results a run directory holds.
func (c *Client) writeEvidence(ctx context.Context, dir *RunDir, r *profile.Resolved) (*evidence.Written, error) {
	return evidence.Regenerate(ctx, dir.Path(), r.Profile, c.checklist, c.version, installedComponents(dir, r))
}

// installedComponents are the stack components the run installed (not
// those it found there and left alone), with the capabilities the
// profile's stack says they bring.
func installedComponents(dir *RunDir, r *profile.Resolved) []evidence.Component {
	records, err := dir.Releases()
	if err != nil {
		return nil
	}
	provides := map[string][]string{}
	for _, c := range r.Components {
		provides[c.Name] = c.Provides
	}
	var out []evidence.Component
	for _, rec := range records {
		switch {
		case rec.PreExisting, provides[rec.Component] == nil:
			continue
		case rec.Action != "installed" && rec.Action != "upgraded" && rec.Action != "unchanged" && rec.Action != "applied":
			continue // failed, not started or interrupted
		}
		out = append(out, evidence.Component{Name: rec.Component, Version: rec.Version, Provides: provides[rec.Component]})
	}
	return out
}

func describeKubeconfig(t Target) string {
	if t.Kubeconfig == "" {
		return "the default kubeconfig"
	}
	return t.Kubeconfig
}
