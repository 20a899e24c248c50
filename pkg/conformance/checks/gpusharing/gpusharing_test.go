package gpusharing

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
)

func TestMain(m *testing.M) { checktest.MainWithGPUNodes(m) }

// check is the check as its tests run it.
var check = checktest.AcceleratorCheck{Check: Check(), Level: conformance.Should}

// The simulated driver of the test environment publishes plain devices:
// claim sharing works, no strategy is published, and the requirement is
// reported not verified, never passed.
func TestGPUSharingNotVerifiedWithClaimSharingOnly(t *testing.T) {
	env := testenv.Shared(t)
	checktest.EnsureDeviceClass(t, env, "gpu.example.com", testenv.DefaultDRADriver)
	res := check.Run(t, env, testenv.DefaultDRADriver, "gpu.example.com")
	if res.Status != conformance.Skipped || !strings.Contains(res.Reason, "not verified: driver gpu.example.com publishes no sharing strategy") {
		t.Fatalf("status %s, reason %q; want not verified for want of a strategy", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"SharedAcrossContainers": conformance.Passed,
		"SharedAcrossPods":       conformance.Passed,
	})
	checktest.ExpectSkippedOnKwok(t, res, "SharedAcrossContainers/ContainersSeeSameDevice", "SharedAcrossPods/PodsSeeSameDevice")
	checktest.ExpectTranscript(t, res,
		"sharing strategies of driver gpu.example.com: none",
		"both containers of pod shared-by-containers share device gpu.example.com/kwok-gpu-",
		"allocation of ResourceClaim shared-accelerator",
		"- pods/sharer-a\n- pods/sharer-b", // one device reserved for both pods
		"pods sharer-a and sharer-b on node kwok-gpu-",
	)
	checktest.ExpectCleanedUp(t, env, res)
}

func TestStrategies(t *testing.T) {
	yes := true
	rs := []resourcev1.ResourceSlice{
		{Spec: resourcev1.ResourceSliceSpec{Devices: []resourcev1.Device{{Name: "plain"}, {Name: "shared", AllowMultipleAllocations: &yes}}}},
		{Spec: resourcev1.ResourceSliceSpec{Devices: []resourcev1.Device{
			{Name: "part-0", ConsumesCounters: []resourcev1.DeviceCounterConsumption{{CounterSet: "gpu-0"}}},
			{Name: "part-1", ConsumesCounters: []resourcev1.DeviceCounterConsumption{{CounterSet: "gpu-0"}}},
		}}},
	}
	got := strings.Join(Strategies(rs), "; ")
	want := "1 device(s) that several claims may hold at once (allowMultipleAllocations); 2 partition(s) drawing on shared counters"
	if got != want {
		t.Errorf("Strategies = %q, want %q", got, want)
	}
	if s := Strategies(rs[:0]); len(s) != 0 {
		t.Errorf("Strategies of nothing = %v", s)
	}
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

// Device-plugin mode on nodes that declare nothing about their units: an
// extended resource is not shareable, so the requirement is not verified.
func TestGPUSharingWithDevicePluginNotVerifiedWithoutDeclaredSharing(t *testing.T) {
	res := check.RunDevicePlugin(t, testenv.Shared(t), string(testenv.GPUResourceName))
	if res.Status != conformance.Skipped || !strings.Contains(res.Reason, "not verified: no node advertising nvidia.com/gpu declares fewer devices than units") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectTranscript(t, res, "kwok-gpu-0: 2 units; no sharing labels")
}

// A node that declares one device time-sliced into four units, with the
// labels NVIDIA's GPU feature discovery sets: two pods each holding a unit
// run there at once.
func TestGPUSharingWithDevicePluginOnTimeSlicedNode(t *testing.T) {
	env := testenv.Shared(t)
	const res = "example.com/sliced-gpu"
	checktest.AddNode(t, env, testenv.Node{Name: "kwok-sliced-0",
		Labels:      map[string]string{res + ".count": "1", res + ".replicas": "4", res + ".sharing-strategy": "time-slicing"},
		Allocatable: corev1.ResourceList{res: resource.MustParse("4")}})
	r := check.RunDevicePlugin(t, env, res)
	if r.Status != conformance.Passed {
		t.Fatalf("status %s, reason %q", r.Status, r.Reason)
	}
	checktest.ExpectStatuses(t, r, map[string]conformance.Status{"MoreHoldersThanDevices": conformance.Passed})
	checktest.ExpectSkippedOnKwok(t, r, "PodsSeeSharedDevice")
	checktest.ExpectTranscript(t, r,
		"kwok-sliced-0: 4 units; example.com/sliced-gpu.count=1, example.com/sliced-gpu.replicas=4,",
		"Run 2 pods on node kwok-sliced-0, each requesting one example.com/sliced-gpu",
		"2 pods each holding one example.com/sliced-gpu ran at once on node kwok-sliced-0, which declares 1 device(s)",
	)
	checktest.ExpectCleanedUp(t, env, r)
}
