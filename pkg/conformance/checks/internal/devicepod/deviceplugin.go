package devicepod

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/pkg/conformance"
)

// What differs when the accelerator model's devices are allocated by a
// kubelet device plugin (spec.accelerator.allocation: device-plugin):
// pods request the model's extended resource in their containers' limits
// instead of referencing claims, the nodes' allocatable says how many
// devices each has instead of ResourceSlices, and nothing in the API says
// which device a container got: only what the container sees does.

// DevicePlugin reports whether the model's devices are allocated by a
// device plugin rather than through DRA claims.
func DevicePlugin(env *conformance.Env) bool { return env.Accelerator.DevicePlugin() }

// Resource is the extended resource pods request in device-plugin mode.
func Resource(env *conformance.Env) corev1.ResourceName {
	return corev1.ResourceName(env.Accelerator.ResourceName)
}

// Source names where the model's devices come from, for messages:
// "driver gpu.example.com" or "extended resource nvidia.com/gpu".
func Source(env *conformance.Env) string {
	if DevicePlugin(env) {
		return "extended resource " + env.Accelerator.ResourceName
	}
	return "driver " + env.Accelerator.DRADriver
}

// How says how pods get devices: "DeviceClass gpu.example.com, driver
// gpu.example.com" or "extended resource nvidia.com/gpu of a device
// plugin".
func How(env *conformance.Env) string {
	if DevicePlugin(env) {
		return "extended resource " + env.Accelerator.ResourceName + " of a device plugin"
	}
	return "DeviceClass " + env.Accelerator.DeviceClass + ", driver " + env.Accelerator.DRADriver
}

// Asking says how a container asks for one device: "claims one
// gpu.example.com device" or "requests one nvidia.com/gpu".
func Asking(env *conformance.Env) string {
	if DevicePlugin(env) {
		return "requests one " + env.Accelerator.ResourceName
	}
	return "claims one " + env.Accelerator.DeviceClass + " device"
}

// Without says how a pod holds no device: "without a claim" or
// "requesting no nvidia.com/gpu".
func Without(env *conformance.Env) string {
	if DevicePlugin(env) {
		return "requesting no " + env.Accelerator.ResourceName
	}
	return "without a claim"
}

// Holder is a container that holds one device of the model: in DRA mode
// by referencing the pod claim podClaim, in device-plugin mode by
// requesting one of the model's extended resource.
func Holder(env *conformance.Env, name, podClaim string) Container {
	if DevicePlugin(env) {
		return Container{Name: name, Devices: 1}
	}
	return Container{Name: name, Claims: []string{podClaim}}
}

// Resources are the resources of container c: references to its pod
// claims, and its units of the extended resource as limits.
func Resources(env *conformance.Env, c Container) corev1.ResourceRequirements {
	var r corev1.ResourceRequirements
	for _, claim := range c.Claims {
		r.Claims = append(r.Claims, corev1.ResourceClaim{Name: claim})
	}
	if c.Devices > 0 {
		r.Limits = corev1.ResourceList{Resource(env): quantity(c.Devices)}
	}
	return r
}

// TemplateClaims are the pod claims of a pod whose containers hold
// devices through podClaim, generated from template: none in
// device-plugin mode.
func TemplateClaims(env *conformance.Env, podClaim, template string) []corev1.PodResourceClaim {
	if DevicePlugin(env) {
		return nil
	}
	return []corev1.PodResourceClaim{FromTemplate(podClaim, template)}
}

// ApplyTemplate creates the ResourceClaimTemplate for one device that
// TemplateClaims refer to, in DRA mode; device-plugin mode needs none.
func ApplyTemplate(t *conformance.T, env *conformance.Env, template string) {
	if !DevicePlugin(env) {
		t.Apply(OneDeviceTemplate(template, env.Accelerator.DeviceClass))
	}
}

// OneDevicePod is the spec of a pod whose one container, probe, holds one
// device: through a claim from template (DRA) or by requesting one of the
// extended resource (device plugin).
func OneDevicePod(env *conformance.Env, name, template, podClaim string) Spec {
	return Spec{
		Name:       name,
		Claims:     TemplateClaims(env, podClaim, template),
		Containers: []Container{Holder(env, "probe", podClaim)},
	}
}

// Requested is how many of resource pod requests: its containers' limits
// (requests where a container sets no limit), or its largest init
// container's if that is more, as the scheduler counts.
func Requested(pod *corev1.Pod, res corev1.ResourceName) int64 {
	of := func(c corev1.Container) int64 {
		if q, ok := c.Resources.Limits[res]; ok {
			return q.Value()
		}
		q := c.Resources.Requests[res]
		return q.Value()
	}
	var sum, init int64
	for _, c := range pod.Spec.Containers {
		sum += of(c)
	}
	for _, c := range pod.Spec.InitContainers {
		init = max(init, of(c))
	}
	return max(sum, init)
}

// RequestsOne checks what the API says a running pod holds in
// device-plugin mode, records it and returns it: one unit of the extended
// resource in all, on a node that advertises it. The API names no device,
// so the Device returned names only the resource and the node.
func RequestsOne(t *conformance.T, env *conformance.Env, pod *corev1.Pod) Device {
	res := Resource(env)
	n := Requested(pod, res)
	node, err := env.Client.CoreV1().Nodes().Get(t.Context(), pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node %s of pod %s: %v", pod.Spec.NodeName, pod.Name, err)
	}
	allocatable := node.Status.Allocatable[res]
	t.Observe("extended resource of pod "+pod.Name, map[string]any{
		"requested": fmt.Sprintf("%d %s", n, res), "node": node.Name, "allocatable on the node": allocatable.String(),
	})
	if n != 1 {
		t.Errorf("pod %s requests %d %s, want exactly 1", pod.Name, n, res)
	}
	if allocatable.IsZero() {
		t.Errorf("pod %s runs on node %s, which advertises no allocatable %s", pod.Name, node.Name, res)
	}
	return Device{Driver: string(res), Pool: node.Name}
}

// inventoryDevicePlugin lists, per Ready node, the units of the extended
// resource it advertises as allocatable. The API names no device, so the
// entries are named by their index on the node.
func inventoryDevicePlugin(t *conformance.T, env *conformance.Env) map[string][]Device {
	res := Resource(env)
	nodes, err := env.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	out := map[string][]Device{}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		q, ok := n.Status.Allocatable[res]
		if !ok || q.IsZero() || !NodeReady(n) {
			continue
		}
		for j := range q.Value() {
			out[n.Name] = append(out[n.Name], Device{Driver: string(res), Pool: n.Name, Name: strconv.FormatInt(j, 10)})
		}
	}
	return out
}

// freeDevicePlugin lists, per Ready node, the units of the extended
// resource that no pod bound to the node requests.
func freeDevicePlugin(t *conformance.T, env *conformance.Env) map[string][]Device {
	inv := inventoryDevicePlugin(t, env)
	used := Used(t, env, nil)
	free := map[string][]Device{}
	for node, units := range inv {
		if n := int64(len(units)) - used[node]; n > 0 {
			free[node] = units[:n]
		}
	}
	return free
}

// Used sums, per node, the units of the extended resource that the pods
// bound to it and not finished request, leaving out the pods skip
// reports (nil: none).
func Used(t *conformance.T, env *conformance.Env, skip func(*corev1.Pod) bool) map[string]int64 {
	pods, err := env.Client.CoreV1().Pods(metav1.NamespaceAll).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing pods: %v", err)
	}
	used := map[string]int64{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || (skip != nil && skip(p)) {
			continue
		}
		if n := Requested(p, Resource(env)); n > 0 {
			used[p.Spec.NodeName] += n
		}
	}
	return used
}

// preflightDevicePlugin verifies, in device-plugin mode, what every
// accelerator check needs before it runs a pod: the model names its
// extended resource and how a container sees a device, and Ready nodes
// advertise the resource. It returns the units per node.
func preflightDevicePlugin(t *conformance.T, env *conformance.Env) map[string][]Device {
	acc := env.Accelerator
	if acc.ResourceName == "" {
		t.Fatalf("the profile's accelerator model %q allocates through a device plugin but names no extended resource (spec.accelerator.resourceName)", acc.Model)
	}
	if acc.DeviceEnvPrefix == "" && acc.DeviceGlob == "" {
		t.Fatalf("the profile's accelerator model %q says neither how a container sees a device (spec.accelerator.deviceEnvPrefix, deviceGlob)", acc.Model)
	}
	t.Step("Check that Ready nodes advertise allocatable %s, the device plugin's resource", acc.ResourceName)
	inv := inventoryDevicePlugin(t, env)
	rows := []string{}
	for _, n := range slices.Sorted(maps.Keys(inv)) {
		rows = append(rows, fmt.Sprintf("%s: %d", n, len(inv[n])))
	}
	t.Observe("allocatable "+acc.ResourceName+" of Ready nodes", rows)
	if len(inv) == 0 {
		t.Fatalf("no Ready node advertises allocatable %s: the device plugin is not running or not registered with the kubelet%s",
			acc.ResourceName, servedByDRA(t, env))
	}
	observeOthers(t, env)
	return inv
}

// servedByDRA says, for a failure, when a DeviceClass maps the extended
// resource to DRA devices (DRAExtendedResource): nodes then advertise
// nothing, and the profile's allocation should be dra.
func servedByDRA(t *conformance.T, env *conformance.Env) string {
	classes, err := env.Client.ResourceV1().DeviceClasses().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		return ""
	}
	var mapping []string
	for _, c := range classes.Items {
		if c.Spec.ExtendedResourceName != nil && *c.Spec.ExtendedResourceName == env.Accelerator.ResourceName {
			mapping = append(mapping, c.Name)
		}
	}
	if len(mapping) == 0 {
		return ""
	}
	slices.Sort(mapping)
	return fmt.Sprintf("; DeviceClass %s maps it to DRA devices, so this cluster allocates it through DRA (spec.accelerator.allocation: dra)", strings.Join(mapping, ", "))
}

// noFit is why a pod may stay unschedulable although devices it could
// get are free.
const noFit = "they do not fit the pod (its other resources, node selectors or the nodes' taints)"

// freeWhat names free devices, per mode: "device(s) of driver X" or
// "unit(s) of extended resource X".
func freeWhat(env *conformance.Env) string {
	if DevicePlugin(env) {
		return "unit(s) of " + Source(env)
	}
	return "device(s) of " + Source(env)
}

// quantity is n as a resource quantity.
func quantity(n int64) resource.Quantity { return *resource.NewQuantity(n, resource.DecimalSI) }

// Holds checks what the API says a running pod holds through its pod
// claim podClaim and returns it: in DRA mode the one device of the
// model's driver allocated to the claim, published for the pod's node and
// reserved for the pod; in device-plugin mode one unit of the extended
// resource (RequestsOne).
func Holds(t *conformance.T, env *conformance.Env, pod *corev1.Pod, podClaim string) Device {
	if DevicePlugin(env) {
		return RequestsOne(t, env, pod)
	}
	claim := Claim(t, env, pod, podClaim)
	dev := OneDevice(t, env, claim, pod.Spec.NodeName)
	if !ReservedFor(claim, pod.UID) {
		t.Errorf("ResourceClaim %s is not reserved for pod %s: %v", claim.Name, pod.Name, Consumers(claim))
	}
	return dev
}
