// Package secureaccess verifies the secure_accelerator_access requirement:
// a container sees an accelerator only when it was allocated one. A pod
// whose claim got a device sees exactly that device; a pod without a
// claim on the same node sees none; in one pod, the container that
// references the claim sees the device and its sibling does not; and two
// pods that each claim a device get different devices. In device-plugin
// mode the pods request the model's extended resource instead of claims,
// and which device each got is what its containers see, since the API
// names none.
package secureaccess

import (
	"context"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
)

// ID is the requirement this package verifies.
const ID = "secure_accelerator_access"

// Names of the objects the check creates, after the official suite's.
const (
	template  = "accelerator-claim-template"
	podClaim  = "claim"
	posPod    = "pos-pod"
	negPod    = "neg-pod"
	multiPod  = "multi-container-pod"
	isolated1 = "isolation-pod-1"
	isolated2 = "isolation-pod-2"
)

// Check returns the secure_accelerator_access check.
func Check() conformance.Check {
	return conformance.WithNeeds(conformance.NewCheck(ID, run), devicepod.Needs)
}

func run(t *conformance.T, env *conformance.Env) {
	acc := env.Accelerator
	inventory := devicepod.Preflight(t, env)
	t.Logf("accelerator model %q: %s; a container proves it holds a device by %s", acc.Model, devicepod.How(env), evidence(env))
	devicepod.ApplyTemplate(t, env, template)
	early := startTogether(t, env, inventory)

	var pos *corev1.Pod
	if t.Run("PositiveAccessTest", func(t *conformance.T) { pos = positive(t, env, early) }); pos == nil {
		// Without one pod holding a device, the isolation tests would
		// only fail (or, the devices being held by others, wait) the same
		// way.
		t.Logf("no pod could hold a device, so isolation was not tested")
		return
	}
	t.Run("NegativeIsolationTest", func(t *conformance.T) { negative(t, env, pos, early) })
	devicepod.ReleaseNow(t, env, posPod, negPod)
	t.Run("MultiContainerIsolationTest", func(t *conformance.T) { multiContainer(t, env, early) })
	t.Run("DistinctDevicesTest", func(t *conformance.T) { distinct(t, env, inventory, early) })
}

// heldAtOnce is how many devices the tests' pods hold when they all run
// at once: one for the positive pod, one for the multi-container pod, two
// for the distinct-devices pods (the negative pod holds none).
const heldAtOnce = 4

// startTogether starts the pods of every test at once when the cluster
// has a device free for each, so that the tests, which still look at them
// one after another, wait for pods that started side by side rather than
// for one pod start after another. The negative pod goes to the node the
// positive pod was scheduled to. With fewer devices free (a cluster of
// two devices, or one whose devices other workloads hold), each test
// starts its pods in its turn and the earlier tests' pods are released
// first. It reports whether the pods were started.
func startTogether(t *conformance.T, env *conformance.Env, inventory map[string][]devicepod.Device) bool {
	if !devicepod.StartTogether(t, env, heldAtOnce, "every test") {
		return false
	}
	startPositive(t, env)
	startMulti(t, env)
	startDistinct(t, env, inventory)
	ctx, cancel := context.WithTimeout(t.Context(), devicepod.ScheduleTimeout)
	defer cancel()
	pos, err := conformance.WaitForPod(ctx, env.Client, env.Namespace, posPod, func(p *corev1.Pod) (bool, error) { return p.Spec.NodeName != "", nil })
	if err != nil {
		// PositiveAccessTest says why; the negative pod then waits for it.
		t.Logf("pod %s was not scheduled within %s (%v): the negative pod starts after it", posPod, devicepod.ScheduleTimeout, err)
		return true
	}
	startNegative(t, env, pos.Spec.NodeName)
	return true
}

func evidence(env *conformance.Env) string {
	var ways []string
	if p := env.Accelerator.DeviceEnvPrefix; p != "" {
		ways = append(ways, "environment variables "+p+"<n>")
	}
	if g := env.Accelerator.DeviceGlob; g != "" {
		ways = append(ways, "device files "+g)
	}
	return strings.Join(ways, " and ")
}

func startPositive(t *conformance.T, env *conformance.Env) {
	t.Step("Run pod %s whose container %s", posPod, devicepod.Asking(env))
	devicepod.Start(t, env, devicepod.OneDevicePod(env, posPod, template, podClaim))
}

// positive runs a pod with a claim (unless started, it was started with
// the others) and keeps it for the negative test.
func positive(t *conformance.T, env *conformance.Env, started bool) *corev1.Pod {
	if !started {
		startPositive(t, env)
	}
	pod := devicepod.WaitRunning(t, env, posPod)
	dev := devicepod.Holds(t, env, pod, podClaim)
	t.Run("ProbeSeesAllocatedDevice", func(t *conformance.T) {
		devicepod.SkipWithoutContainers(t, env, pod)
		t.Step("Read what the probe in pod %s sees", posPod)
		devicepod.ExpectOne(t, env, "pod "+posPod, devicepod.Read(t, env, posPod, "probe"), dev)
		if !t.Failed() {
			t.Shown("a pod's container saw exactly the device allocated to it")
		}
	})
	return pod
}

// negative runs a pod without a claim (or a request of the extended
// resource) on the node where the positive pod holds a device, so it
// cannot pass by landing on a node without one.
func negative(t *conformance.T, env *conformance.Env, pos *corev1.Pod, started bool) {
	if pos == nil {
		t.Fatalf("no node is known to hold a device for this pod: PositiveAccessTest failed")
	}
	if !started || !exists(t, env, negPod) {
		startNegative(t, env, pos.Spec.NodeName)
	}
	pod := devicepod.WaitRunning(t, env, negPod)
	if pod.Spec.NodeName != pos.Spec.NodeName {
		t.Fatalf("pod %s runs on node %s, not on node %s where pod %s holds a device", negPod, pod.Spec.NodeName, pos.Spec.NodeName, posPod)
	}
	if !devicepod.DevicePlugin(env) {
		if len(pod.Status.ResourceClaimStatuses) != 0 {
			t.Errorf("pod %s references no claim but has claim statuses %+v", negPod, pod.Status.ResourceClaimStatuses)
		}
		reservedForPod(t, env, pod)
	}
	t.Run("ProbeSeesNoDevice", func(t *conformance.T) {
		devicepod.SkipWithoutContainers(t, env, pod)
		t.Step("Read what the probe in pod %s sees", negPod)
		devicepod.ExpectNone(t, env, "pod "+negPod, devicepod.Read(t, env, negPod, "probe"))
		if !t.Failed() {
			t.Shown("a pod %s, on the node where another pod held a device, saw none", devicepod.Without(env))
		}
	})
}

func startNegative(t *conformance.T, env *conformance.Env, node string) {
	t.Step("Run pod %s %s on node %s, where pod %s holds a device", negPod, devicepod.Without(env), node, posPod)
	devicepod.Start(t, env, devicepod.Spec{Name: negPod, NodeName: node})
}

// exists tells whether the check's pod name exists.
func exists(t *conformance.T, env *conformance.Env, name string) bool {
	_, err := env.Client.CoreV1().Pods(env.Namespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("getting pod %s: %v", name, err)
	}
	return err == nil
}

// reservedForPod fails when any claim of the namespace is reserved for a
// pod that references none.
func reservedForPod(t *conformance.T, env *conformance.Env, pod *corev1.Pod) {
	claims, err := env.DRA().ResourceClaims(env.Namespace).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing ResourceClaims: %v", err)
	}
	for i := range claims.Items {
		if devicepod.ReservedFor(&claims.Items[i], pod.UID) {
			t.Errorf("ResourceClaim %s is reserved for pod %s, which references no claim", claims.Items[i].Name, pod.Name)
		}
	}
}

func startMulti(t *conformance.T, env *conformance.Env) {
	t.Step("Run pod %s: container authorized %s, container unauthorized does not", multiPod, holding(env))
	devicepod.Start(t, env, devicepod.Spec{
		Name:   multiPod,
		Claims: devicepod.TemplateClaims(env, podClaim, template),
		Containers: []devicepod.Container{
			devicepod.Holder(env, "authorized", podClaim),
			{Name: "unauthorized"},
		},
	})
}

func multiContainer(t *conformance.T, env *conformance.Env, started bool) {
	if !started {
		startMulti(t, env)
	}
	defer devicepod.ReleaseNow(t, env, multiPod)
	pod := devicepod.WaitRunning(t, env, multiPod)
	dev := devicepod.Holds(t, env, pod, podClaim)
	t.Run("OnlyAuthorizedContainerSeesDevice", func(t *conformance.T) {
		devicepod.SkipWithoutContainers(t, env, pod)
		t.Step("Read what the probe in each container of pod %s sees", multiPod)
		devicepod.ExpectOne(t, env, "container authorized", devicepod.Read(t, env, multiPod, "authorized"), dev)
		devicepod.ExpectNone(t, env, "container unauthorized", devicepod.Read(t, env, multiPod, "unauthorized"))
		if !t.Failed() {
			t.Shown("of two containers in one pod, only the one that %s saw the device", holding(env))
		}
	})
}

// holding says how the authorized container holds its device.
func holding(env *conformance.Env) string {
	if devicepod.DevicePlugin(env) {
		return "requests one " + env.Accelerator.ResourceName
	}
	return "references the claim"
}

// startDistinct starts two pods that claim a device each at the same
// time, preferably on one node so that they compete for its devices. With
// fewer than two devices in the cluster it skips t.
func startDistinct(t *conformance.T, env *conformance.Env, inventory map[string][]devicepod.Device) {
	total, node, most := 0, "", 0
	for n, devs := range inventory {
		total += len(devs)
		if len(devs) > most || (len(devs) == most && n < node) {
			node, most = n, len(devs)
		}
	}
	if total < 2 {
		// One device is a cluster the requirement allows: the verdict then
		// rests on the tests that one device can show.
		t.Skipf("%d device of %s on Ready nodes (node %s): two pods cannot hold distinct devices, so isolation between pods cannot be shown here; the verdict rests on the other tests",
			total, devicepod.Source(env), node)
	}
	prefer := ""
	if most >= 2 {
		prefer = node
		t.Step("Run pods %s and %s, each claiming one device, preferably both on node %s (%d devices)", isolated1, isolated2, node, most)
	} else {
		t.Step("Run pods %s and %s, each claiming one device (no node has two)", isolated1, isolated2)
	}
	for _, name := range []string{isolated1, isolated2} {
		spec := devicepod.OneDevicePod(env, name, template, podClaim)
		spec.PreferNode = prefer
		devicepod.Start(t, env, spec)
	}
}

// distinct checks that the two pods startDistinct started (unless
// started, it starts them) hold distinct devices and see only their own.
func distinct(t *conformance.T, env *conformance.Env, inventory map[string][]devicepod.Device, started bool) {
	if !started {
		startDistinct(t, env, inventory)
	}
	names := []string{isolated1, isolated2}
	defer devicepod.ReleaseNow(t, env, names...)
	pods := make([]*corev1.Pod, len(names))
	devs := make([]devicepod.Device, len(names))
	for i, name := range names {
		pods[i] = devicepod.WaitRunning(t, env, name)
		if devicepod.DevicePlugin(env) {
			devs[i] = devicepod.RequestsOne(t, env, pods[i])
			continue
		}
		claim := devicepod.Claim(t, env, pods[i], podClaim)
		devs[i] = devicepod.OneDevice(t, env, claim, pods[i].Spec.NodeName)
		if !devicepod.ReservedFor(claim, pods[i].UID) {
			t.Errorf("ResourceClaim %s is not reserved for pod %s: %v", claim.Name, name, devicepod.Consumers(claim))
		}
		if n := len(claim.Status.ReservedFor); n != 1 {
			t.Errorf("ResourceClaim %s of pod %s is reserved for %d consumers (%v), want only that pod", claim.Name, name, n, devicepod.Consumers(claim))
		}
	}
	sameNode := pods[0].Spec.NodeName == pods[1].Spec.NodeName
	if devicepod.DevicePlugin(env) {
		// The kubelet's device manager picks the devices; the API records
		// only the count, so what the containers see tells them apart.
		t.Logf("pods %s and %s each hold one %s, on %s and %s (same node: %t); which devices, only their containers can tell",
			isolated1, isolated2, env.Accelerator.ResourceName, pods[0].Spec.NodeName, pods[1].Spec.NodeName, sameNode)
	} else {
		if devs[0] == devs[1] {
			t.Fatalf("pods %s and %s were allocated the same device %s", isolated1, isolated2, devs[0])
		}
		t.Logf("pods %s and %s hold different devices: %s and %s (same node: %t)", isolated1, isolated2, devs[0], devs[1], sameNode)
	}
	t.Run("ProbesSeeDistinctDevices", func(t *conformance.T) {
		for _, p := range pods {
			devicepod.SkipWithoutContainers(t, env, p)
		}
		reports := make([]devicepod.Report, len(pods))
		for i, name := range names {
			reports[i] = devicepod.Read(t, env, name, "probe")
			devicepod.ExpectOne(t, env, "pod "+name, reports[i], devs[i])
		}
		// Device files are named by their node: only on one node do equal
		// paths mean the same device.
		if sameNode && reports[0].Count == 1 && reports[1].Count == 1 && slices.Equal(reports[0].Devices, reports[1].Devices) {
			t.Errorf("pods %s and %s on node %s both see %s", isolated1, isolated2, pods[0].Spec.NodeName, reports[0].Devices[0])
		}
		if !t.Failed() {
			t.Shown("two pods claiming a device each at once were given distinct devices and each saw only its own")
		}
	})
}
