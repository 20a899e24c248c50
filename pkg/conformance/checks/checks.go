// Package checks assembles kaic's built-in conformance checks, one package
// per requirement beneath it, into a registry.
package checks

import (
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/accelmetrics"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/clusterautoscaling"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/dra"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/driverruntime"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/gang"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/gpusharing"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/inference"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/podautoscaling"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/robust"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/sandboxing"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/secureaccess"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/servicemetrics"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Builtin returns a registry of every built-in check, each finding what
// it exercises on the cluster.
func Builtin() *conformance.Registry {
	return ForProfile(nil)
}

// ForProfile returns a registry of every built-in check, configured by
// the profile p where a check takes settings from it (spec.checks: how
// long accelerator_metrics waits for the exporter, the AI operator of
// robust_controller, the autoscaled node pool and time limits
// of cluster_autoscaling, the Prometheus of ai_service_metrics, the
// GatewayClass and traffic of ai_inference and advanced_inference_ingress,
// the RuntimeClass of workload_sandboxing); nil leaves every choice to the
// cluster.
func ForProfile(p *profile.Profile) *conformance.Registry {
	reg, err := conformance.NewRegistry(
		accelmetrics.ForProfile(p),
		clusterautoscaling.ForProfile(p),
		dra.Check(),
		driverruntime.Check(),
		gang.Check(),
		gpusharing.Check(),
		inference.ForProfile(p),
		inference.IngressForProfile(p),
		podautoscaling.Check(),
		robust.ForProfile(p),
		sandboxing.ForProfile(p),
		secureaccess.Check(),
		servicemetrics.ForProfile(p),
	)
	if err != nil {
		panic(err) // the built-in list is fixed; a test covers it
	}
	return reg
}
