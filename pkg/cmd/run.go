package cmd

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/pipeline"
)

// runOptions are the flags of the commands that run phases.
type runOptions struct {
	profile          string
	out              string
	resume           string
	force            bool
	retain           bool
	exportKubeconfig bool
	parallel         int
	set              []string
	adopt            []string
	checkParallel    int
	focus, skip      string
	rerunFailed      string
	checklist        checklistOptions
	probeBinary      string
}

// addFlags adds the flags of the command running phase ("" for up, which
// runs them all). --parallel means the concurrency of the command's own
// phase; up, running both, has --install-parallel and --check-parallel.
func (r *runOptions) addFlags(c *cobra.Command, o *globalOptions, phase string) {
	addProfileFlag(c, &r.profile)
	o.addClusterFlags(c)
	c.Flags().StringVar(&r.out, "out", "", "run directory (default: the profile's spec.output.dir, kaic-out/<profile>)")
	all := phase == ""
	if all || phase == pipeline.PhaseProvision {
		c.Flags().BoolVar(&r.retain, "retain", false, "kind: keep the nodes of a cluster whose creation failed, for debugging")
		c.Flags().BoolVar(&r.exportKubeconfig, "export-kubeconfig", false, "kind: also add the cluster to your kubeconfig (by default only <out>/kubeconfig is written)")
	}
	c.Flags().StringVar(&r.probeBinary, "probe-binary", "", "linux kaic binary to build the probe image from for clusters kaic loads it into (default: this kaic; give one cross-built for linux when kaic runs elsewhere)")
	const installHelp = "how many independent stack components install at once"
	const checkHelp = "how many conformance checks run at once (default: the profile's spec.checks.parallel, 0 = all)"
	switch phase {
	case "":
		c.Flags().IntVar(&r.parallel, "install-parallel", 4, installHelp)
		c.Flags().IntVar(&r.checkParallel, "check-parallel", 0, checkHelp)
	case pipeline.PhaseInstall:
		c.Flags().IntVar(&r.parallel, "parallel", 4, installHelp)
	case pipeline.PhaseVerify:
		c.Flags().IntVar(&r.checkParallel, "parallel", 0, checkHelp)
	}
	if all || phase == pipeline.PhaseInstall {
		c.Flags().StringArrayVar(&r.set, "set", nil, "override a component's value, COMPONENT.KEY=VALUE (Helm --set syntax; wins over the profile's values)")
		c.Flags().StringArrayVar(&r.adopt, "adopt", nil, "take over the existing Helm release of stack component NAME, which kaic did not install (by default kaic stops rather than change it)")
	}
	if all || phase == pipeline.PhaseVerify {
		r.checklist.addFlags(c, o)
		c.Flags().StringVar(&r.focus, "focus", "", "run only the checks whose requirement id or test name this regular expression matches (e.g. 'gang|dra_support')")
		c.Flags().StringVar(&r.skip, "skip", "", "do not run the checks whose requirement id or test name this regular expression matches")
	}
	if phase == pipeline.PhaseVerify {
		c.Flags().StringVar(&r.rerunFailed, "rerun-failed", "", "in run directory DIR, run again the checks that did not pass in its last verify and keep the results of those that passed")
	}
	if all {
		c.Flags().StringVar(&r.resume, "resume", "", "continue the run in this directory: phases that succeeded are skipped")
		c.Flags().BoolVar(&r.force, "force", false, "with --resume: continue even if the profile changed since the run started")
	}
}

func newUpCommand(o *globalOptions) *cobra.Command {
	ro := &runOptions{}
	c := &cobra.Command{
		Use:   "up",
		Short: "Provision, install, verify and report: the whole run",
		Long: `up runs every phase of a profile in one run directory:

  provision  create (kind, Cluster API) or adopt (existing) the cluster
  install    install the stack components with Helm, in dependency order
  verify     run the conformance checks the profile selects
  report     write PRODUCT.yaml, junit.xml, results.json, e2e.log and the report

Each phase is recorded in <out>/state.json as it starts and ends. Ctrl-C
interrupts the running phase, records it as interrupted and exits with code
130; 'kaic up --resume <out>' then skips the phases that succeeded and
continues with the rest, using the profile saved in <out>/profile.yaml.`,
		Example: `  kaic up                              # default profile kind-dra, into kaic-out/kind-dra
  kaic up -p my-profile.yaml --out ./run
  kaic up --resume ./run               # after an interruption or a failure`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if ro.resume != "" && ro.out != "" && ro.out != ro.resume {
				return usageError("--out and --resume name different directories")
			}
			profileSet := c.Flags().Changed("profile")
			return runPhases(c.Context(), o, ro, "", profileSet)
		},
	}
	ro.addFlags(c, o, "")
	return c
}

// newPhaseCommand builds provision, install and verify: one phase of the
// pipeline in a run directory.
func newPhaseCommand(o *globalOptions, phase, short, example string) *cobra.Command {
	ro := &runOptions{}
	c := &cobra.Command{
		Use:   phase,
		Short: short,
		Long: fmt.Sprintf(`%s runs only the %s phase, in the same run directory as 'kaic up' (its
state is recorded in <out>/state.json). Later phases find what it recorded
there, e.g. the cluster's kubeconfig.`, phase, phase),
		Example: example,
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runPhases(c.Context(), o, ro, phase, c.Flags().Changed("profile"))
		},
	}
	ro.addFlags(c, o, phase)
	return c
}

// runPhases maps the flags onto the client's run of the selected phases
// (nil: all of them).
func runPhases(ctx context.Context, o *globalOptions, ro *runOptions, only string, profileSet bool) error {
	opts := kaic.RunOptions{
		Profile:            ro.profile,
		Dir:                ro.out,
		AllowProfileChange: ro.force,
		Cluster:            o.target(),
		Retain:             ro.retain,
		ExportKubeconfig:   ro.exportKubeconfig,
		InstallParallel:    ro.parallel,
		Set:                ro.set,
		Adopt:              ro.adopt,
		CheckParallel:      ro.checkParallel,
		Focus:              ro.focus,
		Skip:               ro.skip,
	}
	if ro.rerunFailed != "" {
		if ro.out != "" && ro.out != ro.rerunFailed {
			return usageError("--out and --rerun-failed name different directories")
		}
		opts.Dir, opts.RerunFailed = ro.rerunFailed, true
		if !profileSet {
			opts.Profile = "" // the profile saved in the run directory
		}
	}
	if _, err := regexp.Compile(ro.focus); err != nil {
		return usageError("--focus: %v", err)
	}
	if _, err := regexp.Compile(ro.skip); err != nil {
		return usageError("--skip: %v", err)
	}
	if ro.resume != "" {
		opts.Resume, opts.Dir = true, ro.resume
		if !profileSet {
			opts.Profile = ""
		}
	}
	printer, flush := o.progress()
	defer flush()
	client := o.client(kaic.WithProgress(printer), kaic.WithChecklist(ro.checklist.source()), kaic.WithProbeBinary(ro.probeBinary))
	var res *kaic.RunResult
	var err error
	switch only {
	case "":
		res, err = client.Up(ctx, opts)
	case pipeline.PhaseProvision:
		res, err = client.Provision(ctx, opts)
	case pipeline.PhaseInstall:
		res, err = client.Install(ctx, opts)
	case pipeline.PhaseVerify:
		res, err = client.Verify(ctx, opts)
	default:
		return fmt.Errorf("unknown phase %q", only)
	}
	dir := opts.Dir
	if res != nil {
		dir = res.Dir
	}
	if err != nil {
		var failed *conformance.ChecksFailedError
		if errors.As(err, &failed) {
			fmt.Fprintf(o.stderr, "Run directory: %s\n", dir)
		}
		if errors.Is(err, pipeline.ErrInterrupted) {
			return &ExitError{Code: ExitInterrupted, Err: fmt.Errorf("%w; continue with: kaic up --resume %s", err, dir)}
		}
		var phaseErr *pipeline.PhaseError
		if errors.As(err, &phaseErr) && ExitCode(err) == ExitFailure {
			return fmt.Errorf("%w\nThe run is recorded in %s. Next:\n"+
				"  collect the cluster's logs and events:   kaic logs %s\n"+
				"  continue after a fix, skipping what ran: kaic up --resume %s\n"+
				"  remove what the run created:             kaic down %s", err, dir, dir, dir, dir)
		}
		return err
	}
	if !o.quiet {
		fmt.Fprintf(o.stderr, "Run directory: %s\n", dir)
	}
	return nil
}
