package secureaccess

import (
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
)

// Two kwok nodes with two fake devices each.
func TestMain(m *testing.M) {
	testenv.Main(m, testenv.WithControlLoops(), testenv.WithGPUNodes(2, 2))
}

func runCheck(t *testing.T, env *testenv.Env, driver, class string) conformance.Result {
	t.Helper()
	return checktest.Run(t, env, Check(), conformance.Must, checktest.ExampleModel(driver, class))
}

func TestSecureAcceleratorAccessPasses(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "gpu.example.com", testenv.DefaultDRADriver)
	res := runCheck(t, env, testenv.DefaultDRADriver, "gpu.example.com")
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	if res.TestName != "TestSecureAcceleratorAccess" {
		t.Errorf("test name %q", res.TestName)
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
	all := checktest.Transcript(res)
	for _, want := range []string{
		"allocation of ResourceClaim",
		"Run pod neg-pod without a claim on node kwok-gpu-",
		"nodeName: kwok-gpu-",                // the negative pod is pinned
		"key: example.com/gpu",               // pods tolerate the model's taint
		"preferably both on node kwok-gpu-0", // the two pods compete for one node's devices
		"hold different devices: gpu.example.com/kwok-gpu-",
		"deleted namespace " + res.Namespace,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	checktest.ExpectCleanedUp(t, env, res)
}

func TestSecureAcceleratorAccessFailsWithoutDeviceClass(t *testing.T) {
	env := testenv.Shared(t)
	res := runCheck(t, env, testenv.DefaultDRADriver, "missing.example.com")
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "DeviceClass missing.example.com of the accelerator model does not exist") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	if tr := checktest.Subtest(res, "PositiveAccessTest"); tr != nil {
		t.Errorf("the check went on without a DeviceClass: %+v", tr)
	}
}

func TestSecureAcceleratorAccessFailsWhenDriverPublishesNothing(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "gpu.absent.example.com", "gpu.absent.example.com")
	res := runCheck(t, env, "gpu.absent.example.com", "gpu.absent.example.com")
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "driver gpu.absent.example.com publishes no devices") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
}

// With one device in the cluster every single-pod test passes, but two
// pods cannot hold distinct devices.
func TestSecureAcceleratorAccessFailsWithOneDevice(t *testing.T) {
	env := testenv.Shared(t)
	const driver = "gpu.single.example.com"
	checktest.PublishSlice(t, env, testenv.FakeGPUSlice("kwok-gpu-0", driver, 1))
	checktest.EnsureDeviceClass(t, env, driver, driver)
	res := runCheck(t, env, driver, driver)
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "publishes 1 device on Ready nodes: two pods cannot get distinct devices") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"PositiveAccessTest":          conformance.Passed,
		"NegativeIsolationTest":       conformance.Passed,
		"MultiContainerIsolationTest": conformance.Passed,
		"DistinctDevicesTest":         conformance.Failed,
	})
	checktest.ExpectCleanedUp(t, env, res)
}

// A DeviceClass that selects none of the driver's devices leaves the
// positive pod unschedulable although devices are free.
func TestSecureAcceleratorAccessFailsWhenDeviceClassSelectsNothing(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "nothing.example.com", "gpu.nowhere.example.com")
	res := runCheck(t, env, testenv.DefaultDRADriver, "nothing.example.com")
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
