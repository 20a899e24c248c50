// Package fakegpu is kaic-fake-gpu, kaic's simulated accelerator: a real
// DRA kubelet plugin (`kaic probe dra-driver`, run by the kaic-fake-gpu
// chart as a DaemonSet from the probe image) that
//
//   - publishes N devices per node in one ResourceSlice (pool = node name)
//     with the attributes index, uuid, model and driverVersion and a memory
//     capacity; with a sharing strategy (sharing.go) the last K of them are
//     shared devices that several claims may hold at once;
//   - prepares allocated claims by writing one CDI spec per claim, which
//     gives each container of the claim the variable GPU_DEVICE_<index> =
//     <device name> and bind-mounts the device's load directory
//     (<state dir>/<device name>/) at the same path;
//   - serves per-device Prometheus metrics (utilization, memory used and
//     total, temperature, power) computed from the load files that
//     `kaic probe load` writes into a held device's load directory. A device
//     no claim holds reports no load.
//
// The prepared claims are the CDI spec files themselves: the driver keeps no
// other state, so a restarted driver (or a rolling update) carries on where
// the previous one stopped.
package fakegpu

import (
	"crypto/sha256"
	"fmt"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/dynamic-resource-allocation/resourceslice"
	"k8s.io/utils/ptr"
)

// Defaults of the simulated devices.
const (
	// DriverName is the DRA driver (and DeviceClass) name, that of the
	// `example` accelerator model.
	DriverName = "gpu.example.com"
	// ResourceName is the extended resource the driver advertises in
	// device-plugin mode, that of the `example` accelerator model.
	ResourceName = "example.com/gpu"
	// EnvPrefix names the variables that announce held devices.
	EnvPrefix = "GPU_DEVICE_"
	// DefaultModel is the model attribute of every device.
	DefaultModel = "kaic-fake-gpu"
	// DefaultDriverVersion is the driverVersion attribute (a semantic
	// version).
	DefaultDriverVersion = "1.0.0"
	// DefaultStateDir holds one load directory per device, on the node and,
	// for the devices it holds, in a container.
	DefaultStateDir = "/var/run/kaic-fake-gpu"
	// DefaultDevices is how many devices a node has.
	DefaultDevices = 8
)

// DefaultMemory is the memory capacity of a device.
var DefaultMemory = resource.MustParse("80Gi")

// Device is one simulated accelerator of a node.
type Device struct {
	// Name is the device name in the pool (gpu-<index>).
	Name          string
	Index         int
	UUID          string
	Model         string
	DriverVersion string
	// Memory is the device's memory in bytes.
	Memory int64
	// Strategy is the sharing strategy of a shared device ("" for a device
	// one holder has to itself), Replicas how many holders it takes at
	// once.
	Strategy string
	Replicas int
}

// Shared reports whether several holders may hold the device at once.
func (d Device) Shared() bool { return d.Strategy != "" }

// Spec describes the devices of one node.
type Spec struct {
	// Node is the node name, also the pool name.
	Node string
	// Count is the number of devices (at least 1).
	Count int
	// Model and DriverVersion are the attributes of every device; empty
	// means the defaults.
	Model         string
	DriverVersion string
	// Memory is each device's memory capacity; zero means DefaultMemory.
	Memory resource.Quantity
	// Sharing, when its strategy is set, makes the last of the devices
	// shared.
	Sharing Sharing
}

// Devices returns the node's devices, gpu-0 … gpu-<Count-1>. The UUIDs are
// derived from the node name and index, so a restarted driver publishes
// the same devices.
func (s Spec) Devices() []Device {
	model, version, memory := s.Model, s.DriverVersion, s.Memory
	if model == "" {
		model = DefaultModel
	}
	if version == "" {
		version = DefaultDriverVersion
	}
	if memory.IsZero() {
		memory = DefaultMemory
	}
	out := make([]Device, s.Count)
	firstShared := s.Count - s.Sharing.shared()
	for i := range out {
		out[i] = Device{
			Name:          fmt.Sprintf("gpu-%d", i),
			Index:         i,
			UUID:          deviceUUID(s.Node, i),
			Model:         model,
			DriverVersion: version,
			Memory:        memory.Value(),
		}
		if i >= firstShared {
			out[i].Strategy, out[i].Replicas = s.Sharing.Strategy, s.Sharing.Replicas
		}
	}
	return out
}

// deviceUUID is a stable, UUID-shaped identifier in the style GPU UUIDs are
// printed (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).
func deviceUUID(node string, index int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "kaic-fake-gpu/%s/%d", node, index))
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", sum[0:4], sum[4:6], sum[6:8], sum[8:10], sum[10:16])
}

// APIDevice is how the device appears in a ResourceSlice. A shared device
// allows multiple allocations and says how (sharedDevice).
func (d Device) APIDevice() resourceapi.Device {
	api := resourceapi.Device{
		Name: d.Name,
		Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
			"index":         {IntValue: ptr.To(int64(d.Index))},
			"uuid":          {StringValue: ptr.To(d.UUID)},
			"model":         {StringValue: ptr.To(d.Model)},
			"driverVersion": {VersionValue: ptr.To(d.DriverVersion)},
		},
		Capacity: map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{
			"memory": {Value: *resource.NewQuantity(d.Memory, resource.BinarySI)},
		},
	}
	if d.Shared() {
		sharedDevice(&api, d)
	}
	return api
}

// EnvName is the variable that announces the device in a container.
func (d Device) EnvName() string { return fmt.Sprintf("%s%d", EnvPrefix, d.Index) }

// Env are the variables a container holding the device gets, as
// NAME=value: its name under EnvName and its driver version.
func (d Device) Env() []string {
	return []string{d.EnvName() + "=" + d.Name, d.EnvName() + "_DRIVER_VERSION=" + d.DriverVersion}
}

// Resources is what the driver publishes for a node: one pool named after
// the node with one slice of all its devices.
func Resources(node string, devices []Device) resourceslice.DriverResources {
	api := make([]resourceapi.Device, len(devices))
	for i, d := range devices {
		api[i] = d.APIDevice()
	}
	return resourceslice.DriverResources{
		Pools: map[string]resourceslice.Pool{
			node: {Slices: []resourceslice.Slice{{Devices: api}}},
		},
	}
}
