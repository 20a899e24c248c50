package secureaccess

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
var check = checktest.AcceleratorCheck{Check: Check(), Level: conformance.Must}

func TestSecureAcceleratorAccessPasses(t *testing.T) {
	env, res := check.RunPassing(t, "TestSecureAcceleratorAccess")
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"PositiveAccessTest":          conformance.Passed,
		"NegativeIsolationTest":       conformance.Passed,
		"MultiContainerIsolationTest": conformance.Passed,
		"DistinctDevicesTest":         conformance.Passed,
	})
	checktest.ExpectSkippedOnKwok(t, res,
		"PositiveAccessTest/ProbeSeesAllocatedDevice",
		"NegativeIsolationTest/ProbeSeesNoDevice",
		"MultiContainerIsolationTest/OnlyAuthorizedContainerSeesDevice",
		"DistinctDevicesTest/ProbesSeeDistinctDevices")
	checktest.ExpectTranscript(t, res,
		"allocation of ResourceClaim",
		"Run pod neg-pod without a claim on node kwok-gpu-",
		"nodeName: kwok-gpu-",                // the negative pod is pinned
		"key: example.com/gpu",               // pods tolerate the model's taint
		"preferably both on node kwok-gpu-0", // the two pods compete for one node's devices
		"hold different devices: gpu.example.com/kwok-gpu-",
		"deleted namespace "+res.Namespace,
	)
	checktest.ExpectCleanedUp(t, env, res)
}

func TestSecureAcceleratorAccessFailsWithoutDeviceClass(t *testing.T) {
	res := check.ExpectFailsWithoutDeviceClass(t)
	if tr := checktest.Subtest(res, "PositiveAccessTest"); tr != nil {
		t.Errorf("the check went on without a DeviceClass: %+v", tr)
	}
}

func TestSecureAcceleratorAccessFailsWhenDriverPublishesNothing(t *testing.T) {
	check.ExpectFailsWhenDriverPublishesNothing(t)
}

// With one device in the cluster every single-pod test passes; two pods
// cannot hold distinct devices, which is a skip with the reason, not a
// failure: the official test passes a one-GPU cluster too.
func TestSecureAcceleratorAccessPassesWithOneDevice(t *testing.T) {
	env := testenv.Shared(t)
	const driver = "gpu.single.example.com"
	checktest.PublishSlice(t, env, testenv.FakeGPUSlice("kwok-gpu-0", driver, 1))
	checktest.EnsureDeviceClass(t, env, driver, driver)
	res := check.Run(t, env, driver, driver)
	if res.Status != conformance.Passed {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"PositiveAccessTest":          conformance.Passed,
		"NegativeIsolationTest":       conformance.Passed,
		"MultiContainerIsolationTest": conformance.Passed,
		"DistinctDevicesTest":         conformance.Skipped,
	})
	checktest.ExpectTranscript(t, res, "1 device of driver gpu.single.example.com on Ready nodes (node kwok-gpu-0): two pods cannot hold distinct devices")
	checktest.ExpectCleanedUp(t, env, res)
}

// A DeviceClass that selects none of the driver's devices leaves the
// positive pod unschedulable although devices are free.
func TestSecureAcceleratorAccessFailsWhenDeviceClassSelectsNothing(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "nothing.example.com", "gpu.nowhere.example.com")
	res := check.Run(t, env, testenv.DefaultDRADriver, "nothing.example.com")
	if res.Status != conformance.Failed {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	tr := checktest.Subtest(res, "PositiveAccessTest")
	if tr == nil || tr.Status != conformance.Failed {
		t.Fatalf("PositiveAccessTest: %+v", tr)
	}
	if tr := checktest.Subtest(res, "MultiContainerIsolationTest"); tr != nil {
		t.Errorf("the check went on although no pod could hold a device: %+v", tr)
	}
	for _, want := range []string{"pod pos-pod stays unschedulable although 4 device(s) of driver gpu.example.com are free", "DeviceClass nothing.example.com selects none of them", "cannot allocate all claims"} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason lacks %q: %q", want, res.Reason)
		}
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// Device-plugin mode: the kwok nodes advertise nvidia.com/gpu (two each)
// as a device plugin would, and publish no ResourceSlices of the model (it
// names no DRA driver). Every test passes on what the API shows; what the
// containers see cannot be read on kwok, whose probe subtests skip.
func TestSecureAcceleratorAccessPassesWithDevicePlugin(t *testing.T) {
	env := testenv.Shared(t)
	res := check.RunDevicePlugin(t, env, string(testenv.GPUResourceName))
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"PositiveAccessTest":          conformance.Passed,
		"NegativeIsolationTest":       conformance.Passed,
		"MultiContainerIsolationTest": conformance.Passed,
		"DistinctDevicesTest":         conformance.Passed,
	})
	checktest.ExpectSkippedOnKwok(t, res,
		"PositiveAccessTest/ProbeSeesAllocatedDevice",
		"NegativeIsolationTest/ProbeSeesNoDevice",
		"MultiContainerIsolationTest/OnlyAuthorizedContainerSeesDevice",
		"DistinctDevicesTest/ProbesSeeDistinctDevices")
	checktest.ExpectTranscript(t, res,
		"allocatable nvidia.com/gpu of Ready nodes",
		"Run pod pos-pod whose container requests one nvidia.com/gpu",
		"nvidia.com/gpu: \"1\"", // in the pod's limits
		"extended resource of pod pos-pod",
		"requested: 1 nvidia.com/gpu",
		"Run pod neg-pod requesting no nvidia.com/gpu on node kwok-gpu-",
		"nodeName: kwok-gpu-", // the negative pod is pinned
		"container authorized requests one nvidia.com/gpu, container unauthorized does not",
		"preferably both on node kwok-gpu-0",
		"each hold one nvidia.com/gpu",
		"deleted namespace "+res.Namespace,
	)
	if tr := checktest.Transcript(res); strings.Contains(tr, "ResourceClaim") {
		t.Errorf("device-plugin mode went through DRA:\n%s", tr)
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// One unit of the resource in the cluster: every single-pod test passes,
// the distinct-devices test skips saying why, and the verdict is a pass.
func TestSecureAcceleratorAccessWithDevicePluginAndOneDevice(t *testing.T) {
	env := testenv.Shared(t)
	const single = "example.com/single-gpu"
	checktest.AddNode(t, env, testenv.Node{Name: "kwok-single-0", Allocatable: corev1.ResourceList{single: resource.MustParse("1")}})
	res := check.RunDevicePlugin(t, env, single)
	if res.Status != conformance.Passed {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"PositiveAccessTest":          conformance.Passed,
		"NegativeIsolationTest":       conformance.Passed,
		"MultiContainerIsolationTest": conformance.Passed,
		"DistinctDevicesTest":         conformance.Skipped,
	})
	checktest.ExpectTranscript(t, res,
		"1 device of extended resource example.com/single-gpu on Ready nodes (node kwok-single-0): two pods cannot hold distinct devices",
		"Run pod neg-pod requesting no example.com/single-gpu on node kwok-single-0")
	checktest.ExpectCleanedUp(t, env, res)
}

// No node advertises the resource: the device plugin is missing, and the
// check fails before it starts, saying so.
func TestSecureAcceleratorAccessFailsWhenNoNodeAdvertisesResource(t *testing.T) {
	res := check.RunDevicePlugin(t, testenv.Shared(t), "example.com/absent-gpu")
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "no node advertises allocatable example.com/absent-gpu") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
}
