package cmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/pipeline/phases"
	"github.com/kaic-dev/kaic/pkg/provision"
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
				return provision.NotImplemented("uninstalling stack releases")
			}
			rec := st.Phase(pipeline.PhaseProvision)
			if rec == nil || len(rec.Outputs) == 0 {
				fmt.Fprintf(o.stderr, "%s records no provisioned cluster: nothing to tear down\n", dir)
				return nil
			}
			saved, err := phases.SavedProfile(dir)
			if err != nil {
				return err
			}
			r, err := loadProfile(o, saved)
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
