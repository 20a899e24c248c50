package kaic

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"

	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// RunOptions are the settings of a run: Up runs every phase with them,
// Provision, Install and Verify one phase each.
type RunOptions struct {
	// Profile is a built-in profile name or a file ("" for the default
	// profile). When resuming, it replaces the saved profile only if set.
	Profile string
	// Dir is the run directory; "" uses the profile's spec.output.dir.
	// Resuming needs it.
	Dir string
	// Resume continues the run recorded in Dir with the profile saved
	// there: phases that succeeded are skipped.
	Resume bool
	// AllowProfileChange continues a run whose profile changed since it
	// started.
	AllowProfileChange bool
	// Cluster names the existing cluster to adopt (backend existing only).
	Cluster Target
	// Retain keeps kind nodes of a failed creation for debugging.
	Retain bool
	// ExportKubeconfig merges a created kind cluster into the user's
	// kubeconfig.
	ExportKubeconfig bool
	// InstallParallel bounds how many stack components install at once
	// (0: the default).
	InstallParallel int
	// Set holds COMPONENT.KEY=VALUE value overrides.
	Set []string
	// Adopt names stack components whose existing Helm release, which kaic
	// did not install, kaic may take over.
	Adopt []string
	// CheckParallel overrides spec.checks.parallel when above zero.
	CheckParallel int
	// Focus and Skip, regular expressions matched against requirement ids
	// and test names, narrow the checks the profile selects: only those
	// Focus matches run, and none that Skip matches.
	Focus, Skip string
	// RerunFailed runs again only the checks that did not pass in the run
	// directory's last verify and keeps the results of those that passed;
	// without Profile it uses the profile saved in the run directory.
	RerunFailed bool
}

// checkSelection compiles Focus and Skip.
func (o RunOptions) checkSelection() (focus, skip *regexp.Regexp, err error) {
	compile := func(flag, expr string) (*regexp.Regexp, error) {
		if expr == "" {
			return nil, nil
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("%s %q is not a regular expression: %w", flag, expr, err)
		}
		return re, nil
	}
	if focus, err = compile("focus", o.Focus); err != nil {
		return nil, nil, err
	}
	skip, err = compile("skip", o.Skip)
	return focus, skip, err
}

// RunResult is where a run went.
type RunResult struct {
	// Dir is the run directory.
	Dir string
	// State is the run state as recorded at the end; nil when the run
	// could not start.
	State *pipeline.State
}

// Up provisions, installs, verifies and reports: the whole run.
func (c *Client) Up(ctx context.Context, o RunOptions) (*RunResult, error) {
	return c.runPhases(ctx, o, nil)
}

// Provision creates (kind, Cluster API) or adopts (existing) the cluster.
func (c *Client) Provision(ctx context.Context, o RunOptions) (*RunResult, error) {
	return c.runPhases(ctx, o, []string{pipeline.PhaseProvision})
}

// Install installs the profile's stack into the run's cluster.
func (c *Client) Install(ctx context.Context, o RunOptions) (*RunResult, error) {
	return c.runPhases(ctx, o, []string{pipeline.PhaseInstall})
}

// Verify runs the checks against the run's cluster and writes the
// evidence. Failed checks give a *conformance.ChecksFailedError.
func (c *Client) Verify(ctx context.Context, o RunOptions) (*RunResult, error) {
	return c.runPhases(ctx, o, []string{pipeline.PhaseVerify})
}

// runPhases holds the run directory for the whole run: its lock is taken
// before anything in it is written, and no other kaic process can use the
// directory until the run ends.
func (c *Client) runPhases(ctx context.Context, o RunOptions, only []string) (*RunResult, error) {
	if o.Resume && o.Dir == "" {
		return nil, errors.New("resuming needs the run directory")
	}
	if _, _, err := o.checkSelection(); err != nil {
		return nil, err
	}
	var r *profile.Resolved
	var err error
	if o.RerunFailed && o.Profile == "" {
		// A rerun repeats checks of the run in Dir, with its profile.
		if o.Dir == "" {
			return nil, errors.New("rerunning the failed checks needs the run directory")
		}
		if o.Profile, err = savedProfile(o.Dir); err != nil {
			return nil, err
		}
	}
	if !o.Resume {
		// The profile says where the run directory is and whether a
		// --kubeconfig is acceptable: both are known before the
		// directory is touched.
		if r, err = c.LoadProfile(o.Profile); err != nil {
			return nil, err
		}
		if err := checkTarget(r.Profile, o.Cluster); err != nil {
			return nil, err
		}
		if o.Dir == "" {
			o.Dir = r.Profile.Spec.Output.Dir
		}
	}
	dir, err := OpenRunDir(o.Dir)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	res := &RunResult{Dir: dir.Path()}

	_, stateErr := dir.State()
	switch {
	case o.Resume && stateErr != nil:
		return res, fmt.Errorf("cannot resume %s: %w", dir.Path(), stateErr)
	case stateErr != nil && !errors.Is(stateErr, fs.ErrNotExist):
		return res, stateErr
	}
	if o.Resume {
		ref := o.Profile
		if ref == "" {
			if ref, err = dir.SavedProfile(); err != nil {
				return res, err
			}
		}
		if r, err = c.LoadProfile(ref); err != nil {
			return res, err
		}
		if err := checkTarget(r.Profile, o.Cluster); err != nil {
			return res, err
		}
	}
	// A run whose cluster's nodes could run no probe image stops here,
	// before anything touches the cluster.
	// A development build without a published image matters only to the
	// phases that run the image; any other problem (a binary that cannot
	// be the image) stops every run.
	probe, err := c.probeImage(r.Profile)
	if err != nil && (needsProbe(only, r.Components) || !errors.As(err, new(*ProbeImageError))) {
		return res, err
	}
	runID, err := dir.RunID(c.now())
	if err != nil {
		return res, err
	}
	// A new run, or a phase run again without --resume, records the
	// profile it uses; a resumed run keeps the one it started with.
	if !o.Resume || errors.Is(stateErr, fs.ErrNotExist) {
		if err := dir.WriteProfile(r); err != nil {
			return res, fmt.Errorf("saving the profile in %s: %w", dir.Path(), err)
		}
	}
	ru := &run{c: c, dir: dir, runID: runID, resolved: r, opts: o, probe: probe}
	runner := &pipeline.Runner{
		Dir:                dir.Path(),
		Phases:             ru.phases(),
		Only:               only,
		Resume:             o.Resume,
		AllowProfileChange: o.AllowProfileChange,
		KaicVersion:        c.version,
		RunID:              runID,
		LockHeld:           true,
		Profile:            pipeline.ProfileRef{Name: r.Profile.Metadata.Name, Digest: "sha256:" + r.Digest},
		Progress:           c.progress,
		Logger:             c.logger,
	}
	res.State, err = runner.Run(ctx)
	return res, err
}

// needsProbe says whether the phases run (all when only is empty) use the
// probe image: verify's checks run it, and install runs kaic's own charts
// with it.
func needsProbe(only []string, components []profile.Component) bool {
	all := len(only) == 0
	if all || slices.Contains(only, pipeline.PhaseVerify) {
		return true
	}
	return (all || slices.Contains(only, pipeline.PhaseInstall)) && runsKaicCharts(components)
}

// runsKaicCharts says whether a stack installs one of kaic's own charts,
// which run the probe image.
func runsKaicCharts(components []profile.Component) bool {
	return slices.ContainsFunc(components, func(c profile.Component) bool {
		return c.Helm != nil && strings.HasPrefix(c.Helm.Chart, profile.EmbeddedChartScheme)
	})
}
