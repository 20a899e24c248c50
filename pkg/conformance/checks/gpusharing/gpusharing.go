// Package gpusharing looks at the gpu_sharing requirement: a sharing
// strategy (time-slicing or MPS oversubscription, or hardware partitions
// exposed as schedulable resources) that lets more workloads hold an
// accelerator than there are devices.
//
// It first shows DRA's claim sharing: a claim referenced by two
// containers of one pod, and a claim referenced by two pods, are each
// allocated one device that is reserved for all their consumers, every
// consumer runs, and each container sees that same device. Every DRA
// driver allows that, so it is not a sharing strategy; a driver that
// cannot even share a claim fails the check. It then records the
// strategies the driver's ResourceSlices publish (devices that several
// claims may hold at once, partitions drawing on shared counters) and,
// on devices several claims may hold, runs more holders than devices
// (strategy.go): one claim more than a node has such devices, each in
// its own pod, all running at once. A driver that publishes no such
// device, or none a DeviceClass admits, leaves the requirement not
// verified, with the reason.
//
// In device-plugin mode (deviceplugin.go) sharing is a node declaring
// fewer devices than the units it advertises, of the model's extended
// resource or of its shared variant <resource>.shared; the check then
// runs more holders than devices on it, and a cluster that declares none
// is not verified.
package gpusharing

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/utils/ptr"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
)

// ID is the requirement this package verifies.
const ID = "gpu_sharing"

// Names of the objects the check creates.
const (
	template        = "shared-accelerator-template"
	sharedClaim     = "shared-accelerator"
	podClaim        = "shared"
	containersPod   = "shared-by-containers"
	podA, podB      = "sharer-a", "sharer-b"
	firstContainer  = "first"
	secondContainer = "second"
)

// Check returns the gpu_sharing check.
func Check() conformance.Check {
	return conformance.WithNeeds(conformance.NewCheck(ID, run), devicepod.Needs)
}

func run(t *conformance.T, env *conformance.Env) {
	if devicepod.DevicePlugin(env) {
		runDevicePlugin(t, env)
		return
	}
	acc := env.Accelerator
	inventory := devicepod.Preflight(t, env)
	t.Logf("accelerator model %q: DeviceClass %s, driver %s", acc.Model, acc.DeviceClass, acc.DRADriver)
	t.Step("Look for the sharing strategies driver %s publishes", acc.DRADriver)
	list, err := env.DRA().ResourceSlices().List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, acc.DRADriver).String(),
	})
	if err != nil {
		t.Fatalf("listing ResourceSlices: %v", err)
	}
	strategies := Strategies(list.Items)
	if len(strategies) == 0 {
		t.Observe("sharing strategies of driver "+acc.DRADriver, "none")
	} else {
		t.Observe("sharing strategies of driver "+acc.DRADriver, strategies)
	}
	early := startTogether(t, env)
	t.Run("SharedAcrossContainers", func(t *conformance.T) { acrossContainers(t, env, early) })
	t.Run("SharedAcrossPods", func(t *conformance.T) { acrossPods(t, env, early) })
	if t.Failed() {
		return
	}
	if len(strategies) == 0 {
		t.Skipf("not verified: driver %s publishes no sharing strategy (no device that several claims may hold at once, "+
			"no partitions); one claim shared by several consumers, shown above, is DRA's claim sharing, which every driver allows", acc.DRADriver)
	}
	if !slices.ContainsFunc(list.Items, func(s resourcev1.ResourceSlice) bool {
		return slices.ContainsFunc(s.Spec.Devices, func(d resourcev1.Device) bool { return ptr.Deref(d.AllowMultipleAllocations, false) })
	}) {
		t.Skipf("not verified: driver %s publishes %s, but kaic does not yet schedule partitions as separate resources", acc.DRADriver, strings.Join(strategies, " and "))
	}
	strategy(t, env, list.Items, inventory)
}

// Strategies names the sharing strategies the devices of rs publish:
// devices that several claims may hold at once (allowMultipleAllocations,
// as time-slicing and MPS are modelled), and partitions that draw on a
// device's shared counters.
func Strategies(rs []resourcev1.ResourceSlice) []string {
	var shared, partitions int
	for _, s := range rs {
		for _, d := range s.Spec.Devices {
			if d.AllowMultipleAllocations != nil && *d.AllowMultipleAllocations {
				shared++
			}
			if len(d.ConsumesCounters) > 0 {
				partitions++
			}
		}
	}
	var out []string
	if shared > 0 {
		out = append(out, fmt.Sprintf("%d device(s) that several claims may hold at once (allowMultipleAllocations)", shared))
	}
	if partitions > 0 {
		out = append(out, fmt.Sprintf("%d partition(s) drawing on shared counters", partitions))
	}
	return out
}

// startTogether starts the pods of both claim-sharing tests at once when
// two devices are free, one for each test's claim, so that the second
// test does not wait for its pods to start after the first one's ran.
// With one free (or none, other workloads holding them), each test starts
// its pods in its turn, after the first released its device. It reports
// whether the pods were started.
func startTogether(t *conformance.T, env *conformance.Env) bool {
	if !devicepod.StartTogether(t, env, 2, "both claim-sharing tests") {
		return false
	}
	startContainers(t, env)
	startPods(t, env)
	return true
}

func startContainers(t *conformance.T, env *conformance.Env) {
	t.Step("Run pod %s whose containers %s and %s both reference one claim for one %s device",
		containersPod, firstContainer, secondContainer, env.Accelerator.DeviceClass)
	t.Apply(devicepod.OneDeviceTemplate(template, env.Accelerator.DeviceClass))
	devicepod.Start(t, env, devicepod.Spec{
		Name:   containersPod,
		Claims: []corev1.PodResourceClaim{devicepod.FromTemplate(podClaim, template)},
		Containers: []devicepod.Container{
			{Name: firstContainer, Claims: []string{podClaim}},
			{Name: secondContainer, Claims: []string{podClaim}},
		},
	})
}

// acrossContainers checks the pod whose containers share a claim (unless
// started, it starts it).
func acrossContainers(t *conformance.T, env *conformance.Env, started bool) {
	if !started {
		startContainers(t, env)
	}
	defer devicepod.ReleaseNow(t, env, containersPod)
	pod := devicepod.WaitRunning(t, env, containersPod)
	claim := devicepod.Claim(t, env, pod, podClaim)
	dev := devicepod.OneDevice(t, env, claim, pod.Spec.NodeName)
	if !devicepod.ReservedFor(claim, pod.UID) {
		t.Errorf("ResourceClaim %s is not reserved for pod %s: %v", claim.Name, containersPod, devicepod.Consumers(claim))
	}
	if n := runningContainers(pod); n != 2 {
		t.Errorf("%d of the 2 containers sharing the device are running", n)
	}
	t.Logf("both containers of pod %s share device %s", containersPod, dev)
	t.Run("ContainersSeeSameDevice", func(t *conformance.T) {
		devicepod.SkipWithoutContainers(t, env, pod)
		t.Step("Read what the probe in each container of pod %s sees", containersPod)
		first := devicepod.Read(t, env, containersPod, firstContainer)
		second := devicepod.Read(t, env, containersPod, secondContainer)
		devicepod.ExpectOne(t, env, "container "+firstContainer, first, dev)
		devicepod.ExpectOne(t, env, "container "+secondContainer, second, dev)
		sameDevice(t, "containers "+firstContainer+" and "+secondContainer, first, second, "one claim")
	})
}

func startPods(t *conformance.T, env *conformance.Env) {
	t.Step("Run pods %s and %s that both reference ResourceClaim %s for one %s device",
		podA, podB, sharedClaim, env.Accelerator.DeviceClass)
	t.Apply(devicepod.OneDeviceClaim(sharedClaim, env.Accelerator.DeviceClass))
	for _, name := range []string{podA, podB} {
		devicepod.Start(t, env, devicepod.Spec{Name: name, Claims: []corev1.PodResourceClaim{devicepod.FromClaim(podClaim, sharedClaim)}})
	}
}

// acrossPods checks the two pods that share a claim (unless started, it
// starts them).
func acrossPods(t *conformance.T, env *conformance.Env, started bool) {
	if !started {
		startPods(t, env)
	}
	names := []string{podA, podB}
	defer devicepod.ReleaseNow(t, env, names...)
	pods := make([]*corev1.Pod, len(names))
	for i, name := range names {
		pods[i] = devicepod.WaitRunning(t, env, name)
	}
	claim := devicepod.Claim(t, env, pods[1], podClaim)
	dev := devicepod.OneDevice(t, env, claim, pods[0].Spec.NodeName)
	if pods[0].Spec.NodeName != pods[1].Spec.NodeName {
		t.Errorf("pods %s and %s share a device but run on different nodes, %s and %s", podA, podB, pods[0].Spec.NodeName, pods[1].Spec.NodeName)
	}
	for _, p := range pods {
		if !devicepod.ReservedFor(claim, p.UID) {
			t.Errorf("ResourceClaim %s is not reserved for pod %s: it is reserved for %v", sharedClaim, p.Name, devicepod.Consumers(claim))
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("pods %s and %s on node %s share device %s", podA, podB, pods[0].Spec.NodeName, dev)
	t.Run("PodsSeeSameDevice", func(t *conformance.T) {
		devicepod.SkipWithoutContainers(t, env, pods[0])
		t.Step("Read what the probe in each pod sees")
		a := devicepod.Read(t, env, podA, "probe")
		b := devicepod.Read(t, env, podB, "probe")
		devicepod.ExpectOne(t, env, "pod "+podA, a, dev)
		devicepod.ExpectOne(t, env, "pod "+podB, b, dev)
		sameDevice(t, "pods "+podA+" and "+podB, a, b, "one claim")
	})
}

// sameDevice fails the test unless a and b, who hold what, see the same
// devices.
func sameDevice(t *conformance.T, who string, a, b devicepod.Report, what string) {
	if !slices.Equal(a.Devices, b.Devices) {
		t.Errorf("%s see different devices, %q and %q, although they hold %s", who, strings.Join(a.Devices, ","), strings.Join(b.Devices, ","), what)
	}
}

func runningContainers(pod *corev1.Pod) int {
	n := 0
	for _, s := range pod.Status.ContainerStatuses {
		if s.State.Running != nil {
			n++
		}
	}
	return n
}
