package kaic

import (
	"context"
	"errors"
	"fmt"

	"github.com/kaic-dev/kaic/pkg/evidence"
	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/progress"
	"github.com/kaic-dev/kaic/pkg/provision"
	"github.com/kaic-dev/kaic/pkg/stack"
)

// DownOptions say what kaic down removes.
type DownOptions struct {
	// Dir is the run directory.
	Dir string
	// StacksOnly uninstalls the stack and keeps the cluster.
	StacksOnly bool
	// Cluster, when set, must name the cluster the run recorded (backend
	// existing); it is refused for a backend that creates its cluster.
	Cluster Target
}

// PhaseDown names down's progress.
const PhaseDown = "down"

// Down removes what the runs in a run directory created, and nothing else:
// the cluster kaic created; on a cluster it did not create (which is left
// as it was), the releases and objects the runs installed, what existed
// before them staying. StacksOnly removes only those releases and objects,
// on any cluster. What it removed is recorded as torn down, so that a
// later resume creates it again.
func (c *Client) Down(ctx context.Context, o DownOptions) error {
	dir, err := OpenExistingRunDir(o.Dir)
	if err != nil {
		return err
	}
	defer dir.Close()
	state, err := dir.State()
	if err != nil {
		return err
	}
	steps := progress.ForPhase(c.progress, PhaseDown)
	r, err := c.runProfile(dir, "")
	if err != nil {
		return err
	}
	if err := checkTarget(r.Profile, o.Cluster); err != nil {
		return err
	}
	if o.StacksOnly {
		return c.uninstallStacks(ctx, dir, state, r.Profile, o.Cluster, steps)
	}
	rec := state.Phase(pipeline.PhaseProvision)
	if rec != nil && rec.Status == pipeline.StatusTornDown {
		steps.Notef("%s records its cluster as torn down already: nothing to tear down", dir.Path())
		return nil
	}
	if rec == nil || len(rec.Outputs) == 0 || rec.Outputs[provision.KeyCreated] != "true" {
		// The cluster is not the run's to delete: what the run installed
		// on it is.
		if inst := state.Phase(pipeline.PhaseInstall); inst != nil && inst.Status != pipeline.StatusTornDown {
			if err := c.uninstallStacks(ctx, dir, state, r.Profile, o.Cluster, steps); err != nil {
				return err
			}
		}
	}
	if rec == nil || len(rec.Outputs) == 0 {
		steps.Notef("%s records no provisioned cluster: nothing more to tear down", dir.Path())
		return nil
	}
	b, err := backendOf(r.Profile)
	if err != nil {
		return err
	}
	runID := rec.Outputs[provision.KeyRunID]
	if runID == "" {
		runID = state.RunID
	}
	prov := b.provisioner(r.Profile, provisionerOptions{runID: runID, getenv: c.getenv})
	if err := prov.Delete(ctx, provision.Record(rec.Outputs), steps); err != nil {
		return err
	}
	if rec.Outputs[provision.KeyCreated] != "true" {
		return nil
	}
	return dir.RecordTeardown(pipeline.PhaseProvision, "the cluster was deleted by kaic down", nil, c.now())
}

// uninstallStacks removes the releases and objects the run directory
// records, in reverse install order, from the run's cluster.
func (c *Client) uninstallStacks(ctx context.Context, dir *RunDir, state *pipeline.State, p *profile.Profile, t Target, steps progress.Steps) error {
	records, err := dir.Releases()
	if err != nil {
		if errors.Is(err, stack.ErrNoRecords) {
			steps.Notef("%s records no stack installation: nothing to uninstall", dir.Path())
			return nil
		}
		return err
	}
	target, err := runCluster(state, dir.Path(), p, t)
	if err != nil {
		return err
	}
	kubeconfig, err := kubeconfigOf(target)
	if err != nil {
		return err
	}
	in, err := stack.New(stack.WithKubeconfig(kubeconfig, target.Context), stack.WithLogger(c.logger), stack.WithProgress(steps), stack.WithRunID(state.RunID))
	if err != nil {
		return err
	}
	if err := in.Uninstall(ctx, records); err != nil {
		return err
	}
	return dir.RecordTeardown(pipeline.PhaseInstall, "the stack was uninstalled by kaic down --stacks-only", nil, c.now())
}

// runProfile loads the profile a run directory was made from, or ref when
// set.
func (c *Client) runProfile(dir *RunDir, ref string) (*profile.Resolved, error) {
	if ref == "" {
		saved, err := dir.SavedProfile()
		if err != nil {
			return nil, err
		}
		ref = saved
	}
	return c.LoadProfile(ref)
}

// ReportOptions say which run's evidence to write.
type ReportOptions struct {
	// Dir is the run directory.
	Dir string
	// Profile replaces the saved profile (e.g. to change product
	// metadata) when set.
	Profile string
}

// Report rewrites a run's evidence from the results its verify phase
// recorded.
func (c *Client) Report(ctx context.Context, o ReportOptions) (*evidence.Written, error) {
	dir, err := OpenExistingRunDir(o.Dir)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	r, err := c.runProfile(dir, o.Profile)
	if err != nil {
		return nil, err
	}
	written, err := c.writeEvidence(ctx, dir, r)
	if err != nil {
		return nil, fmt.Errorf("writing the evidence of %s: %w", dir.Path(), err)
	}
	return written, nil
}
