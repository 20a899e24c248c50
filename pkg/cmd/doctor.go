package cmd

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/kaic"
)

func newDoctorCommand(o *globalOptions) *cobra.Command {
	var (
		profileRef string
		output     string
		out        string
	)
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine can run a profile",
		Long: `doctor checks what the provision phase needs on this machine: a reachable
container runtime, cgroup v2, inotify limits (with the sysctl that fixes
them), free disk, and whether a kind cluster of the same name exists. Each
finding that is not ok says what to do. It also reports what kaic plan would
refuse, such as a Cluster API variable that is not set. It exits 1 when a
finding would stop provisioning.

Profiles that adopt an existing cluster need nothing of this machine; kaic
provision checks the cluster itself.`,
		Example: "  kaic doctor\n  kaic doctor -p kind-nvidia -o json",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			report, err := o.client().Doctor(c.Context(), kaic.DoctorOptions{Profile: profileRef, Dir: out})
			if err != nil {
				return err
			}
			if output != outputTable {
				if err := printStructured(o.stdout, output, report); err != nil {
					return err
				}
			} else if report.Skipped != "" {
				fmt.Fprintln(o.stdout, report.Skipped)
			} else {
				tw := newTable(o.stdout)
				fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
				for _, f := range report.Findings {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Check, f.Status, f.Detail)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				for _, f := range report.Findings {
					if f.Fix != "" {
						fmt.Fprintf(o.stdout, "\n%s: %s", f.Check, f.Fix)
					}
				}
				fmt.Fprintln(o.stdout)
			}
			if report.Failed() {
				return errors.New("this machine cannot run the profile yet: see the failed checks above")
			}
			return nil
		},
	}
	addProfileFlag(c, &profileRef)
	addOutputFlag(c, &output, outputTable)
	c.Flags().StringVar(&out, "out", "", "run directory whose disk is checked (default: the profile's)")
	return c
}
