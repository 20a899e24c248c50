package secureaccess

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/kaic-dev/kaic/internal/testenv"
	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/checktest"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
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
		// The shared control plane has four free devices: every pod starts at once.
		"Start the pods of every test at once: 4 devices of DeviceClass gpu.example.com are free, enough for the 4 they hold together",
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

// With two devices the tests cannot hold theirs at once: each starts its
// pods in its turn, after the earlier tests released theirs, and all pass.
func TestSecureAcceleratorAccessPassesWithTwoDevices(t *testing.T) {
	env := testenv.Shared(t)
	const driver = "gpu.pair.example.com"
	checktest.PublishSlice(t, env, testenv.FakeGPUSlice("kwok-gpu-1", driver, 2))
	checktest.EnsureDeviceClass(t, env, driver, driver)
	res := check.Run(t, env, driver, driver)
	if res.Status != conformance.Passed {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	checktest.ExpectStatuses(t, res, map[string]conformance.Status{
		"PositiveAccessTest":          conformance.Passed,
		"NegativeIsolationTest":       conformance.Passed,
		"MultiContainerIsolationTest": conformance.Passed,
		"DistinctDevicesTest":         conformance.Passed,
	})
	checktest.ExpectTranscript(t, res,
		"2 devices of DeviceClass gpu.pair.example.com free, fewer than the 4 held at once by every test: each test starts its pods in its turn",
		"hold different devices: gpu.pair.example.com/kwok-gpu-1/")
	if tr := checktest.Transcript(res); strings.Contains(tr, "every test at once") {
		t.Errorf("pods started at once with two devices:\n%s", tr)
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// A DeviceClass that selects none of the driver's devices leaves the
// positive pod unschedulable although devices are free.
func TestSecureAcceleratorAccessFailsWhenDeviceClassSelectsNothing(t *testing.T) {
	t.Parallel() // waits out a grace on a class, resource or node of its own
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
	t.Parallel() // waits out a grace on a class, resource or node of its own
	res := check.RunDevicePlugin(t, testenv.Shared(t), "example.com/absent-gpu")
	if res.Status != conformance.Failed || !strings.Contains(res.Reason, "no node advertises allocatable example.com/absent-gpu") {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
}

// The tests where other workloads hold the devices wait out the check's
// scheduling timeout, shortened for all three at once: they use drivers,
// nodes and resources of their own, so they wait side by side.
func TestSecureAcceleratorAccessWhenOthersHoldTheDevices(t *testing.T) {
	shortScheduleTimeout(t)
	for name, run := range map[string]func(*testing.T){
		"NotVerifiedWhenDevicesHeldByOthers":           devicesHeldByOthers,
		"WaitsForTheClassDevicesWhileOthersAreFree":    waitsForTheClassDevicesWhileOthersAreFree,
		"DevicePluginNotVerifiedWhenUnitsHeldByOthers": devicePluginUnitsHeldByOthers,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			run(t)
		})
	}
}

// On a busy shared cluster every device of the model is held by pods kaic
// did not create (here two pods of a namespace of their own, whose claims
// the scheduler allocated both devices of a driver on one node). The
// check's pod waits out the scheduling timeout, and the check is not
// verified, naming the node, the count and the holders: the cluster has
// the devices, kaic could not get one. It is not a failure.
func devicesHeldByOthers(t *testing.T) {
	env := testenv.Shared(t)
	const driver = "gpu.busy.example.com"
	checktest.PublishSlice(t, env, testenv.FakeGPUSlice("kwok-gpu-0", driver, 2))
	checktest.EnsureDeviceClass(t, env, driver, driver)
	ns := holdClaims(t, env, 2, driver)
	res := check.Run(t, env, driver, driver)
	expectNotVerifiedBusy(t, res, "2 of 2 devices on node kwok-gpu-0 are held by other workloads (pod "+ns+"/hog-",
		"pod pos-pod, which claims one gpu.busy.example.com device, got none within 40s")
	checktest.ExpectTranscript(t, res,
		"devices of driver gpu.busy.example.com that DeviceClass gpu.busy.example.com admits held before the check",
		"kwok-gpu-0: 2 devices, 0 free, 0 held by kaic's checks, 2 by other workloads")
}

// Devices of the driver that the model's DeviceClass does not admit (as
// kaic-fake-gpu's time-sliced ones, which another class serves) are no
// reason to call the check's pod unschedulable "although devices are
// free": while other workloads hold the two the class admits, the pod
// waits for one of those, and the check is not verified, counting only
// the class's devices.
func waitsForTheClassDevicesWhileOthersAreFree(t *testing.T) {
	env := testenv.Shared(t)
	const driver, class = "gpu.split.example.com", "low.gpu.split.example.com"
	checktest.PublishSlice(t, env, testenv.FakeGPUSlice("kwok-gpu-1", driver, 4))
	dc := testenv.DeviceClassFor(class, driver)
	dc.Spec.Selectors = append(dc.Spec.Selectors, resourcev1.DeviceSelector{
		CEL: &resourcev1.CELDeviceSelector{Expression: fmt.Sprintf("device.attributes[%q].index < 2", driver)},
	})
	if _, err := env.DRA().DeviceClasses().Create(t.Context(), dc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ns := holdClaims(t, env, 2, class)
	res := check.Run(t, env, driver, class)
	expectNotVerifiedBusy(t, res, "2 of 2 devices on node kwok-gpu-1 are held by other workloads (pod "+ns+"/hog-",
		"pod pos-pod, which claims one "+class+" device, got none within 40s")
	checktest.ExpectTranscript(t, res,
		"no device of DeviceClass "+class+" is free; waiting for one to be released",
		"kwok-gpu-1: 2 devices, 0 free, 0 held by kaic's checks, 2 by other workloads")
	if tr := checktest.Transcript(res); strings.Contains(tr, "although") {
		t.Errorf("the pod was called unschedulable although devices are free:\n%s", tr)
	}
}

// The same in device-plugin mode: a node's two units of the extended
// resource are requested by pods kaic did not create.
func devicePluginUnitsHeldByOthers(t *testing.T) {
	env := testenv.Shared(t)
	const busy = "example.com/busy-gpu"
	checktest.AddNode(t, env, testenv.Node{Name: "kwok-busy-0", Allocatable: corev1.ResourceList{busy: resource.MustParse("2")}})
	ns := holdDevices(t, env, 2, func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{busy: resource.MustParse("1")}
	}, nil)
	res := check.RunDevicePlugin(t, env, busy)
	expectNotVerifiedBusy(t, res, "2 of 2 devices on node kwok-busy-0 are held by other workloads (pod "+ns+"/hog-",
		"pod pos-pod, which requests one example.com/busy-gpu, got none within 40s")
}

// shortScheduleTimeout has the check's pods wait 40 s rather than 2 min
// for a device (past the 20 s an unschedulable pod is given before the
// free devices are counted): on a cluster whose devices stay held that
// wait is all the test would do. It sets a package variable: the tests
// that use it run as subtests of one test, which restores it once they
// all ended.
func shortScheduleTimeout(t *testing.T) {
	saved := devicepod.ScheduleTimeout
	devicepod.ScheduleTimeout = 40 * time.Second
	t.Cleanup(func() { devicepod.ScheduleTimeout = saved })
}

// Free units the pod cannot get (a taint it does not tolerate on the only
// node advertising them) stay a failure, after a short grace rather than
// the scheduling timeout: nothing holds them, so nothing will release them.
func TestSecureAcceleratorAccessWithDevicePluginFailsWhenFreeUnitsDoNotFit(t *testing.T) {
	t.Parallel() // waits out a grace on a class, resource or node of its own
	env := testenv.Shared(t)
	const tainted = "example.com/tainted-gpu"
	node := testenv.Node{Name: "kwok-tainted-0", Allocatable: corev1.ResourceList{tainted: resource.MustParse("2")}}
	checktest.AddNode(t, env, node)
	nodes := env.Clientset().CoreV1().Nodes()
	// kwok updates the node's status at the same time: retry on conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(t.Context(), node.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "example.com/maintenance", Effect: corev1.TaintEffectNoSchedule})
		_, err = nodes.Update(t.Context(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	res := check.RunDevicePlugin(t, env, tainted)
	if res.Status != conformance.Failed {
		t.Fatalf("status %s, reason %q", res.Status, res.Reason)
	}
	for _, want := range []string{"pod pos-pod stays unschedulable although 2 unit(s) of extended resource example.com/tainted-gpu are free on Ready nodes (kwok-tainted-0)", "untolerated taint"} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason lacks %q: %q", want, res.Reason)
		}
	}
	checktest.ExpectCleanedUp(t, env, res)
}

// holdClaims is holdDevices with pods that each claim one device of
// DeviceClass class through a ResourceClaimTemplate of their namespace.
func holdClaims(t *testing.T, env *testenv.Env, n int, class string) string {
	t.Helper()
	return holdDevices(t, env, n, func(p *corev1.Pod) {
		p.Spec.ResourceClaims = []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimTemplateName: new("one-gpu")}}
		p.Spec.Containers[0].Resources.Claims = []corev1.ResourceClaim{{Name: "gpu"}}
	}, func(ns string) error {
		_, err := env.DRA().ResourceClaimTemplates(ns).Create(t.Context(), devicepod.OneDeviceTemplate("one-gpu", class), metav1.CreateOptions{})
		return err
	})
}

// holdDevices runs n pods (hog-0 …) that hold devices of the model in a
// namespace kaic did not create, as another team's workload would, after
// prepare (if set) has readied the namespace; hold makes a pod hold its
// device. It waits until they all run and returns the namespace, which is
// deleted, and waited for, when the test ends so its devices are free
// again.
func holdDevices(t *testing.T, env *testenv.Env, n int, hold func(*corev1.Pod), prepare func(ns string) error) string {
	t.Helper()
	client := env.Clientset()
	ns, err := client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "shared-workloads-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting namespace %s: %v", ns.Name, err)
			return
		}
		for ctx.Err() == nil {
			if _, err := client.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return
			}
			time.Sleep(time.Second)
		}
		t.Errorf("namespace %s was not deleted", ns.Name)
	})
	if err := conformance.WaitForDefaultServiceAccount(t.Context(), client, ns.Name); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		if err := prepare(ns.Name); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("hog-%d", i)},
			Spec: corev1.PodSpec{
				Containers:  []corev1.Container{{Name: "work", Image: "registry.example.com/training:1"}},
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			},
		}
		hold(pod)
		if _, err := client.CoreV1().Pods(ns.Name).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for i := range n {
		if _, err := conformance.WaitForPod(ctx, client, ns.Name, fmt.Sprintf("hog-%d", i), conformance.PodRunning); err != nil {
			t.Fatalf("the pods holding the devices did not run: %v", err)
		}
	}
	return ns.Name
}

// expectNotVerifiedBusy checks that the check was not verified (skipped,
// not failed) because its positive pod found every device held by others,
// and that the reason says so with each of want.
func expectNotVerifiedBusy(t *testing.T, res conformance.Result, want ...string) {
	t.Helper()
	if res.Status != conformance.Skipped {
		t.Fatalf("status %s, reason %q, want skipped (not verified)", res.Status, res.Reason)
	}
	checktest.ExpectSubtests(t, res, map[string]conformance.Status{
		"PositiveAccessTest":          conformance.Skipped,
		"NegativeIsolationTest":       "",
		"MultiContainerIsolationTest": "",
	})
	want = append([]string{"not verified: "}, want...)
	for _, w := range want {
		if !strings.Contains(res.Reason, w) {
			t.Errorf("reason lacks %q: %q", w, res.Reason)
		}
	}
}
