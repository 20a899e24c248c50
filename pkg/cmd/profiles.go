package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/kaic-dev/kaic/pkg/kaic"
)

func newProfilesCommand(o *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "profiles",
		Short: "List and show kaic's built-in profiles",
		Long: `Built-in profiles are complete, runnable profiles embedded in kaic. Use one
by name with -p, or start your own file with "extends: <name>" and override
only what differs.`,
		Example: `  kaic profiles list
  kaic profiles show kind-dra > my-profile.yaml`,
		Args: noArgs,
	}
	c.AddCommand(newProfilesListCommand(o), newProfilesShowCommand(o))
	return c
}

// profileSummary is one row of `kaic profiles list`.
type profileSummary struct {
	Name               string `json:"name"`
	Backend            string `json:"backend"`
	KubernetesVersion  string `json:"kubernetesVersion"`
	ConformanceVersion string `json:"conformanceVersion"`
	Accelerator        string `json:"accelerator"`
	Simulated          bool   `json:"simulated"`
	Components         int    `json:"components"`
	Description        string `json:"description"`
}

func newProfilesListCommand(o *globalOptions) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:     "list",
		Short:   "List the built-in profiles",
		Example: "  kaic profiles list\n  kaic profiles list -o json",
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			l := kaic.NewLoader()
			var rows []profileSummary
			for _, name := range l.BuiltinNames() {
				r, err := l.Load(name)
				if err != nil {
					return fmt.Errorf("built-in profile %s: %w", name, err)
				}
				p := r.Profile
				rows = append(rows, profileSummary{
					Name: name, Backend: string(p.Spec.Cluster.Backend), KubernetesVersion: p.Spec.KubernetesVersion,
					ConformanceVersion: p.Spec.ConformanceVersion, Accelerator: p.Spec.Accelerator.Model, Simulated: p.IsSimulated(),
					Components: len(r.Components), Description: p.Metadata.Description,
				})
			}
			if output != outputTable {
				return printStructured(o.stdout, output, rows)
			}
			tw := newTable(o.stdout)
			fmt.Fprintln(tw, "NAME\tBACKEND\tKUBERNETES\tCONFORMANCE\tACCELERATOR\tCOMPONENTS\tDESCRIPTION")
			for _, r := range rows {
				acc := r.Accelerator
				if r.Simulated {
					acc += " (simulated)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Name, r.Backend, r.KubernetesVersion, r.ConformanceVersion, acc, r.Components, truncate(r.Description, 70))
			}
			return tw.Flush()
		},
	}
	addOutputFlag(c, &output, outputTable)
	return c
}

func newProfilesShowCommand(o *globalOptions) *cobra.Command {
	output := outputYAML
	var resolved bool
	c := &cobra.Command{
		Use:   "show NAME",
		Short: "Print a built-in profile",
		Long: `show prints a built-in profile as it is stored, or with --resolved as a run
uses it: what it extends merged in and every default filled in. -o picks
YAML (the default) or JSON for either.`,
		Example: "  kaic profiles show kind-dra\n  kaic profiles show capi-aws-gpu --resolved -o json",
		Args:    exactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return kaic.NewLoader().BuiltinNames(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(_ *cobra.Command, args []string) error {
			if output != outputYAML && output != outputJSON {
				return usageError("--output must be yaml or json, got %q", output)
			}
			l := kaic.NewLoader()
			if resolved {
				r, err := l.Load(args[0])
				if err != nil {
					return err
				}
				return printStructured(o.stdout, output, r.Profile)
			}
			data, err := l.BuiltinBytes(args[0])
			if err != nil {
				return err
			}
			if output == outputYAML {
				_, err = o.stdout.Write(data)
				return err
			}
			var stored any
			if err := yaml.Unmarshal(data, &stored); err != nil {
				return err
			}
			return printStructured(o.stdout, outputJSON, stored)
		},
	}
	c.Flags().StringVarP(&output, "output", "o", outputYAML, "output format: yaml or json")
	c.Flags().BoolVar(&resolved, "resolved", false, "print the profile as a run uses it: extends merged, defaults filled in")
	return c
}
