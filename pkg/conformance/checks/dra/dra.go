// Package dra verifies the dra_support requirement: the cluster serves the
// resource.k8s.io API (the newest of v1, v1beta2 and v1beta1 it serves is
// used, and recorded), the accelerator model's DeviceClass exists, its
// driver publishes devices on Ready nodes, a pod that claims one device
// through a ResourceClaimTemplate gets it allocated and runs, and a claim
// for more devices than any node has leaves its pod unschedulable with the
// scheduler saying why.
package dra

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
	"github.com/kaic-dev/kaic/pkg/draapi"
	"github.com/kaic-dev/kaic/pkg/probe"
	"github.com/kaic-dev/kaic/pkg/profile"
)

// ID is the requirement this package verifies.
const ID = "dra_support"

// scheduleTimeout bounds the wait for the probe pod to run, within the
// check's own deadline.
const scheduleTimeout = 2 * time.Minute

// apiResources are the resources of resource.k8s.io the check requires,
// at the version it uses.
var apiResources = []string{"deviceclasses", "resourceclaims", "resourceclaimtemplates", "resourceslices"}

// Check returns the dra_support check.
func Check() conformance.Check { return conformance.NewCheck(ID, run) }

func run(t *conformance.T, env *conformance.Env) {
	acc := env.Accelerator
	if acc.DevicePlugin() {
		// The requirement is DRA itself, whatever allocates the devices
		// the other checks use.
		t.Logf("the profile allocates accelerators through a device plugin (%s); dra_support is about the DRA API itself, so it is verified with the model's DeviceClass and DRA driver", acc.ResourceName)
	}
	if acc.DeviceClass == "" || acc.DRADriver == "" {
		t.Fatalf("the profile's accelerator model %q names no DeviceClass or DRA driver (spec.accelerator.deviceClass, draDriver)%s", acc.Model, draItself(acc))
	}
	t.Logf("accelerator model %q: DeviceClass %s, DRA driver %s", acc.Model, acc.DeviceClass, acc.DRADriver)

	if !t.Run("APIServed", func(t *conformance.T) { apiServed(t, env) }) {
		return
	}
	if !t.Run("DeviceClassExists", func(t *conformance.T) { deviceClassExists(t, env) }) {
		return
	}
	var maxPerNode int
	if !t.Run("ResourceSlicesOnReadyNodes", func(t *conformance.T) { maxPerNode = slicesOnReadyNodes(t, env) }) {
		return
	}
	var alloc allocation
	t.Run("ClaimAllocatedAndPodRuns", func(t *conformance.T) { alloc = claimAllocated(t, env) })
	t.Run("ProbeSeesAllocatedDevice", func(t *conformance.T) { probeSeesDevice(t, env, alloc) })
	t.Run("ClaimBeyondNodeCapacityUnschedulable", func(t *conformance.T) { beyondCapacity(t, env, maxPerNode) })
}

// draItself explains, in device-plugin mode, why the check still needs
// DRA.
func draItself(acc profile.Accelerator) string {
	if !acc.DevicePlugin() {
		return ""
	}
	return ": the requirement is DRA itself, so even with allocation device-plugin it needs a DRA driver publishing devices and their DeviceClass"
}

func apiServed(t *conformance.T, env *conformance.Env) {
	t.Step("Find the versions of %s the API server serves, and the resources of the newest the checks can use", draapi.Group)
	dra := env.DRA()
	if err := dra.Err(); err != nil {
		t.Fatalf("%v", err)
	}
	api := dra.API()
	t.Observe("versions of "+draapi.Group+" served", api.ServedList())
	t.Observe("DRA API the checks use", api.String())
	if api.Version != draapi.V1 {
		t.Logf("the cluster does not serve %s (Kubernetes before 1.34, or turned off): the checks use %s", draapi.V1, api.Version)
	}
	groupVersion := api.Version.String()
	served, err := conformance.ServedResources(t, env, groupVersion)
	if err != nil {
		t.Fatalf("the API server does not serve %s: %v", groupVersion, err)
	}
	for _, want := range apiResources {
		if !slices.Contains(served, want) {
			t.Errorf("%s does not serve %s", groupVersion, want)
		}
	}
}

func deviceClassExists(t *conformance.T, env *conformance.Env) {
	name := env.Accelerator.DeviceClass
	t.Step("Get the DeviceClass %s of the accelerator model", name)
	class, err := env.DRA().DeviceClasses().Get(t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		t.Fatalf("DeviceClass %s does not exist: the DRA driver's installation should create it", name)
	}
	if err != nil {
		t.Fatalf("getting DeviceClass %s: %v", name, err)
	}
	var selectors []string
	for _, s := range class.Spec.Selectors {
		if s.CEL != nil {
			selectors = append(selectors, s.CEL.Expression)
		}
	}
	t.Observe("DeviceClass "+name+" selectors", selectors)
}

// slicesOnReadyNodes returns the largest number of the driver's devices
// on one Ready node.
func slicesOnReadyNodes(t *conformance.T, env *conformance.Env) int {
	driver := env.Accelerator.DRADriver
	t.Step("List the ResourceSlices of driver %s and the nodes they describe", driver)
	slices, err := env.DRA().ResourceSlices().List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, driver).String(),
	})
	if err != nil {
		t.Fatalf("listing ResourceSlices: %v", err)
	}
	perNode := map[string]int{}
	for _, s := range slices.Items {
		if s.Spec.NodeName != nil && *s.Spec.NodeName != "" {
			perNode[*s.Spec.NodeName] += len(s.Spec.Devices)
		} else {
			t.Logf("ResourceSlice %s is not bound to one node (%d devices); ignored", s.Name, len(s.Spec.Devices))
		}
	}
	ready := devicepod.ReadyNodes(t, env)
	var rows []string
	best, readyWithDevices := 0, 0
	names := make([]string, 0, len(perNode))
	for n := range perNode {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		state := "Ready"
		switch r, known := ready[n]; {
		case !known:
			state = "no such node"
		case !r:
			state = "NotReady"
		}
		rows = append(rows, fmt.Sprintf("%-30s %-12s %d devices", n, state, perNode[n]))
		if ready[n] && perNode[n] > 0 {
			readyWithDevices++
			best = max(best, perNode[n])
		}
	}
	if len(rows) == 0 {
		rows = append(rows, "(none)")
	}
	t.Observe(fmt.Sprintf("ResourceSlices of %s per node (%d slices)", driver, len(slices.Items)), strings.Join(rows, "\n"))
	if readyWithDevices == 0 {
		t.Fatalf("no Ready node has devices of driver %s published in a ResourceSlice", driver)
	}
	t.Logf("%d Ready node(s) publish devices of %s; the most on one node is %d", readyWithDevices, driver, best)
	return best
}

// allocation is what the positive case saw, for the probe subtest.
type allocation struct {
	pod    *corev1.Pod
	device string
	kwok   bool
	// noContainers says why the pod's node runs no containers.
	noContainers string
}

func claimAllocated(t *conformance.T, env *conformance.Env) allocation {
	acc := env.Accelerator
	t.Step("Run a pod that claims one %s device through a ResourceClaimTemplate", acc.DeviceClass)
	t.Apply(&resourcev1.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "single-device"},
		Spec: resourcev1.ResourceClaimTemplateSpec{Spec: resourcev1.ResourceClaimSpec{
			Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
				Name: "accelerator",
				Exactly: &resourcev1.ExactDeviceRequest{
					DeviceClassName: acc.DeviceClass,
					AllocationMode:  resourcev1.DeviceAllocationModeExactCount,
					Count:           1,
				},
			}}},
		}},
	})
	template := "single-device"
	t.Apply(probePod(env, "with-device", corev1.PodResourceClaim{Name: "accelerator", ResourceClaimTemplateName: &template}))

	ctx, cancel := context.WithTimeout(t.Context(), scheduleTimeout)
	defer cancel()
	pod, err := conformance.WaitForPod(ctx, env.Client, env.Namespace, "with-device", conformance.PodRunning)
	if err != nil {
		if pod != nil {
			t.Observe("pod with-device as last seen", devicepod.Summary(pod))
		}
		t.Fatalf("the pod claiming one device did not run: %v", err)
	}
	t.Observe("pod with-device", devicepod.Summary(pod))

	if len(pod.Status.ResourceClaimStatuses) != 1 || pod.Status.ResourceClaimStatuses[0].ResourceClaimName == nil {
		t.Fatalf("pod with-device has no ResourceClaim generated from the template: %+v", pod.Status.ResourceClaimStatuses)
	}
	claimName := *pod.Status.ResourceClaimStatuses[0].ResourceClaimName
	claim, err := env.DRA().ResourceClaims(env.Namespace).Get(t.Context(), claimName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting ResourceClaim %s: %v", claimName, err)
	}
	if claim.Status.Allocation == nil || len(claim.Status.Allocation.Devices.Results) != 1 {
		t.Fatalf("ResourceClaim %s is not allocated exactly one device: %+v", claimName, claim.Status.Allocation)
	}
	res := claim.Status.Allocation.Devices.Results[0]
	t.Observe("allocation of ResourceClaim "+claimName, map[string]string{
		"driver": res.Driver, "pool": res.Pool, "device": res.Device, "request": res.Request, "node": pod.Spec.NodeName,
	})
	if res.Driver != acc.DRADriver {
		t.Errorf("the device comes from driver %s, want %s", res.Driver, acc.DRADriver)
	}
	if !slices.ContainsFunc(claim.Status.ReservedFor, func(r resourcev1.ResourceClaimConsumerReference) bool {
		return r.Resource == "pods" && r.UID == pod.UID
	}) {
		t.Errorf("ResourceClaim %s is not reserved for pod with-device: %+v", claimName, claim.Status.ReservedFor)
	}
	// The device must be one the driver published for the pod's node.
	published, err := env.DRA().ResourceSlices().List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.AndSelectors(
			fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorNodeName, pod.Spec.NodeName),
			fields.OneTermEqualSelector(resourcev1.ResourceSliceSelectorDriver, res.Driver),
		).String(),
	})
	if err != nil {
		t.Fatalf("listing the ResourceSlices of node %s: %v", pod.Spec.NodeName, err)
	}
	if !hasDevice(published.Items, res.Pool, res.Device) {
		t.Errorf("device %s/%s is not among the devices %s published for node %s", res.Pool, res.Device, res.Driver, pod.Spec.NodeName)
	}
	node, err := env.Client.CoreV1().Nodes().Get(t.Context(), pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node %s: %v", pod.Spec.NodeName, err)
	}
	noContainers, kwok := conformance.NodeRunsNoContainers(node)
	t.Logf("pod with-device runs on %s holding device %s/%s", pod.Spec.NodeName, res.Pool, res.Device)
	return allocation{pod: pod, device: res.Device, kwok: kwok, noContainers: noContainers}
}

func probeSeesDevice(t *conformance.T, env *conformance.Env, alloc allocation) {
	if alloc.pod == nil {
		t.Skipf("no pod holds a device: ClaimAllocatedAndPodRuns failed")
	}
	if alloc.kwok {
		t.Skipf("pod %s runs on %s: %s, so what a container sees cannot be observed there",
			alloc.pod.Name, alloc.pod.Spec.NodeName, alloc.noContainers)
	}
	t.Step("Read what the probe in pod %s reports about its devices", alloc.pod.Name)
	report := devicepod.Read(t, env, alloc.pod.Name, "probe")
	devicepod.ExpectOne(t, env, "pod "+alloc.pod.Name, report, devicepod.Device{Name: alloc.device})
	if !t.Failed() {
		t.Shown("a ResourceClaim for a %s device was allocated through %s and the pod's container saw exactly device %s", env.Accelerator.DeviceClass, env.DRA().Version(), alloc.device)
	}
}

func beyondCapacity(t *conformance.T, env *conformance.Env, maxPerNode int) {
	acc := env.Accelerator
	want := int64(maxPerNode + 1)
	t.Step("Claim %d %s devices, one more than any Ready node has", want, acc.DeviceClass)
	t.Apply(&resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "beyond-capacity"},
		Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
			Name: "accelerators",
			Exactly: &resourcev1.ExactDeviceRequest{
				DeviceClassName: acc.DeviceClass,
				AllocationMode:  resourcev1.DeviceAllocationModeExactCount,
				Count:           want,
			},
		}}}},
	})
	claimName := "beyond-capacity"
	t.Apply(probePod(env, "beyond-capacity", corev1.PodResourceClaim{Name: "accelerators", ResourceClaimName: &claimName}))

	ctx, cancel := context.WithTimeout(t.Context(), scheduleTimeout)
	defer cancel()
	pod, err := conformance.WaitForPod(ctx, env.Client, env.Namespace, "beyond-capacity", conformance.PodUnschedulable)
	if err != nil {
		if pod != nil {
			t.Observe("pod beyond-capacity as last seen", devicepod.Summary(pod))
		}
		t.Fatalf("the scheduler did not mark the pod unschedulable: %v", err)
	}
	cond := conformance.PodCondition(pod, corev1.PodScheduled)
	t.Observe("scheduler's reason for pod beyond-capacity", fmt.Sprintf("PodScheduled=%s reason=%s: %s", cond.Status, cond.Reason, cond.Message))
	if !strings.Contains(strings.ToLower(cond.Message), "claim") {
		t.Errorf("the scheduler's message does not name the resource claim as the cause: %q", cond.Message)
	}
	claim, err := env.DRA().ResourceClaims(env.Namespace).Get(t.Context(), claimName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting ResourceClaim %s: %v", claimName, err)
	}
	if claim.Status.Allocation != nil {
		t.Errorf("ResourceClaim %s for %d devices was allocated although no node has that many", claimName, want)
		return
	}
	t.Shown("a claim for %d devices, more than any node has, left its pod unschedulable", want)
}

// probePod is a pod running the probe in one container that uses claim.
func probePod(env *conformance.Env, name string, claim corev1.PodResourceClaim) *corev1.Pod {
	acc := env.Accelerator
	args := probe.Args("devices")
	if acc.DeviceEnvPrefix != "" {
		args = append(args, "--env-prefix="+acc.DeviceEnvPrefix)
	}
	if acc.DeviceGlob != "" {
		args = append(args, "--device-glob="+acc.DeviceGlob)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "kaic-probe"}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name:      "probe",
				Image:     env.ProbeImage,
				Args:      args,
				Resources: corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: claim.Name}}},
			}},
			ResourceClaims:                []corev1.PodResourceClaim{claim},
			TerminationGracePeriodSeconds: new(devicepod.GracePeriod),
		},
	}
	if acc.NodeTaintKey != "" {
		pod.Spec.Tolerations = []corev1.Toleration{{Key: acc.NodeTaintKey, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	}
	return pod
}

func hasDevice(items []resourcev1.ResourceSlice, pool, device string) bool {
	for _, s := range items {
		if s.Spec.Pool.Name != pool {
			continue
		}
		if slices.ContainsFunc(s.Spec.Devices, func(d resourcev1.Device) bool { return d.Name == device }) {
			return true
		}
	}
	return false
}
