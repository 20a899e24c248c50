package cmd

import (
	"fmt"
	"maps"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"

	"github.com/spf13/cobra"
)

// version is kaic's version, set at build time with
// -ldflags "-X github.com/kaic-dev/kaic/pkg/cmd.version=v0.1.0".
var version = "dev"

// probeImage is the probe image published for this release, by digest,
// set at build time by the release workflow with
// -ldflags "-X github.com/kaic-dev/kaic/pkg/cmd.probeImage=ghcr.io/kaic-dev/kaic-probe:v0.1.0@sha256:…".
// Empty: a release build derives it from its version, a development build
// has none.
var probeImage = ""

// probeRepository is where releases publish the probe image.
const probeRepository = "ghcr.io/kaic-dev/kaic-probe"

// releaseVersion matches the version of a release: a semantic version
// without pre-release or build parts (v0.4.0, not v0.4.0-3-gabcdef or a Go
// pseudo-version).
var releaseVersion = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)

// effectiveVersion is the version set at build time, else the module
// version go install recorded, else "dev".
func effectiveVersion() string {
	if version == "dev" {
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return version
}

// publishedProbeImage is the probe image published for this build: the one
// stamped at build time, else the release's tag; "" for a development build.
func publishedProbeImage() string {
	if probeImage != "" {
		return probeImage
	}
	if v := effectiveVersion(); releaseVersion.MatchString(v) {
		return probeRepository + ":" + v
	}
	return ""
}

// versionInfo is what `kaic version` prints.
type versionInfo struct {
	Version   string `json:"version"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
	// ProbeImage is the probe image published for this release; empty
	// for a development build.
	ProbeImage string            `json:"probeImage,omitempty"`
	Libraries  map[string]string `json:"libraries,omitempty"`
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
			info := versionInfo{Version: effectiveVersion(), GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
				ProbeImage: publishedProbeImage(), Libraries: map[string]string{}}
			if bi, ok := debug.ReadBuildInfo(); ok {
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
			if info.ProbeImage != "" {
				fmt.Fprintf(o.stdout, "  probe image %s\n", info.ProbeImage)
			}
			for _, k := range slices.Sorted(maps.Keys(info.Libraries)) {
				fmt.Fprintf(o.stdout, "  %s %s\n", k, info.Libraries[k])
			}
			return nil
		},
	}
	addOutputFlag(c, &output, outputTable)
	return c
}
