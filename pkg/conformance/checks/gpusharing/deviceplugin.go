package gpusharing

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
)

// In device-plugin mode an extended resource cannot be shared between
// containers or pods: every request gets units of its own. Sharing shows
// as a node advertising more units than it has devices, which only the
// platform can say: NVIDIA's GPU feature discovery labels a time-sliced
// node <resource>.replicas (units per device), <resource>.count (devices)
// and <resource>.sharing-strategy. A device plugin may advertise the
// shared units under a resource of their own, <resource>.shared (NVIDIA's
// device plugin does when it renames time-sliced GPUs, kaic-fake-gpu
// always), so that units of <resource> stay whole devices; such a
// resource is declared by labels of its own name, or, as GPU feature
// discovery labels a renamed resource, by those of <resource>, its devices
// then being its units over the replicas. On a node that declares fewer
// devices than units, the check runs one pod more than it has devices,
// each holding one unit: when all run at once, at least two share a
// device, and on a node that runs containers they must see it. A cluster
// whose nodes declare nothing is not verified.

// sharedNode is a node that declares fewer devices than it advertises
// units of resource.
type sharedNode struct {
	name             string
	resource         string
	units, devices   int64
	replicas         int64
	strategy, labels string
}

// sharedSuffix ends the name of the resource a device plugin advertises
// shared units as, beside the model's.
const sharedSuffix = ".shared"

// Names of the objects the device-plugin test creates.
const sharerPrefix = "unit-sharer-"

// sharedNodes reads what the nodes advertising the resource res declare
// about its units (inventory: the units per Ready node); base is the
// model's resource when res is its shared variant, whose labels then
// stand in for those res lacks.
func sharedNodes(t *conformance.T, env *conformance.Env, res, base string, inventory map[string][]devicepod.Device) []sharedNode {
	nodes, err := env.Client.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	var out []sharedNode
	var rows []string
	for i := range nodes.Items {
		n := &nodes.Items[i]
		units := int64(len(inventory[n.Name]))
		if units == 0 {
			continue
		}
		l := n.Labels
		prefix, count := res, true
		if base != "" && !declares(l, res) && declares(l, base) {
			// As GPU feature discovery labels a renamed resource: the
			// replicas are the model resource's, its count is not of
			// these units.
			prefix, count = base, false
		}
		s := sharedNode{name: n.Name, resource: res, units: units, strategy: l[prefix+".sharing-strategy"]}
		s.replicas, _ = strconv.ParseInt(l[prefix+".replicas"], 10, 64)
		if count {
			s.devices, _ = strconv.ParseInt(l[prefix+".count"], 10, 64)
		}
		if s.devices == 0 && s.replicas > 1 {
			s.devices = (units + s.replicas - 1) / s.replicas
		}
		var declared []string
		for _, k := range []string{".count", ".replicas", ".sharing-strategy"} {
			if v, ok := l[prefix+k]; ok {
				declared = append(declared, prefix+k+"="+v)
			}
		}
		s.labels = strings.Join(declared, ", ")
		rows = append(rows, fmt.Sprintf("%s: %d units; %s", n.Name, units, orNothing(s.labels)))
		if s.devices > 0 && s.devices < units {
			out = append(out, s)
		}
	}
	sort.Strings(rows)
	t.Observe("what the nodes advertising "+res+" declare of its units", rows)
	sort.Slice(out, func(i, j int) bool {
		if out[i].devices != out[j].devices {
			return out[i].devices < out[j].devices
		}
		return out[i].name < out[j].name
	})
	return out
}

// declares reports whether labels declare anything of res's units.
func declares(labels map[string]string, res string) bool {
	for _, k := range []string{".count", ".replicas", ".sharing-strategy"} {
		if _, ok := labels[res+k]; ok {
			return true
		}
	}
	return false
}

func orNothing(s string) string {
	if s == "" {
		return "no sharing labels"
	}
	return s
}

// runDevicePlugin is the check in device-plugin mode.
func runDevicePlugin(t *conformance.T, env *conformance.Env) {
	res := env.Accelerator.ResourceName
	inventory := devicepod.Preflight(t, env)
	t.Logf("accelerator model %q: %s; an extended resource cannot be shared between containers or pods, so sharing is what a node declares of its units", env.Accelerator.Model, devicepod.How(env))
	t.Step("Look for nodes that declare fewer devices than the units of %s they advertise (labels %s.count, %s.replicas)", res, res, res)
	shared := sharedNodes(t, env, res, "", inventory)
	sharedEnv := *env
	sharedEnv.Accelerator.ResourceName = res + sharedSuffix
	if units := devicepod.Inventory(t, &sharedEnv); len(units) > 0 {
		t.Step("Look for nodes that declare fewer devices than the units of %s, the shared variant of %s, they advertise", sharedEnv.Accelerator.ResourceName, res)
		shared = append(shared, sharedNodes(t, env, sharedEnv.Accelerator.ResourceName, res, units)...)
	}
	if len(shared) == 0 {
		t.Skipf("not verified: no node advertising %s or %s%s declares fewer devices than units (labels <resource>.count or <resource>.replicas, as NVIDIA's GPU feature discovery sets them for time-slicing); without that a device plugin's unit is one device",
			res, res, sharedSuffix)
	}
	// The node with the fewest devices needs the fewest pods.
	sort.SliceStable(shared, func(i, j int) bool { return shared[i].devices < shared[j].devices })
	node := shared[0]
	if node.resource != res {
		env = &sharedEnv
	}
	var pods []*corev1.Pod
	if !t.Run("MoreHoldersThanDevices", func(t *conformance.T) { pods = moreHolders(t, env, node) }) || pods == nil {
		return
	}
	t.Run("PodsSeeSharedDevice", func(t *conformance.T) { seeShared(t, env, node, pods) })
}

// moreHolders runs one pod more than the node's devices, each requesting
// one unit, on that node, and expects them all to run at once.
func moreHolders(t *conformance.T, env *conformance.Env, node sharedNode) []*corev1.Pod {
	res := env.Accelerator.ResourceName
	n := node.devices + 1
	t.Step("Run %d pods on node %s, each requesting one %s: the node declares %d device(s) for its %d units (%s)", n, node.name, res, node.devices, node.units, node.labels)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%d", sharerPrefix, i)
		spec := devicepod.OneDevicePod(env, names[i], "", "")
		spec.RequireNode = node.name
		devicepod.Start(t, env, spec)
	}
	pods := make([]*corev1.Pod, n)
	for i, name := range names {
		pods[i] = devicepod.WaitRunning(t, env, name)
		devicepod.RequestsOne(t, env, pods[i])
		if pods[i].Spec.NodeName != node.name {
			t.Errorf("pod %s runs on %s, not on %s", name, pods[i].Spec.NodeName, node.name)
		}
	}
	if !t.Failed() {
		t.Shown("%d pods each holding one %s ran at once on node %s, which declares %d device(s): units of one device were shared", n, res, node.name, node.devices)
	}
	return pods
}

// seeShared reads what the pods see: each exactly one device, and among
// them fewer distinct devices than pods.
func seeShared(t *conformance.T, env *conformance.Env, node sharedNode, pods []*corev1.Pod) {
	devicepod.SkipWithoutContainers(t, env, pods[0])
	t.Step("Read what the probe in each pod on node %s sees", node.name)
	var seen []string
	for _, p := range pods {
		r := devicepod.Read(t, env, p.Name, "probe")
		devicepod.ExpectOne(t, env, "pod "+p.Name, r, devicepod.Device{})
		if len(r.Devices) == 1 && !slices.Contains(seen, r.Devices[0]) {
			seen = append(seen, r.Devices[0])
		}
	}
	if len(seen) >= len(pods) {
		t.Errorf("the %d pods on node %s see %d different devices (%s), but the node declares %d: its units were not shared",
			len(pods), node.name, len(seen), strings.Join(seen, ", "), node.devices)
	}
}
