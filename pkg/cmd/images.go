package cmd

import (
	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/provision"
)

func newImagesCommand(o *globalOptions) *cobra.Command {
	var (
		profileRef string
		output     string
	)
	c := &cobra.Command{
		Use:   "images",
		Short: "List every container image a profile's stack would run",
		Long: `images renders every chart of the profile and lists the container images
it would run: the list to mirror for an air-gapped installation.`,
		Example: "  kaic images -p kind-dra\n  kaic images -p kind-dra -o json",
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return provision.NotImplemented("rendering charts to list their images")
		},
	}
	addProfileFlag(c, &profileRef)
	addOutputFlag(c, &output, outputTable)
	return c
}
