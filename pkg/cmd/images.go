package cmd

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/pipeline/phases"
	"github.com/kaic-dev/kaic/pkg/stack"
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
			r, err := loadProfile(o, profileRef)
			if err != nil {
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
			for i, comp := range r.Components {
				path, ok := local[comp.Name]
				if !ok {
					continue
				}
				if comp.Helm == nil {
					return usageError("--chart %s: component %s installs manifests, not a chart", comp.Name, comp.Name)
				}
				h := *comp.Helm
				h.Chart, h.Repo, h.Digest = path, "", ""
				r.Components[i].Helm = &h
				delete(local, comp.Name)
			}
			for name := range local {
				return usageError("--chart %s: the profile has no component %s", name, name)
			}
			overrides, err := stack.ParseSet(set)
			if err != nil {
				return usageError("%v", err)
			}
			opts := []stack.Option{stack.WithOverrides(overrides), stack.WithLogger(o.logger())}
			if ref := phases.ProbeImage(r.Profile); ref != "" {
				opts = append(opts, stack.WithEmbeddedChartValues(map[string]any{"image": ref}))
			}
			if o.kubeconfig != "" {
				data, err := os.ReadFile(o.kubeconfig)
				if err != nil {
					return err
				}
				opts = append(opts, stack.WithKubeconfig(data, o.context))
			}
			in, err := stack.New(opts...)
			if err != nil {
				return err
			}
			images, renderErr := in.Images(c.Context(), r.Components)
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
			if renderErr != nil {
				return fmt.Errorf("some components could not be rendered, their images are missing above: %w", renderErr)
			}
			return nil
		},
	}
	addProfileFlag(c, &profileRef)
	addOutputFlag(c, &output, outputTable)
	c.Flags().StringArrayVar(&charts, "chart", nil, "render COMPONENT from a local chart directory or .tgz instead of its remote chart (COMPONENT=PATH)")
	c.Flags().StringArrayVar(&set, "set", nil, "override a component's value, COMPONENT.KEY=VALUE (Helm --set syntax)")
	return c
}
