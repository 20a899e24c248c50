package driverruntime

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
)

func TestMain(m *testing.M) { checktest.MainWithGPUNodes(m) }

// check is the check as its tests run it.
var check = checktest.AcceleratorCheck{Check: Check(), Level: conformance.Should}

// On kwok the versions are verified; the runtime and what a container
// sees are not observable, and the subtests say so.
func TestDriverRuntimeManagementPasses(t *testing.T) {
	env, res := check.RunPassing(t, "TestAcceleratorDriverRuntimeManagement")
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{"VerifiableMechanismExposed": conformance.Passed})
	checktest.ExpectSkippedOnKwok(t, res, "ContainerRuntimeReported", "DriverAndRuntimeCompatibility")
	checktest.ExpectTranscript(t, res,
		"driverVersion of the 4 devices of gpu.example.com",
		"1.0.0: 4 devices (kwok-gpu-0/gpu-0, kwok-gpu-0/gpu-1, kwok-gpu-1/gpu-0, kwok-gpu-1/gpu-1)",
		`"kwok-`, "2 node(s): kwok-gpu-0, kwok-gpu-1", // the runtime kwok reports, recorded though not accepted
		"driverVersion: 1.0.0",
	)
	checktest.ExpectCleanedUp(t, env, res)
}

func TestDriverRuntimeManagementFailsWithoutDriverVersion(t *testing.T) {
	env := testenv.Shared(t)
	const driver = "gpu.unversioned.example.com"
	slice := testenv.FakeGPUSlice("kwok-gpu-1", driver, 2)
	delete(slice.Spec.Devices[1].Attributes, "driverVersion")
	checktest.PublishSlice(t, env, slice)
	checktest.EnsureDeviceClass(t, env, driver, driver)
	res := check.Run(t, env, driver, driver)
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "1 of the 2 devices of driver gpu.unversioned.example.com advertise no driverVersion attribute: kwok-gpu-1/gpu-1") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{"VerifiableMechanismExposed": conformance.Failed})
	checktest.ExpectCleanedUp(t, env, res)
}

func TestDriverRuntimeManagementFailsWhenDriverPublishesNothing(t *testing.T) {
	check.ExpectFailsWhenDriverPublishesNothing(t)
}

// Device-plugin mode: the driver version is what the nodes advertising
// the resource state in a label of its domain, as NVIDIA's GPU feature
// discovery labels nodes.
func TestDriverRuntimeManagementWithDevicePlugin(t *testing.T) {
	env := testenv.Shared(t)
	const res = "example.com/labelled-gpu"
	for _, name := range []string{"kwok-labelled-0", "kwok-labelled-1"} {
		checktest.AddNode(t, env, testenv.Node{Name: name,
			Labels:      map[string]string{"example.com/cuda.driver-version.full": "550.54.15", "example.com/cuda.driver-version.major": "550"},
			Allocatable: corev1.ResourceList{res: resource.MustParse("1")}})
	}
	r := check.RunDevicePlugin(t, env, res)
	if r.Status != conformance.Passed {
		t.Fatalf("status %s, reason %q", r.Status, r.Reason)
	}
	checktest.ExpectStatuses(t, r, map[string]conformance.Status{"VerifiableMechanismExposed": conformance.Passed})
	checktest.ExpectSkippedOnKwok(t, r, "ContainerRuntimeReported", "DriverAndRuntimeCompatibility")
	checktest.ExpectTranscript(t, r,
		"driver version of the nodes advertising example.com/labelled-gpu",
		"kwok-labelled-0: example.com/cuda.driver-version.full=550.54.15",
		"Run pod driver-check whose container requests one example.com/labelled-gpu",
		"driverVersion: 550.54.15", // what the platform advertises for the pod's unit
	)
	checktest.ExpectCleanedUp(t, env, r)
}

// Nodes that state no driver version: not verified, never passed.
func TestDriverRuntimeManagementWithDevicePluginNotVerifiedWithoutVersion(t *testing.T) {
	r := check.RunDevicePlugin(t, testenv.Shared(t), string(testenv.GPUResourceName))
	if r.Status != conformance.Skipped || !strings.Contains(r.Reason, "not verified: no node advertising nvidia.com/gpu states its driver version") {
		t.Fatalf("status %s, reason %q", r.Status, r.Reason)
	}
	checktest.ExpectStatuses(t, r, map[string]conformance.Status{"VerifiableMechanismExposed": conformance.Skipped})
}

// One of two nodes states a version: the other is named.
func TestDriverRuntimeManagementWithDevicePluginFailsWhenANodeStatesNone(t *testing.T) {
	env := testenv.Shared(t)
	const res = "example.com/half-labelled-gpu"
	checktest.AddNode(t, env, testenv.Node{Name: "kwok-half-0", Labels: map[string]string{"example.com/driver-version": "1.0.0"},
		Allocatable: corev1.ResourceList{res: resource.MustParse("1")}})
	checktest.AddNode(t, env, testenv.Node{Name: "kwok-half-1", Allocatable: corev1.ResourceList{res: resource.MustParse("1")}})
	r := check.RunDevicePlugin(t, env, res)
	if r.Status != conformance.Failed || !strings.Contains(r.Reason, "1 of the 2 nodes advertising example.com/half-labelled-gpu state no driver version: kwok-half-1") {
		t.Fatalf("status %s, reason %q", r.Status, r.Reason)
	}
	checktest.ExpectCleanedUp(t, env, r)
}

func TestAdvertisedVersion(t *testing.T) {
	for _, tc := range []struct {
		labels  map[string]string
		wantKey string
	}{
		{map[string]string{"nvidia.com/cuda.driver-version.full": "580.82.07", "nvidia.com/cuda.driver-version.major": "580"}, "nvidia.com/cuda.driver-version.full"},
		{map[string]string{"gpu.nvidia.com/driverVersion": "580.82.7"}, "gpu.nvidia.com/driverVersion"},
		{map[string]string{"other.com/driver-version": "1"}, ""},
		{map[string]string{"nvidia.com/cuda.driver.major": "580"}, ""},
	} {
		if key, _ := advertisedVersion("nvidia.com", tc.labels); key != tc.wantKey {
			t.Errorf("advertisedVersion(%v) = %q, want %q", tc.labels, key, tc.wantKey)
		}
	}
}
