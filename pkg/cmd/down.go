package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/pipeline/phases"
	"github.com/kaic-dev/kaic/pkg/provision"
	"github.com/kaic-dev/kaic/pkg/stack"
)

func newDownCommand(o *globalOptions) *cobra.Command {
	var stacksOnly bool
	c := &cobra.Command{
		Use:   "down RUN_DIR",
		Short: "Tear down what a run created, and nothing else",
		Long: `down reads RUN_DIR/state.json and removes what kaic created there: the kind
cluster, or the Cluster API workload (and management) cluster. An adopted
existing cluster is left as it was. --stacks-only uninstalls the stack's
releases in reverse install order and keeps the cluster.`,
		Example: "  kaic down kaic-out/kind-dra\n  kaic down ./run --stacks-only",
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			dir := args[0]
			st, err := pipeline.LoadState(dir)
			if err != nil {
				return err
			}
			if stacksOnly {
				return uninstallStacks(c.Context(), o, dir, st)
			}
			rec := st.Phase(pipeline.PhaseProvision)
			if rec == nil || len(rec.Outputs) == 0 {
				fmt.Fprintf(o.stderr, "%s records no provisioned cluster: nothing to tear down\n", dir)
				return nil
			}
			r, err := loadRunProfile(o, dir, "")
			if err != nil {
				return err
			}
			prov, err := phases.ProvisionerFor(r.Profile, phases.Options{Kubeconfig: o.kubeconfig, Context: o.context})
			if err != nil {
				return err
			}
			return prov.Delete(c.Context(), provision.Record(rec.Outputs), stderrReporter{o})
		},
	}
	c.Flags().BoolVar(&stacksOnly, "stacks-only", false, "uninstall the stack's releases, keep the cluster")
	return c
}

// uninstallStacks removes the releases and manifests the run directory
// records, in reverse install order, from the cluster the run provisioned
// (or --kubeconfig).
func uninstallStacks(ctx context.Context, o *globalOptions, dir string, st *pipeline.State) error {
	records, err := stack.ReadRecords(dir)
	if err != nil {
		if errors.Is(err, stack.ErrNoRecords) {
			fmt.Fprintf(o.stderr, "%s records no stack installation: nothing to uninstall\n", dir)
			return nil
		}
		return err
	}
	// The cluster is --kubeconfig, else the one the install phase recorded
	// using, else the one provisioned in the run directory.
	path, kubeContext := o.kubeconfig, o.context
	for _, phase := range []string{pipeline.PhaseInstall, pipeline.PhaseProvision} {
		if rec := st.Phase(phase); path == "" && rec != nil && rec.Outputs[provision.KeyKubeconfig] != "" {
			path, kubeContext = rec.Outputs[provision.KeyKubeconfig], rec.Outputs[provision.KeyContext]
		}
	}
	if path == "" {
		return usageError("%s records no cluster kubeconfig: pass --kubeconfig", dir)
	}
	kubeconfig, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	in, err := stack.New(stack.WithKubeconfig(kubeconfig, kubeContext), stack.WithLogger(o.logger()), stack.WithReporter(stderrReporter{o}))
	if err != nil {
		return err
	}
	return in.Uninstall(ctx, records)
}

// stderrReporter prints provisioner progress as plain lines.
type stderrReporter struct{ o *globalOptions }

func (r stderrReporter) Step(name string) func(error) {
	fmt.Fprintf(r.o.stderr, "%s ...\n", name)
	return func(err error) {
		if err != nil {
			fmt.Fprintf(r.o.stderr, "%s: failed: %v\n", name, err)
		}
	}
}

func (r stderrReporter) Notef(format string, args ...any) {
	fmt.Fprintf(r.o.stderr, format+"\n", args...)
}
