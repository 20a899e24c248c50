package cmd

import (
	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/provision"
)

func newReportCommand(o *globalOptions) *cobra.Command {
	var cl checklistOptions
	c := &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Regenerate the evidence of a run from its recorded results",
		Long: `report rewrites PRODUCT.yaml, junit.xml, results.json, e2e.log, the
per-test transcripts and report.html of a run directory from the results its
verify phase recorded, e.g. after editing the product metadata.`,
		Example: "  kaic report kaic-out/kind-dra",
		Args:    exactArgs(1),
		RunE: func(*cobra.Command, []string) error {
			return provision.NotImplemented("regenerating evidence from recorded results")
		},
	}
	cl.addFlags(c)
	return c
}
