package checks

import (
	"slices"
	"testing"
	"time"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// Builtin panics on a duplicate or unknown requirement id; this builds it
// and checks that the built-in checks are in it.
func TestBuiltin(t *testing.T) {
	ids := Builtin().IDs()
	for _, want := range []string{"dra_support", "secure_accelerator_access", "gpu_sharing", "driver_runtime_management", "gang_scheduling", "robust_controller", "pod_autoscaling", "accelerator_metrics", "ai_service_metrics", "cluster_autoscaling", "workload_sandboxing", "ai_inference", "advanced_inference_ingress"} {
		if !slices.Contains(ids, want) {
			t.Errorf("Builtin() lacks %s: %v", want, ids)
		}
	}
}

// A profile's check settings reach the registry: every check is still
// there, and cluster_autoscaling keeps running alone with time for the
// limits the profile sets.
func TestForProfile(t *testing.T) {
	p := &profile.Profile{}
	p.Spec.Checks.ClusterAutoscaling = profile.ClusterAutoscaling{
		NodePoolSelector: "pool=gpu",
		ScaleUpTimeout:   profile.Duration{Duration: 2 * time.Hour},
	}
	p.Spec.Checks.Sandboxing.RuntimeClass = "gvisor"
	p.Spec.Checks.Inference.GatewayClass = "eg"
	p.Spec.Checks.ServiceMetrics.Prometheus = "monitoring/prometheus-operated:web"
	reg := ForProfile(p)
	if got, want := len(reg.IDs()), len(Builtin().IDs()); got != want {
		t.Errorf("ForProfile has %d checks, Builtin %d", got, want)
	}
	c, ok := reg.Lookup("cluster_autoscaling")
	if !ok {
		t.Fatal("no cluster_autoscaling check")
	}
	if alone, ok := c.(conformance.Alone); !ok || !alone.RunsAlone() {
		t.Errorf("cluster_autoscaling does not run alone: %T", c)
	}
	if nt, ok := c.(conformance.NeedsTime); !ok || nt.MinTimeout() < 2*time.Hour {
		t.Errorf("cluster_autoscaling does not ask for the profile's 2h scale-up limit: %T", c)
	}
}
