package gpusharing

import (
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
)

func TestMain(m *testing.M) { checktest.MainWithGPUNodes(m) }

// check is the check as its tests run it.
var check = checktest.AcceleratorCheck{Check: Check(), Level: conformance.Should}

func TestGPUSharingPasses(t *testing.T) {
	env, res := check.RunPassing(t, "TestGPUSharing")
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"SharedAcrossContainers": conformance.Passed,
		"SharedAcrossPods":       conformance.Passed,
	})
	checktest.ExpectSkippedOnKwok(t, res, "SharedAcrossContainers/ContainersSeeSameDevice", "SharedAcrossPods/PodsSeeSameDevice")
	checktest.ExpectTranscript(t, res,
		"both containers of pod shared-by-containers share device gpu.example.com/kwok-gpu-",
		"allocation of ResourceClaim shared-accelerator",
		"- pods/sharer-a\n- pods/sharer-b", // one device reserved for both pods
		"pods sharer-a and sharer-b on node kwok-gpu-",
	)
	checktest.ExpectCleanedUp(t, env, res)
}

func TestGPUSharingFailsWithoutDeviceClass(t *testing.T) {
	check.ExpectFailsWithoutDeviceClass(t)
}

func TestGPUSharingFailsWhenDriverPublishesNothing(t *testing.T) {
	check.ExpectFailsWhenDriverPublishesNothing(t)
}

func TestGPUSharingFailsWhenDeviceClassSelectsNothing(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "nothing.example.com", "gpu.nowhere.example.com")
	res := check.Run(t, env, testenv.DefaultDRADriver, "nothing.example.com")
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "pod shared-by-containers stays unschedulable although 4 device(s) of driver gpu.example.com are free") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"SharedAcrossContainers": conformance.Failed,
		"SharedAcrossPods":       conformance.Failed,
	})
	checktest.ExpectCleanedUp(t, env, res)
}
