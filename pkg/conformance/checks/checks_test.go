package checks

import (
	"slices"
	"testing"
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
