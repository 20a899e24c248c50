package fakegpu

import (
	"fmt"
	"strconv"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// A sharing strategy lets several holders use one device at once, the way
// a real driver offers time-slicing: the last Sharing.Devices devices of
// each node are shared, each by up to Sharing.Replicas holders, and the
// others stay exclusive. Every holder of a shared device sees that same
// device (its name in GPU_DEVICE_<index>, its load directory), and its
// metrics add up the load of all of them.
//
// In DRA mode a shared device allows multiple allocations
// (DRAConsumableCapacity): its capacity shares bounds the holders, each
// claim consuming one share unless it asks for more, and the string
// attribute sharing names the strategy. The exclusive DeviceClass leaves
// shared devices out (a plain request would otherwise get a share of one
// without knowing it); the shared DeviceClass selects only them.
//
// In device-plugin mode the shared devices are a second extended
// resource, <resource>.shared, as NVIDIA's device plugin names time-sliced
// GPUs when it renames them: each shared device is Replicas units
// (<device>::<replica>), so units of the plain resource stay whole devices.
// The node is labelled as NVIDIA's GPU feature discovery labels a
// time-sliced node: <resource>.shared.replicas, .count (shared devices)
// and .sharing-strategy.

// Sharing strategies the driver offers.
const (
	// StrategyNone shares nothing (the default).
	StrategyNone = "none"
	// StrategyTimeSlicing lets holders of a device take turns on it.
	StrategyTimeSlicing = "time-slicing"
)

// Names the shared devices are published under.
const (
	// AttrSharing is the string attribute that names a shared device's
	// strategy; exclusive devices do not have it.
	AttrSharing = "sharing"
	// CapacityShares is the capacity of a shared device that bounds its
	// holders: Replicas shares, one per claim by default.
	CapacityShares = "shares"
	// SharedDeviceClass is the DeviceClass of the shared devices.
	SharedDeviceClass = "shared." + DriverName
	// SharedResourceSuffix ends the extended resource of the shared
	// devices in device-plugin mode.
	SharedResourceSuffix = ".shared"
	// replicaSeparator separates a device from its replica in the IDs of
	// a shared device's units.
	replicaSeparator = "::"
)

// Sharing is the sharing strategy of a node's devices.
type Sharing struct {
	// Strategy is StrategyNone ("" too) or StrategyTimeSlicing.
	Strategy string
	// Replicas is how many holders one shared device takes at once (at
	// least 2).
	Replicas int
	// Devices is how many of the node's devices are shared: the last
	// ones.
	Devices int
}

// Enabled reports whether any device is shared.
func (s Sharing) Enabled() bool { return s.Strategy != "" && s.Strategy != StrategyNone }

// shared is how many devices are shared.
func (s Sharing) shared() int {
	if !s.Enabled() {
		return 0
	}
	return s.Devices
}

// Validate checks the strategy against a node of count devices.
func (s Sharing) Validate(count int) error {
	switch s.Strategy {
	case "", StrategyNone:
		return nil
	case StrategyTimeSlicing:
	default:
		return fmt.Errorf("sharing strategy %q: must be %s or %s", s.Strategy, StrategyNone, StrategyTimeSlicing)
	}
	if s.Replicas < 2 {
		return fmt.Errorf("sharing replicas %d: a shared device takes at least 2 holders", s.Replicas)
	}
	if s.Devices < 1 || s.Devices > count {
		return fmt.Errorf("sharing devices %d: between 1 and the %d devices of the node", s.Devices, count)
	}
	return nil
}

// sharedDevice makes api, the published form of shared device d, a device
// several claims may hold: each consumes one of its Replicas shares and
// none of its memory unless it asks (time-slicing does not divide memory).
// Every capacity of a device that allows multiple allocations is consumed
// by each claim, the whole of it when no requestPolicy says otherwise, so
// memory needs a policy too.
func sharedDevice(api *resourceapi.Device, d Device) {
	api.AllowMultipleAllocations = ptr.To(true)
	api.Attributes[AttrSharing] = resourceapi.DeviceAttribute{StringValue: ptr.To(d.Strategy)}
	replicas := resource.NewQuantity(int64(d.Replicas), resource.DecimalSI)
	api.Capacity[CapacityShares] = resourceapi.DeviceCapacity{
		Value: *replicas,
		RequestPolicy: &resourceapi.CapacityRequestPolicy{
			Default: resource.NewQuantity(1, resource.DecimalSI),
			ValidRange: &resourceapi.CapacityRequestPolicyRange{
				Min:  resource.NewQuantity(1, resource.DecimalSI),
				Max:  replicas,
				Step: resource.NewQuantity(1, resource.DecimalSI),
			},
		},
	}
	memory := resource.NewQuantity(d.Memory, resource.BinarySI)
	api.Capacity["memory"] = resourceapi.DeviceCapacity{
		Value: *memory,
		RequestPolicy: &resourceapi.CapacityRequestPolicy{
			Default:    resource.NewQuantity(0, resource.BinarySI),
			ValidRange: &resourceapi.CapacityRequestPolicyRange{Min: resource.NewQuantity(0, resource.BinarySI), Max: memory},
		},
	}
}

// ExclusiveSelector is the CEL selector of a DeviceClass that gives the
// devices of driver one holder has to itself.
func ExclusiveSelector(driver string) string {
	return fmt.Sprintf("device.driver == %q && !(%q in device.attributes[%q])", driver, AttrSharing, driver)
}

// SharedSelector is the CEL selector of a DeviceClass that gives the
// shared devices of driver.
func SharedSelector(driver string) string {
	return fmt.Sprintf("device.driver == %q && %q in device.attributes[%q]", driver, AttrSharing, driver)
}

// SharedResourceName is the extended resource the shared devices are
// advertised as in device-plugin mode, next to resource.
func SharedResourceName(resource string) string { return resource + SharedResourceSuffix }

// UnitIDs are the IDs a device plugin lists for d: its name, or for a
// shared device one ID per replica.
func (d Device) UnitIDs() []string {
	if !d.Shared() {
		return []string{d.Name}
	}
	out := make([]string, d.Replicas)
	for i := range out {
		out[i] = d.Name + replicaSeparator + strconv.Itoa(i)
	}
	return out
}

// physicalDevice is the device a unit ID belongs to.
func physicalDevice(id string) string {
	name, _, _ := strings.Cut(id, replicaSeparator)
	return name
}

// NodeLabels are the labels that declare a node's shared units of
// resource, as GPU feature discovery declares time-slicing, or nil when
// the strategy shares nothing.
func (s Sharing) NodeLabels(resource string) map[string]string {
	if !s.Enabled() {
		return nil
	}
	shared := SharedResourceName(resource)
	return map[string]string{
		shared + ".replicas":         strconv.Itoa(s.Replicas),
		shared + ".count":            strconv.Itoa(s.Devices),
		shared + ".sharing-strategy": s.Strategy,
	}
}
