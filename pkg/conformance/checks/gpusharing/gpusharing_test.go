package gpusharing

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/probe/fakegpu"
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
		"Start the pods of both claim-sharing tests at once: 4 devices of DeviceClass gpu.example.com are free",
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
	if res.Status != conformance.Skipped || !strings.Contains(res.Reason, "not verified: no node advertising nvidia.com/gpu or nvidia.com/gpu.shared declares fewer devices than units") {
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

// timeSliced publishes on a new node what kaic-fake-gpu publishes with
// time-slicing on, for driver: three devices, the last two shared by up
// to two claims each. With classes, it creates the DeviceClasses the
// chart creates for them: the driver's own, of the exclusive devices,
// and the shared devices' one.
func timeSliced(t *testing.T, env *testenv.Env, node, driver string, classes bool) {
	t.Helper()
	checktest.AddNode(t, env, testenv.Node{Name: node})
	spec := fakegpu.Spec{Node: node, Count: 3, Sharing: fakegpu.Sharing{Strategy: fakegpu.StrategyTimeSlicing, Replicas: 2, Devices: 2}}
	pool := fakegpu.Resources(node, spec.Devices()).Pools[node]
	checktest.PublishSlice(t, env, &resourcev1.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-" + driver},
		Spec: resourcev1.ResourceSliceSpec{
			Driver: driver, NodeName: ptr.To(node),
			Pool:    resourcev1.ResourcePool{Name: node, Generation: 1, ResourceSliceCount: 1},
			Devices: pool.Slices[0].Devices,
		},
	})
	createClass(t, env, driver, fakegpu.ExclusiveSelector(driver))
	if classes {
		createClass(t, env, "shared."+driver, fakegpu.SharedSelector(driver))
	}
}

// createClass creates a DeviceClass for the rest of the test.
func createClass(t *testing.T, env *testenv.Env, name, selector string) {
	t.Helper()
	classes := env.DRA().DeviceClasses()
	class := &resourcev1.DeviceClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       resourcev1.DeviceClassSpec{Selectors: []resourcev1.DeviceSelector{{CEL: &resourcev1.CELDeviceSelector{Expression: selector}}}},
	}
	if _, err := classes.Create(t.Context(), class, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := classes.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting DeviceClass %s: %v", name, err)
		}
	})
}

// With the devices kaic-fake-gpu shares under time-slicing and the
// chart's DeviceClasses, three claims of one device each hold the node's
// two shared devices at once, the real scheduler giving each claim its
// own share; the claim-sharing tests keep to the exclusive device.
func TestGPUSharingRunsMoreHoldersThanSharedDevices(t *testing.T) {
	env := testenv.Shared(t)
	const driver, node = "timesliced.example.com", "kwok-timesliced-0"
	timeSliced(t, env, node, driver, true)
	res := check.Run(t, env, driver, driver)
	if res.Status != conformance.Passed {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"SharedAcrossContainers": conformance.Passed,
		"SharedAcrossPods":       conformance.Passed,
		"MoreHoldersThanDevices": conformance.Passed,
	})
	checktest.ExpectSkippedOnKwok(t, res, "PodsSeeSharedDevice")
	checktest.ExpectTranscript(t, res,
		"timesliced.example.com/kwok-timesliced-0/gpu-1 on node kwok-timesliced-0: takes",
		"2 claim(s) at once (memory 80Gi, 0 per claim; shares 2, 1 per claim)",
		"shared.timesliced.example.com: admits 2 shared and 0 other device(s) of timesliced.example.com",
		"timesliced.example.com: admits 0 shared and 1 other device(s)",
		"Run 3 pods on node kwok-timesliced-0, each with its own ResourceClaim for one device of DeviceClass shared.timesliced.example.com",
		"consumed memory 0, shares 1",
		"3 pods, each with its own claim of one device, ran at once on node kwok-timesliced-0, which has 2 device(s) several claims may hold",
		"both containers of pod shared-by-containers share device timesliced.example.com/kwok-timesliced-0/gpu-0",
		// The class admits one device: the second test's pods wait for it.
		"1 device of DeviceClass timesliced.example.com free, fewer than the 2 held at once by both claim-sharing tests",
	)
	if strings.Contains(checktest.Transcript(res), "share none") {
		t.Error("a holder's allocation records no share")
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// Devices several claims may hold that no DeviceClass admits cannot be
// claimed: not verified, saying so.
func TestGPUSharingNotVerifiedWhenNoClassAdmitsSharedDevices(t *testing.T) {
	env := testenv.Shared(t)
	const driver, node = "unclassed.example.com", "kwok-unclassed-0"
	timeSliced(t, env, node, driver, false)
	res := check.Run(t, env, driver, driver)
	if res.Status != conformance.Skipped || !strings.Contains(res.Reason,
		"not verified: driver unclassed.example.com publishes 2 device(s) that several claims may hold, but no DeviceClass admits any of them") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"SharedAcrossPods":       conformance.Passed,
		"MoreHoldersThanDevices": "",
	})
	checktest.ExpectCleanedUp(t, env, res)
}

// A node as kaic-fake-gpu labels it in device-plugin mode with
// time-slicing: one exclusive example.com/gpu, and two devices shared as
// four units of example.com/gpu.shared, declared under that name. Three
// pods each holding a shared unit run there at once.
func TestGPUSharingWithDevicePluginOnSharedResource(t *testing.T) {
	env := testenv.Shared(t)
	const res = "example.com/gpu"
	sharing := fakegpu.Sharing{Strategy: fakegpu.StrategyTimeSlicing, Replicas: 2, Devices: 2}
	checktest.AddNode(t, env, testenv.Node{Name: "kwok-shared-units-0",
		Labels: sharing.NodeLabels(res),
		Allocatable: corev1.ResourceList{
			res: resource.MustParse("1"), corev1.ResourceName(fakegpu.SharedResourceName(res)): resource.MustParse("4"),
		}})
	r := check.RunDevicePlugin(t, env, res)
	if r.Status != conformance.Passed {
		t.Fatalf("status %s, reason %q", r.Status, r.Reason)
	}
	checktest.ExpectStatuses(t, r, map[string]conformance.Status{"MoreHoldersThanDevices": conformance.Passed})
	checktest.ExpectSkippedOnKwok(t, r, "PodsSeeSharedDevice")
	checktest.ExpectTranscript(t, r,
		"kwok-shared-units-0: 1 units; no sharing labels",
		"kwok-shared-units-0: 4 units; example.com/gpu.shared.count=2, example.com/gpu.shared.replicas=2,",
		"example.com/gpu.shared.sharing-strategy=time-slicing",
		"Run 3 pods on node kwok-shared-units-0, each requesting one example.com/gpu.shared",
		"requested: 1 example.com/gpu.shared",
	)
	checktest.ExpectCleanedUp(t, env, r)
}

// As GPU feature discovery labels a renamed resource: the shared units'
// replicas declared under the model's resource name.
func TestGPUSharingWithDevicePluginOnRenamedResource(t *testing.T) {
	env := testenv.Shared(t)
	const res = "example.com/renamed-gpu"
	checktest.AddNode(t, env, testenv.Node{Name: "kwok-renamed-0",
		Labels: map[string]string{res + ".replicas": "4", res + ".sharing-strategy": "time-slicing", res + ".count": "1"},
		Allocatable: corev1.ResourceList{
			res: resource.MustParse("1"), res + ".shared": resource.MustParse("8"),
		}})
	r := check.RunDevicePlugin(t, env, res)
	if r.Status != conformance.Passed {
		t.Fatalf("status %s, reason %q", r.Status, r.Reason)
	}
	checktest.ExpectTranscript(t, r,
		"kwok-renamed-0: 8 units; example.com/renamed-gpu.count=1, example.com/renamed-gpu.replicas=4",
		"Run 3 pods on node kwok-renamed-0, each requesting one example.com/renamed-gpu.shared: the node declares 2 device(s) for its 8 units",
	)
	checktest.ExpectCleanedUp(t, env, r)
}
