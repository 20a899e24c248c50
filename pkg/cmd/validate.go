package cmd

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/evidence"
)

// errSubmissionRejected is returned when a submission would not pass.
var errSubmissionRejected = errors.New("the submission would be rejected")

func newValidateCommand(o *globalOptions) *cobra.Command {
	var (
		opts   evidence.ValidateOptions
		output string
	)
	c := &cobra.Command{
		Use:   "validate RUN_DIR|PRODUCT.yaml",
		Short: "Check a submission offline against the CNCF validator's rules",
		Long: `validate checks PRODUCT.yaml and the test artifacts it references the way
the CNCF submission validator does, without network access (--online also
checks that URLs answer and that vendorName is a CNCF member). The version
comes from the path (v<X.Y>/<product>/PRODUCT.yaml), else from
metadata.kubernetesVersion, with a warning saying so. Evidence from simulated
accelerators is refused unless --allow-simulated is given. Where kaic is
stricter than the CNCF validator (symlinks, file sizes), the message says so;
--cncf-compat turns kaic's own rules into warnings.
It exits 0 only when the submission would pass; -o json gives CI the
findings.`,
		Example: "  kaic validate kaic-out/kind-dra\n  kaic validate v1.37/my-platform/PRODUCT.yaml --online\n  kaic validate v1.37/my-platform -o json",
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			product, err := evidence.FindProduct(args[0])
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			v, err := evidence.Validate(c.Context(), product, opts)
			if err != nil {
				return err
			}
			if output != outputTable {
				if err := printStructured(o.stdout, output, validationReport{Validation: v, OK: v.OK()}); err != nil {
					return err
				}
				if !v.OK() {
					return fmt.Errorf("%s (%s): %w with %d error(s)", product, versionLabel(v.Version), errSubmissionRejected, len(v.Errors))
				}
				return nil
			}
			for _, f := range v.Warnings {
				fmt.Fprintf(o.stdout, "WARNING %s\n", f)
			}
			for _, f := range v.Errors {
				fmt.Fprintf(o.stdout, "ERROR   %s\n", f)
			}
			if !v.OK() {
				return fmt.Errorf("%s (%s): %w with %d error(s)", product, versionLabel(v.Version), errSubmissionRejected, len(v.Errors))
			}
			fmt.Fprintf(o.stdout, "OK %s (%s) would pass, with %d warning(s)\n", product, versionLabel(v.Version), len(v.Warnings))
			return nil
		},
	}
	c.Flags().BoolVar(&opts.Online, "online", false, "also check that every URL answers and that vendorName is a CNCF member")
	c.Flags().BoolVar(&opts.AllowSimulated, "allow-simulated", false, "report evidence from simulated accelerators as a warning instead of an error")
	c.Flags().BoolVar(&opts.CNCFCompat, "cncf-compat", false, "apply exactly the CNCF validator's rules: kaic's own (simulated accelerators, symbolic links) become warnings")
	addOutputFlag(c, &output, outputTable)
	return c
}

// validationReport is kaic validate's structured output.
type validationReport struct {
	*evidence.Validation
	OK bool `json:"ok"`
}

// versionLabel names the conformance version a submission was checked
// against, or says none could be told.
func versionLabel(v string) string {
	if v == "" {
		return "version unknown"
	}
	return "v" + v
}
