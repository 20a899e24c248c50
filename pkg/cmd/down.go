package cmd

import (
	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/kaic"
)

func newDownCommand(o *globalOptions) *cobra.Command {
	var stacksOnly bool
	c := &cobra.Command{
		Use:   "down RUN_DIR",
		Short: "Tear down what a run created, and nothing else",
		Long: `down reads RUN_DIR/state.json and removes what kaic created there: the kind
cluster, or the Cluster API workload (and management) cluster, checking first
that it carries the run's id. An adopted existing cluster is left as it was,
and the releases and objects the runs installed on it are removed.
--stacks-only uninstalls, in reverse install order, the releases and objects
the runs installed and keeps the cluster; releases and objects that existed
before the run are left alone.

What down removed is recorded in RUN_DIR/state.json: 'kaic up --resume
RUN_DIR' afterwards creates it again.`,
		Example: "  kaic down kaic-out/kind-dra\n  kaic down ./run --stacks-only",
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			printer, flush := o.progress()
			defer flush()
			return o.client(kaic.WithProgress(printer)).Down(c.Context(), kaic.DownOptions{Dir: args[0], StacksOnly: stacksOnly, Cluster: o.target()})
		},
	}
	c.Flags().BoolVar(&stacksOnly, "stacks-only", false, "uninstall the stack's releases, keep the cluster")
	o.addClusterFlags(c)
	return c
}
