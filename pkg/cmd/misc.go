package cmd

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/pipeline"
	"github.com/kaic-dev/kaic/pkg/pipeline/phases"
	"github.com/kaic-dev/kaic/pkg/provision"
)

// version is kaic's version, set at build time with
// -ldflags "-X github.com/kaic-dev/kaic/pkg/cmd.version=v0.1.0".
var version = "dev"

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

func newDownCommand(o *globalOptions) *cobra.Command {
	var stacksOnly bool
	c := &cobra.Command{
		Use:   "down RUN_DIR",
		Short: "Tear down what a run created, and nothing else",
		Long: `down reads RUN_DIR/state.json and removes what kaic created there: the kind
cluster, or the Cluster API workload (and management) cluster. An adopted
existing cluster is left as it was. --stacks-only uninstalls the stack's
releases in reverse install order and keeps the cluster.`,
		Example: "  kaic down kaic-out/kind-dra\n  kaic down ./run --stacks-only",
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			dir := args[0]
			st, err := pipeline.LoadState(dir)
			if err != nil {
				return err
			}
			if stacksOnly {
				return provision.NotImplemented("uninstalling stack releases")
			}
			rec := st.Phase(pipeline.PhaseProvision)
			if rec == nil || len(rec.Outputs) == 0 {
				fmt.Fprintf(o.stderr, "%s records no provisioned cluster: nothing to tear down\n", dir)
				return nil
			}
			saved, err := phases.SavedProfile(dir)
			if err != nil {
				return err
			}
			r, err := loadProfile(o, saved)
			if err != nil {
				return err
			}
			prov, err := phases.ProvisionerFor(r.Profile, phases.Options{Kubeconfig: o.kubeconfig, Context: o.context})
			if err != nil {
				return err
			}
			return prov.Delete(c.Context(), provision.Record(rec.Outputs), stderrReporter{o})
		},
	}
	c.Flags().BoolVar(&stacksOnly, "stacks-only", false, "uninstall the stack's releases, keep the cluster")
	return c
}

// stderrReporter prints provisioner progress as plain lines.
type stderrReporter struct{ o *globalOptions }

func (r stderrReporter) Step(name string) func(error) {
	fmt.Fprintf(r.o.stderr, "%s ...\n", name)
	return func(err error) {
		if err != nil {
			fmt.Fprintf(r.o.stderr, "%s: failed: %v\n", name, err)
		}
	}
}

func (r stderrReporter) Notef(format string, args ...any) {
	fmt.Fprintf(r.o.stderr, format+"\n", args...)
}

func newDoctorCommand(o *globalOptions) *cobra.Command {
	var profileRef string
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine can run a profile",
		Long: `doctor checks what the provision phase needs on this machine: a reachable
container runtime, cgroup v2, inotify limits (with the sysctl that fixes
them), free disk, and whether a kind cluster of the same name exists.`,
		Example: "  kaic doctor\n  kaic doctor -p kind-nvidia",
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			return provision.NotImplemented("host preflight checks")
		},
	}
	addProfileFlag(c, &profileRef)
	return c
}

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

// versionInfo is what `kaic version` prints.
type versionInfo struct {
	Version   string            `json:"version"`
	GoVersion string            `json:"goVersion"`
	Platform  string            `json:"platform"`
	Libraries map[string]string `json:"libraries,omitempty"`
}

func newVersionCommand(o *globalOptions) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:     "version",
		Short:   "Print kaic's version and the versions of the libraries it drives",
		Example: "  kaic version\n  kaic version -o json",
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			info := versionInfo{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH, Libraries: map[string]string{}}
			if bi, ok := debug.ReadBuildInfo(); ok {
				if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
					info.Version = bi.Main.Version
				}
				for _, d := range bi.Deps {
					switch d.Path {
					case "sigs.k8s.io/kind", "helm.sh/helm/v4", "k8s.io/client-go", "sigs.k8s.io/cluster-api":
						info.Libraries[d.Path] = d.Version
					}
				}
			}
			if output != outputTable {
				return printStructured(o.stdout, output, info)
			}
			fmt.Fprintf(o.stdout, "kaic %s (%s, %s)\n", info.Version, info.GoVersion, info.Platform)
			for _, k := range sortedKeys(info.Libraries) {
				fmt.Fprintf(o.stdout, "  %s %s\n", k, info.Libraries[k])
			}
			return nil
		},
	}
	addOutputFlag(c, &output, outputTable)
	return c
}
