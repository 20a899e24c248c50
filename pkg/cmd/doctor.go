package cmd

import (
	"github.com/spf13/cobra"

	"github.com/kaic-dev/kaic/pkg/provision"
)

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
