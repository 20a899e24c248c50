package capi

import (
	"github.com/kaic-dev/kaic/pkg/profile"
	"github.com/kaic-dev/kaic/pkg/provision/preflight"
)

// Preflight is what kaic doctor checks on this machine for a capi section:
// the kind management cluster kaic creates, or nothing when the profile
// names a management cluster and its machines are not local containers.
func Preflight(c *profile.CAPICluster) (opts preflight.Options, skip string) {
	if c.Management.Kubeconfig != "" && c.Infrastructure != "docker" {
		return opts, "This profile uses an existing management cluster and cloud machines: nothing to check on this machine."
	}
	return preflight.Options{Runtime: "auto", ClusterName: c.ClusterName + "-mgmt"}, ""
}
