package cmd

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/evidence"
	"github.com/kaic-dev/kaic/pkg/kaic"
)

func newReportCommand(o *globalOptions) *cobra.Command {
	var (
		cl          checklistOptions
		profileFile string
	)
	c := &cobra.Command{
		Use:   "report RUN_DIR",
		Short: "Regenerate the evidence of a run from its recorded results",
		Long: `report rewrites PRODUCT.yaml, junit.xml, results.json, e2e.log, the
per-test transcripts and report.html of a run directory from the results its
verify phase recorded (RUN_DIR/results), e.g. after editing the product
metadata in RUN_DIR/profile.yaml. The evidence goes to
RUN_DIR/v<X.Y>/<product-dir>/.`,
		Example: `  kaic report kaic-out/kind-dra
  kaic report ./run -p my-profile.yaml --checklist-dir ./checklists`,
		Args: exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			written, err := o.client(kaic.WithChecklist(cl.source())).Report(c.Context(), kaic.ReportOptions{Dir: args[0], Profile: profileFile})
			if err != nil {
				return err
			}
			for _, w := range written.Warnings {
				fmt.Fprintf(o.stderr, "Warning: %s\n", w)
			}
			fmt.Fprintf(o.stdout, "Evidence written to %s (%d files); check it with: kaic validate %s\n",
				written.Dir, len(written.Files), filepath.Join(written.Dir, evidence.ProductFile))
			return nil
		},
	}
	cl.addFlags(c, o)
	c.Flags().StringVarP(&profileFile, "profile", "p", "", "profile to take product metadata from (default: RUN_DIR/profile.yaml)")
	return c
}
