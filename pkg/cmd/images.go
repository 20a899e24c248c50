package cmd

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/kaic"
)

func newImagesCommand(o *globalOptions) *cobra.Command {
	var (
		profileRef string
		output     string
		charts     []string
		set        []string
	)
	c := &cobra.Command{
		Use:   "images",
		Short: "List every container image a profile's stack would run",
		Long: `images renders every chart of the profile and lists the container images
it would run: the list to mirror for an air-gapped installation.

Charts come from where the profile says: OCI registries and chart
repositories need network access (a chart pinned by digest that an earlier
run downloaded is taken from the cache). Without network, point components
at local chart directories or archives with --chart COMPONENT=PATH.

With --kubeconfig the charts render against that cluster's API versions
(a server-side dry run); otherwise with Helm's default capabilities.`,
		Example: "  kaic images -p kind-dra\n  kaic images -p kind-dra -o json\n  kaic images -p kind-dra --chart kueue=./kueue-0.20.0.tgz",
		Args:    noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			local := map[string]string{}
			for _, arg := range charts {
				name, path, ok := strings.Cut(arg, "=")
				if !ok || name == "" || path == "" {
					return usageError("--chart %q: want COMPONENT=PATH", arg)
				}
				local[name] = path
			}
			images, renderErr := o.client().Images(c.Context(), kaic.ImagesOptions{Profile: profileRef, Charts: local, Set: set, Cluster: o.target()})
			if images == nil && renderErr != nil {
				return renderErr
			}
			if output == outputTable {
				w := newTable(o.stdout)
				fmt.Fprintln(w, "IMAGE\tCOMPONENTS")
				for _, img := range images {
					fmt.Fprintf(w, "%s\t%s\n", img.Image, strings.Join(img.Components, ","))
				}
				if err := w.Flush(); err != nil {
					return err
				}
			} else if err := printStructured(o.stdout, output, images); err != nil {
				return err
			}
			return renderErr
		},
	}
	addProfileFlag(c, &profileRef)
	o.addClusterFlags(c)
	addOutputFlag(c, &output, outputTable)
	c.Flags().StringArrayVar(&charts, "chart", nil, "render COMPONENT from a local chart directory or .tgz instead of its remote chart (COMPONENT=PATH)")
	c.Flags().StringArrayVar(&set, "set", nil, "override a component's value, COMPONENT.KEY=VALUE (Helm --set syntax)")
	return c
}
