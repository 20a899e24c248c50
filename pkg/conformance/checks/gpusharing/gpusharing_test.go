package gpusharing

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
	return checktest.Run(t, env, Check(), conformance.Should, checktest.ExampleModel(driver, class))
}

func TestGPUSharingPasses(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "gpu.example.com", testenv.DefaultDRADriver)
	res := runCheck(t, env, testenv.DefaultDRADriver, "gpu.example.com")
	if res.Status != conformance.Passed {
		t.Fatalf("status %s: %s", res.Status, res.Reason)
	}
	if res.TestName != "TestGPUSharing" {
		t.Errorf("test name %q", res.TestName)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"SharedAcrossContainers": conformance.Passed,
		"SharedAcrossPods":       conformance.Passed,
	})
	checktest.ExpectSkippedOnKwok(t, res, "SharedAcrossContainers/ContainersSeeSameDevice", "SharedAcrossPods/PodsSeeSameDevice")
	all := checktest.Transcript(res)
	for _, want := range []string{
		"both containers of pod shared-by-containers share device gpu.example.com/kwok-gpu-",
		"allocation of ResourceClaim shared-accelerator",
		"- pods/sharer-a\n- pods/sharer-b", // one device reserved for both pods
		"pods sharer-a and sharer-b on node kwok-gpu-",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	checktest.ExpectCleanedUp(t, env, res)
}

func TestGPUSharingFailsWithoutDeviceClass(t *testing.T) {
	env := testenv.Shared(t)
	res := runCheck(t, env, testenv.DefaultDRADriver, "missing.example.com")
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "DeviceClass missing.example.com of the accelerator model does not exist") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
}

func TestGPUSharingFailsWhenDriverPublishesNothing(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "gpu.absent.example.com", "gpu.absent.example.com")
	res := runCheck(t, env, "gpu.absent.example.com", "gpu.absent.example.com")
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "driver gpu.absent.example.com publishes no devices") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
}

func TestGPUSharingFailsWhenDeviceClassSelectsNothing(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "nothing.example.com", "gpu.nowhere.example.com")
	res := runCheck(t, env, testenv.DefaultDRADriver, "nothing.example.com")
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "pod shared-by-containers stays unschedulable although 4 device(s) of driver gpu.example.com are free") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"SharedAcrossContainers": conformance.Failed,
		"SharedAcrossPods":       conformance.Failed,
	})
	checktest.ExpectCleanedUp(t, env, res)
}
