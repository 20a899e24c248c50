package gpusharing

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/kaic-dev/kaic/pkg/conformance"
	"github.com/kaic-dev/kaic/pkg/conformance/checks/internal/devicepod"
)

// In DRA mode a sharing strategy is a device that several claims may hold
// at once (allowMultipleAllocations, DRAConsumableCapacity): time-slicing
// and MPS are published that way. The check finds such devices of the
// model's driver, the DeviceClass whose selectors admit them (evaluated
// here as the scheduler evaluates them), and a node, and gives one claim
// more than the node has such devices, each claim its own pod and exactly
// one device: when all the pods run at once, at least two claims hold
// the same device, each with its own share, and where containers run
// their holders see that one device.

// Names of the objects the strategy test creates: holder-<i> pods, each
// with its own ResourceClaim holder-<i>.
const holderPrefix = "holder-"

// sharedDevice is a published device that several claims may hold.
type sharedDevice struct {
	node string
	devicepod.Device
	api resourcev1.Device
	// holders is how many claims that ask nothing of its capacity it
	// takes at once (math.MaxInt for no bound).
	holders int
}

// holdersOf is how many claims that ask for none of d's capacity may hold
// it at once, as the scheduler counts: each consumes, of every capacity,
// its request policy's default, or all of it without a policy.
func holdersOf(d resourcev1.Device) int {
	n := math.MaxInt
	for _, c := range d.Capacity {
		def := c.Value
		if c.RequestPolicy != nil && c.RequestPolicy.Default != nil {
			def = *c.RequestPolicy.Default
		}
		if def.Sign() <= 0 {
			continue
		}
		n = min(n, int(math.Floor(c.Value.AsApproximateFloat64()/def.AsApproximateFloat64())))
	}
	return n
}

func holdersString(n int) string {
	if n == math.MaxInt {
		return "no bound"
	}
	return fmt.Sprint(n)
}

// sharedDevices lists the devices of slices that several claims may hold,
// on the nodes of ready.
func sharedDevices(slices []resourcev1.ResourceSlice, ready map[string][]devicepod.Device) []sharedDevice {
	var out []sharedDevice
	for _, s := range slices {
		if s.Spec.NodeName == nil || ready[*s.Spec.NodeName] == nil {
			continue
		}
		for _, d := range s.Spec.Devices {
			if ptr.Deref(d.AllowMultipleAllocations, false) {
				out = append(out, sharedDevice{
					node:    *s.Spec.NodeName,
					Device:  devicepod.Device{Driver: s.Spec.Driver, Pool: s.Spec.Pool.Name, Name: d.Name},
					api:     d,
					holders: holdersOf(d),
				})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// classAdmission is what one DeviceClass admits of the driver's devices.
type classAdmission struct {
	name string
	// shared are the shared devices its selectors admit.
	shared []sharedDevice
	// exclusive is how many of the driver's other devices it admits.
	exclusive int
	err       error
}

// admissions says, for every DeviceClass, which of the driver's devices
// it admits; those that admit shared devices come first: classes that
// admit only shared devices, then by how many, then by name.
func admissions(t *conformance.T, env *conformance.Env, rs []resourcev1.ResourceSlice, shared []sharedDevice) []classAdmission {
	classes, err := env.DRA().DeviceClasses().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing DeviceClasses: %v", err)
	}
	driver := env.Accelerator.DRADriver
	var out []classAdmission
	for i := range classes.Items {
		c := &classes.Items[i]
		a := classAdmission{name: c.Name}
		exprs, err := devicepod.Selectors(c)
		a.err = err
		for _, d := range shared {
			if a.err != nil {
				break
			}
			ok, err := devicepod.Admits(t.Context(), exprs, driver, d.api)
			if err != nil {
				a.err = err
				break
			}
			if ok {
				a.shared = append(a.shared, d)
			}
		}
		for _, s := range rs {
			for _, d := range s.Spec.Devices {
				if a.err != nil || ptr.Deref(d.AllowMultipleAllocations, false) {
					continue
				}
				if ok, err := devicepod.Admits(t.Context(), exprs, driver, d); err != nil {
					a.err = err
				} else if ok {
					a.exclusive++
				}
			}
		}
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (len(a.shared) > 0) != (len(b.shared) > 0) {
			return len(a.shared) > 0
		}
		if (a.exclusive == 0) != (b.exclusive == 0) {
			return a.exclusive == 0
		}
		if len(a.shared) != len(b.shared) {
			return len(a.shared) > len(b.shared)
		}
		return a.name < b.name
	})
	return out
}

// sharingNode is the node the strategy test runs on: the class's shared
// devices there, and how many claims they take in all.
type sharingNode struct {
	name    string
	devices []sharedDevice
	holders int
}

// pickNode chooses, among the nodes with shared devices the class admits,
// one whose devices take one claim more than there are of them, with the
// fewest devices (the fewest pods).
func pickNode(admitted []sharedDevice) (sharingNode, bool) {
	by := map[string]*sharingNode{}
	for _, d := range admitted {
		n := by[d.node]
		if n == nil {
			n = &sharingNode{name: d.node}
			by[d.node] = n
		}
		n.devices = append(n.devices, d)
		if n.holders < math.MaxInt-d.holders {
			n.holders += d.holders
		} else {
			n.holders = math.MaxInt
		}
	}
	var best *sharingNode
	for _, n := range by {
		if n.holders <= len(n.devices) {
			continue
		}
		if best == nil || len(n.devices) < len(best.devices) || (len(n.devices) == len(best.devices) && n.name < best.name) {
			best = n
		}
	}
	if best == nil {
		return sharingNode{}, false
	}
	return *best, true
}

// strategy is the test of the devices several claims may hold: it picks
// a DeviceClass and a node, or says why the requirement is not verified.
func strategy(t *conformance.T, env *conformance.Env, rs []resourcev1.ResourceSlice, inventory map[string][]devicepod.Device) {
	acc := env.Accelerator
	shared := sharedDevices(rs, inventory)
	t.Step("Look for a DeviceClass that admits the %d device(s) of driver %s that several claims may hold", len(shared), acc.DRADriver)
	rows := make([]string, len(shared))
	for i, d := range shared {
		rows[i] = fmt.Sprintf("%s on node %s: takes %s claim(s) at once (%s)", d, d.node, holdersString(d.holders), capacities(d.api))
	}
	t.Observe("devices of driver "+acc.DRADriver+" that several claims may hold", rows)
	classes := admissions(t, env, rs, shared)
	rows = rows[:0]
	for _, a := range classes {
		switch {
		case a.err != nil:
			rows = append(rows, fmt.Sprintf("%s: cannot be evaluated here (%v)", a.name, a.err))
		case len(a.shared) > 0 || a.exclusive > 0:
			rows = append(rows, fmt.Sprintf("%s: admits %d shared and %d other device(s) of %s", a.name, len(a.shared), a.exclusive, acc.DRADriver))
		}
	}
	t.Observe("DeviceClasses admitting devices of driver "+acc.DRADriver, rows)
	for _, a := range classes {
		if a.name == acc.DeviceClass && len(a.shared) > 0 {
			t.Logf("DeviceClass %s of the accelerator model admits devices several claims may hold: a claim of it may be given a share of a device rather than the whole", a.name)
		}
	}
	if len(classes) == 0 || len(classes[0].shared) == 0 {
		t.Skipf("not verified: driver %s publishes %d device(s) that several claims may hold, but no DeviceClass admits any of them, so no claim can ask for one",
			acc.DRADriver, len(shared))
	}
	class := classes[0]
	node, ok := pickNode(class.shared)
	if !ok {
		t.Skipf("not verified: on no node do the shared devices DeviceClass %s admits take more claims than there are devices (each claim consumes the default of every capacity, all of a capacity without a request policy)",
			class.name)
	}
	var pods []*corev1.Pod
	var held map[string][]string
	if !t.Run("MoreHoldersThanDevices", func(t *conformance.T) { pods, held = moreClaimsThanDevices(t, env, class.name, node) }) {
		return
	}
	t.Run("PodsSeeSharedDevice", func(t *conformance.T) { holdersSeeDevice(t, env, node, pods, held) })
}

// capacities says what each claim consumes of a device's capacities by
// default, for the transcript.
func capacities(d resourcev1.Device) string {
	var out []string
	for name, c := range d.Capacity {
		def := "all"
		if c.RequestPolicy != nil && c.RequestPolicy.Default != nil {
			def = c.RequestPolicy.Default.String()
		}
		out = append(out, fmt.Sprintf("%s %s, %s per claim", name, c.Value.String(), def))
	}
	if len(out) == 0 {
		return "no capacity"
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// sharedOnlySelector narrows a claim of the class to devices of driver
// that several claims may hold.
func sharedOnlySelector(driver string) string {
	return fmt.Sprintf("device.driver == %q && device.allowMultipleAllocations", driver)
}

// holderClaim is a ResourceClaim for exactly one shared device of class.
func holderClaim(name, class, driver string) *resourcev1.ResourceClaim {
	return &resourcev1.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: resourcev1.ResourceClaimSpec{Devices: resourcev1.DeviceClaim{Requests: []resourcev1.DeviceRequest{{
			Name: devicepod.RequestName,
			Exactly: &resourcev1.ExactDeviceRequest{
				DeviceClassName: class,
				Selectors:       []resourcev1.DeviceSelector{{CEL: &resourcev1.CELDeviceSelector{Expression: sharedOnlySelector(driver)}}},
				AllocationMode:  resourcev1.DeviceAllocationModeExactCount,
				Count:           1,
			},
		}}}},
	}
}

// moreClaimsThanDevices runs one pod more than node has shared devices,
// each with its own claim of one of them, and expects them all to run at
// once with a share each. It returns the pods and, per device, the pods
// holding it.
func moreClaimsThanDevices(t *conformance.T, env *conformance.Env, class string, node sharingNode) ([]*corev1.Pod, map[string][]string) {
	driver := env.Accelerator.DRADriver
	n := len(node.devices) + 1
	t.Step("Run %d pods on node %s, each with its own ResourceClaim for one device of DeviceClass %s that several claims may hold (selector %s): the node has %d such device(s), taking %s claims in all",
		n, node.name, class, sharedOnlySelector(driver), len(node.devices), holdersString(node.holders))
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%d", holderPrefix, i)
		t.Apply(holderClaim(names[i], class, driver))
		devicepod.Start(t, env, devicepod.Spec{
			Name:        names[i],
			Claims:      []corev1.PodResourceClaim{devicepod.FromClaim(podClaim, names[i])},
			RequireNode: node.name,
		})
	}
	pods := make([]*corev1.Pod, n)
	for i, name := range names {
		pods[i] = devicepod.WaitRunning(t, env, name)
	}
	held := map[string][]string{}
	var rows []string
	for _, p := range pods {
		claim := devicepod.Claim(t, env, p, podClaim)
		results := claim.Status.Allocation.Devices.Results
		if len(results) != 1 {
			t.Errorf("ResourceClaim %s is allocated %d devices, want exactly 1", claim.Name, len(results))
			continue
		}
		r := results[0]
		dev := devicepod.Device{Driver: r.Driver, Pool: r.Pool, Name: r.Device}
		if !slices.ContainsFunc(node.devices, func(d sharedDevice) bool { return d.Device == dev }) {
			t.Errorf("ResourceClaim %s was allocated %s, not one of the shared devices of node %s", claim.Name, dev, node.name)
		}
		if !devicepod.ReservedFor(claim, p.UID) {
			t.Errorf("ResourceClaim %s is not reserved for pod %s: %v", claim.Name, p.Name, devicepod.Consumers(claim))
		}
		share := "none"
		if r.ShareID != nil {
			share = string(*r.ShareID)
		} else {
			t.Errorf("ResourceClaim %s holds %s without a share: the API does not record it as one of several holders", claim.Name, dev)
		}
		rows = append(rows, fmt.Sprintf("%s: %s, share %s, consumed %s (pod %s)", claim.Name, dev, share, consumed(r.ConsumedCapacity), p.Name))
		held[dev.String()] = append(held[dev.String()], p.Name)
	}
	t.Observe("allocations of the holders' ResourceClaims", rows)
	if t.Failed() {
		return pods, held
	}
	var sharedBy []string
	for _, dev := range slices.Sorted(maps.Keys(held)) {
		if len(held[dev]) > 1 {
			sharedBy = append(sharedBy, fmt.Sprintf("%s by %s", dev, strings.Join(held[dev], ", ")))
		}
	}
	if len(sharedBy) == 0 {
		t.Fatalf("the %d claims hold %d different devices: none is held by two", n, len(held))
	}
	t.Shown("%d pods, each with its own claim of one device, ran at once on node %s, which has %d device(s) several claims may hold: %s, each claim with its own share",
		n, node.name, len(node.devices), strings.Join(sharedBy, "; "))
	return pods, held
}

func consumed(c map[resourcev1.QualifiedName]resource.Quantity) string {
	if len(c) == 0 {
		return "nothing recorded"
	}
	var out []string
	for k, v := range c {
		out = append(out, fmt.Sprintf("%s %s", k, v.String()))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// holdersSeeDevice reads what the probe in each holder sees: exactly its
// allocated device, and the holders of one device the same one.
func holdersSeeDevice(t *conformance.T, env *conformance.Env, node sharingNode, pods []*corev1.Pod, held map[string][]string) {
	devicepod.SkipWithoutContainers(t, env, pods[0])
	t.Step("Read what the probe in each pod on node %s sees", node.name)
	reports := map[string]devicepod.Report{}
	for _, dev := range slices.Sorted(maps.Keys(held)) {
		d := deviceOf(node, dev)
		for _, name := range held[dev] {
			r := devicepod.Read(t, env, name, "probe")
			devicepod.ExpectOne(t, env, "pod "+name, r, d)
			reports[name] = r
		}
	}
	var same []string
	for _, dev := range slices.Sorted(maps.Keys(held)) {
		holders := held[dev]
		for _, other := range holders[1:] {
			sameDevice(t, "pods "+holders[0]+" and "+other, reports[holders[0]], reports[other], "shares of one device, "+dev)
		}
		if len(holders) > 1 {
			same = append(same, fmt.Sprintf("%s see %s", strings.Join(holders, " and "), strings.Join(reports[holders[0]].Devices, ",")))
		}
	}
	if !t.Failed() && len(same) > 0 {
		t.Shown("the holders of one shared device saw that same device: %s", strings.Join(same, "; "))
	}
}

func deviceOf(node sharingNode, s string) devicepod.Device {
	for _, d := range node.devices {
		if d.String() == s {
			return d.Device
		}
	}
	return devicepod.Device{}
}
