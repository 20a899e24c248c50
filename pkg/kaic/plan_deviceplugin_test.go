package kaic_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks"
	"github.com/kaic-dev/kaic/pkg/kaic"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// acceleratorRequirements are the requirements whose checks put
// accelerators in pods or read them, outside the accelerators category
// too.
var acceleratorRequirements = []string{"secure_accelerator_access", "pod_autoscaling", "accelerator_metrics", "cluster_autoscaling"}

// A cluster whose accelerators come from a device plugin is planned like
// any other: every accelerator check runs (none is dropped for want of
// DRA), the plan says how pods get their accelerators, and the checks
// that work differently say how.
func TestPlanDevicePluginSelectsEveryAcceleratorCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device-plugin.yaml")
	src := `apiVersion: kaic.dev/v1alpha1
kind: Profile
metadata:
  name: device-plugin
extends: existing
spec:
  accelerator:
    allocation: device-plugin
    resourceName: nvidia.com/gpu
  checks:
    probeImage: registry.example.com/kaic/probe:v1
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	pl, err := kaic.New().Plan(path)
	if err != nil {
		t.Fatal(err)
	}
	a := pl.Accelerators
	if a.Allocation != profile.AllocationDevicePlugin || a.ResourceName != "nvidia.com/gpu" || a.Model != "nvidia" {
		t.Errorf("accelerators %+v, want the nvidia model allocated by a device plugin as nvidia.com/gpu", a)
	}
	if got := a.String(); got != "model nvidia, allocated by a device plugin: pods request nvidia.com/gpu; a container holds a device when it sees device files /dev/nvidia[0-9]*" {
		t.Errorf("accelerators shown as %q", got)
	}
	reg := checks.ForProfile(pl.Profile)
	planned := map[string]kaic.Check{}
	for _, c := range pl.Checks {
		planned[c.ID] = c
	}
	cat, err := conformance.Builtin(pl.Profile.Spec.ConformanceVersion)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string{}, acceleratorRequirements...)
	for _, r := range cat.Requirements {
		if r.Category == "accelerators" {
			want = append(want, r.ID)
		}
	}
	for _, id := range want {
		c, ok := planned[id]
		if !ok {
			t.Errorf("%s is not in the plan", id)
			continue
		}
		if c.Action != kaic.ActionRun {
			t.Errorf("%s: action %s (%s), want run", id, c.Action, c.Notes)
		}
		// virtualized_accelerator has no check yet, in either mode.
		if _, ok := reg.Lookup(id); !ok && id != "virtualized_accelerator" {
			t.Errorf("%s has no check", id)
		}
	}
	if n := planned["gpu_sharing"].Notes; n == "" {
		t.Errorf("gpu_sharing carries no note on what device-plugin mode verifies")
	}
}
