package cmd

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/kaic"
)

// DefaultProfile is the profile commands use without -p.
const DefaultProfile = kaic.DefaultProfile

// addProfileFlag adds -p/--profile with completion of built-in names.
func addProfileFlag(c *cobra.Command, target *string) {
	c.Flags().StringVarP(target, "profile", "p", DefaultProfile, "built-in profile name or profile file")
	_ = c.RegisterFlagCompletionFunc("profile", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return kaic.NewLoader().BuiltinNames(), cobra.ShellCompDirectiveDefault
	})
}

type planOptions struct {
	profile string
	output  string
	strict  bool
}

func newPlanCommand(o *globalOptions) *cobra.Command {
	po := &planOptions{}
	c := &cobra.Command{
		Use:   "plan",
		Short: "Show what a profile would do, without doing it",
		Long: `plan loads and validates a profile and prints what a run would do: the
resolved profile, the kind configuration or Cluster API objects it would
create, every stack component in install order with its chart, version and
namespace, and every requirement of the conformance version with its level
and whether it would run, be skipped or be reported N/A.

Every problem in the profile is reported at once, each with its field path.
Nothing is created, installed or contacted.

Stack components state the Kubernetes minors upstream supports for their
pinned version; plan warns when the profile's version is outside a range,
and --strict makes that an error (exit 2).`,
		Example: `  kaic plan                      # the default profile, kind-dra
  kaic plan -p capi-aws-gpu      # fails naming the environment variables it needs
  kaic plan -p my-profile.yaml -o json
  kaic plan --strict             # fail when a component does not support the Kubernetes version`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := checkOutput(po.output); err != nil {
				return err
			}
			pl, err := o.client().Plan(po.profile)
			if err != nil {
				return err
			}
			if po.output != outputTable {
				err = printStructured(o.stdout, po.output, pl)
			} else {
				err = printPlan(o.stdout, pl)
			}
			if err == nil && po.strict && len(pl.SupportGaps) > 0 {
				var names []string
				for _, g := range pl.SupportGaps {
					names = append(names, g.Component+" "+g.Version+" (supports "+g.Supports.Minors()+")")
				}
				err = &kaic.UsageError{Err: fmt.Errorf("--strict: Kubernetes %s is outside the supported range of %s", pl.Profile.Spec.KubernetesVersion, strings.Join(names, ", "))}
			}
			return err
		},
	}
	addProfileFlag(c, &po.profile)
	addOutputFlag(c, &po.output, outputTable)
	c.Flags().BoolVar(&po.strict, "strict", false, "fail (exit 2) when the profile's Kubernetes version is outside a stack component's supported range")
	return c
}

func printPlan(w io.Writer, pl *kaic.Plan) error {
	p := pl.Profile
	sim := ""
	if pl.Simulated {
		sim = " (simulated)"
	}
	fmt.Fprintf(w, "Profile %s from %s (digest %s)\n", p.Metadata.Name, pl.Source, pl.Digest[:12])
	fmt.Fprintf(w, "  Kubernetes %s, AI conformance %s, accelerator model %s%s\n", p.Spec.KubernetesVersion, p.Spec.ConformanceVersion, p.Spec.Accelerator.Model, sim)
	fmt.Fprintf(w, "  Accelerators: %s\n", pl.Accelerators)
	fmt.Fprintf(w, "  Run directory %s\n", p.Spec.Output.Dir)
	fmt.Fprintf(w, "  Probe image %s (%s)\n\n", pl.ProbeImage.Ref, describeProbeSource(pl.ProbeImage))

	fmt.Fprintf(w, "Cluster: %s\n", pl.Cluster.Backend)
	switch {
	case pl.Cluster.KindConfig != "":
		fmt.Fprintln(w, "  kind configuration:")
		fmt.Fprint(w, indent(pl.Cluster.KindConfig, "    "))
	case pl.Cluster.CAPI != nil:
		cp := pl.Cluster.CAPI
		fmt.Fprintf(w, "  management cluster: %s\n  providers: %s\n  template: %s\n  variables:\n", cp.Management, strings.Join(cp.Providers, ", "), cp.Template)
		for _, k := range slices.Sorted(maps.Keys(cp.Variables)) {
			fmt.Fprintf(w, "    %s=%s\n", k, cp.Variables[k])
		}
		if len(cp.Objects) > 0 {
			fmt.Fprintln(w, "  objects added to the template:")
			for _, obj := range cp.Objects {
				meta, _ := obj["metadata"].(map[string]any)
				fmt.Fprintf(w, "    %s %v\n", obj["kind"], meta["name"])
				if ann, ok := meta["annotations"].(map[string]any); ok {
					for _, k := range slices.Sorted(maps.Keys(ann)) {
						fmt.Fprintf(w, "      %s: %v\n", k, ann[k])
					}
				}
			}
		}
	case pl.Cluster.Existing != nil:
		fmt.Fprintln(w, "  adopted from --kubeconfig/--context (or the profile's), not changed")
	}
	fmt.Fprintln(w)

	if len(pl.Releases) == 0 {
		fmt.Fprintln(w, "Stack: empty (nothing is installed)")
	} else {
		fmt.Fprintln(w, "Stack, in install order (components of one wave install together):")
		tw := newTable(w)
		fmt.Fprintln(tw, "  WAVE\tCOMPONENT\tTYPE\tSOURCE\tVERSION\tNAMESPACE\tSUPPORTS")
		for _, r := range pl.Releases {
			src := r.Chart
			if r.Repo != "" {
				src = r.Repo + " " + r.Chart
			}
			if r.Type == "manifests" {
				src = strings.Join(r.Sources, ", ")
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Wave, r.Name, r.Type, src, dash(r.Version), dash(r.Namespace), dash(r.Supports))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "Checks of AI conformance %s:\n", p.Spec.ConformanceVersion)
	tw := newTable(w)
	fmt.Fprintln(tw, "  CATEGORY\tREQUIREMENT\tLEVEL\tTEST\tACTION\tNOTES")
	for _, c := range pl.Checks {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", c.Category, c.ID, c.Level, c.TestName, c.Action, truncate(c.Notes, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(pl.Warnings) > 0 {
		fmt.Fprintln(w, "\nWarnings:")
		for _, warn := range pl.Warnings {
			fmt.Fprintf(w, "  - %s\n", warn)
		}
	}
	return nil
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l == "" {
			continue
		}
		b.WriteString(prefix + l)
	}
	if !strings.HasSuffix(s, "\n") {
		b.WriteString("\n")
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// describeProbeSource says where a run's probe image comes from.
func describeProbeSource(pi kaic.ProbeImagePlan) string {
	switch pi.Source {
	case kaic.ProbeFromProfile:
		return "spec.checks.probeImage"
	case kaic.ProbeBuilt:
		return "built from " + pi.Binary + " and loaded into the nodes by kaic"
	case kaic.ProbePublished:
		return "published for kaic " + version
	}
	return pi.Source
}
