package secureaccess

import (
	"strings"
	"testing"

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
