package clusterautoscaling

import (
	"github.com/kaic-dev/kaic/pkg/profile"
)

// selectorSource is the PoolSource of a pool the profile names by its
// selector.
const selectorSource = "the profile's node pool selector (spec.checks.clusterAutoscaling.nodePoolSelector)"

// OptionsFor derives the check's options from the profile. The pool is
// the one spec.checks.clusterAutoscaling.nodePoolSelector selects, else
// the Cluster API gpuPool with autoscaler: true (by its labels, tolerating
// its taints); without either the options are empty and the check skips.
// The time limits come from spec.checks.clusterAutoscaling, defaults
// filling what it leaves unset.
func OptionsFor(p *profile.Profile) Options {
	o := gpuPoolOptions(p)
	if p == nil {
		return o
	}
	ca := p.Spec.Checks.ClusterAutoscaling
	if ca.NodePoolSelector != "" {
		o.NodePoolSelector = ca.NodePoolSelector
		o.PoolSource = selectorSource
		o.undeclared = ""
	}
	o.PendingTimeout = ca.PendingTimeout.Duration
	o.ScaleUpTimeout = ca.ScaleUpTimeout.Duration
	o.ScaleDownTimeout = ca.ScaleDownTimeout.Duration
	o.StabilityWindow = ca.StabilityWindow.Duration
	return o
}
