package clusterautoscaling

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// The settings of spec.checks.clusterAutoscaling: a selector names the
// pool of an existing cluster, wins over a Cluster API gpuPool's labels,
// and the time limits reach the options and the time the runner grants.
func TestOptionsForCheckSettings(t *testing.T) {
	existing := &profile.Profile{}
	existing.Spec.Cluster.Backend = profile.BackendExisting
	existing.Spec.Checks.ClusterAutoscaling = profile.ClusterAutoscaling{
		NodePoolSelector: "pool in (gpu),!spot",
		PendingTimeout:   profile.Duration{Duration: 5 * time.Minute},
		ScaleUpTimeout:   profile.Duration{Duration: 45 * time.Minute},
		ScaleDownTimeout: profile.Duration{Duration: time.Hour},
		StabilityWindow:  profile.Duration{Duration: 2 * time.Minute},
	}
	o := OptionsFor(existing)
	if o.NodePoolSelector != "pool in (gpu),!spot" || o.PoolSource != selectorSource || o.undeclared != "" {
		t.Errorf("existing cluster's pool: %+v", o)
	}
	if o.PendingTimeout != 5*time.Minute || o.ScaleUpTimeout != 45*time.Minute || o.ScaleDownTimeout != time.Hour || o.StabilityWindow != 2*time.Minute {
		t.Errorf("time limits: %+v", o)
	}
	need := 3*5*time.Minute + 45*time.Minute + time.Hour + 2*2*time.Minute
	c := ForProfile(existing)
	if alone, ok := c.(conformance.Alone); !ok || !alone.RunsAlone() {
		t.Fatalf("ForProfile's check does not run alone: %T", c)
	}
	if got := c.(conformance.NeedsTime).MinTimeout(); got < need {
		t.Errorf("MinTimeout = %s, want at least the profile's phases' %s", got, need)
	}

	// Time limits alone declare no pool: the check still skips.
	limitsOnly := &profile.Profile{}
	limitsOnly.Spec.Checks.ClusterAutoscaling.ScaleUpTimeout = profile.Duration{Duration: time.Hour}
	if o := OptionsFor(limitsOnly); o.NodePoolSelector != "" || o.ScaleUpTimeout != time.Hour || o.PendingTimeout != 0 {
		t.Errorf("limits only: %+v", o)
	}

	capi := func(sel string, labels map[string]string) *profile.Profile {
		p := &profile.Profile{}
		p.Spec.Cluster.Backend = profile.BackendCAPI
		p.Spec.Cluster.CAPI = &profile.CAPICluster{GPUPool: &profile.GPUPool{
			Name: "gpu", Autoscaler: true, Labels: labels,
			Taints: []profile.Taint{{Key: "nvidia.com/gpu", Effect: "NoSchedule"}},
		}}
		p.Spec.Checks.ClusterAutoscaling.NodePoolSelector = sel
		return p
	}
	// Without a selector the gpuPool's labels name the pool, as before.
	if o := OptionsFor(capi("", map[string]string{"kaic.dev/pool": "gpu"})); o.NodePoolSelector != "kaic.dev/pool=gpu" || o.PoolSource == selectorSource {
		t.Errorf("gpuPool alone: %+v", o)
	}
	// An explicit selector wins; the pool's taints are still tolerated.
	o = OptionsFor(capi("node.kubernetes.io/instance-type=g5.xlarge", map[string]string{"kaic.dev/pool": "gpu"}))
	if o.NodePoolSelector != "node.kubernetes.io/instance-type=g5.xlarge" || o.PoolSource != selectorSource {
		t.Errorf("selector over gpuPool: %+v", o)
	}
	if len(o.Tolerations) != 1 || o.Tolerations[0].Key != "nvidia.com/gpu" || o.Tolerations[0].Effect != corev1.TaintEffectNoSchedule {
		t.Errorf("tolerations %+v", o.Tolerations)
	}
	// A selector also names the pool of a gpuPool without labels.
	if o := OptionsFor(capi("pool=gpu", nil)); o.NodePoolSelector != "pool=gpu" || o.undeclared != "" {
		t.Errorf("selector over an unlabelled gpuPool: %+v", o)
	}
}
