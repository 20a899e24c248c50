package cmd

import (
	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/provision"
)

func newValidateCommand(o *globalOptions) *cobra.Command {
	var online bool
	c := &cobra.Command{
		Use:   "validate RUN_DIR|PRODUCT.yaml",
		Short: "Check a submission offline against the CNCF validator's rules",
		Long: `validate checks PRODUCT.yaml and the test artifacts it references the way
the CNCF submission validator does, without network access (--online also
checks that URLs answer). It exits 0 only when the submission would pass.`,
		Example: "  kaic validate kaic-out/kind-dra\n  kaic validate v1.37/my-platform/PRODUCT.yaml --online",
		Args:    exactArgs(1),
		RunE: func(*cobra.Command, []string) error {
			return provision.NotImplemented("validating submissions")
		},
	}
	c.Flags().BoolVar(&online, "online", false, "also check that every URL answers")
	return c
}
