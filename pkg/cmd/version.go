package cmd

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is kaic's version, set at build time with
// -ldflags "-X github.com/kaic-dev/kaic/pkg/cmd.version=v0.1.0".
var version = "dev"

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
