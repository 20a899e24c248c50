package testenv

import (
	"testing"

	resourcev1 "k8s.io/api/resource/v1"
)

func TestFakeGPUSlice(t *testing.T) {
	slice := FakeGPUSlice("node-a", "gpu.example.com", 3)
	if got := *slice.Spec.NodeName; got != "node-a" {
		t.Errorf("nodeName = %q, want node-a", got)
	}
	if slice.Spec.Pool.Name != "node-a" || slice.Spec.Pool.ResourceSliceCount != 1 {
		t.Errorf("pool = %+v, want node-a with one slice", slice.Spec.Pool)
	}
	if len(slice.Spec.Devices) != 3 {
		t.Fatalf("got %d devices, want 3", len(slice.Spec.Devices))
	}
	uuids := map[string]bool{}
	for i, device := range slice.Spec.Devices {
		if want := "gpu-" + string(rune('0'+i)); device.Name != want {
			t.Errorf("device %d is named %q, want %q", i, device.Name, want)
		}
		attr := func(name resourcev1.QualifiedName) resourcev1.DeviceAttribute { return device.Attributes[name] }
		if v := attr("index").IntValue; v == nil || *v != int64(i) {
			t.Errorf("%s: index = %v, want %d", device.Name, v, i)
		}
		if v := attr("driverVersion").VersionValue; v == nil || *v != FakeGPUDriverVersion {
			t.Errorf("%s: driverVersion = %v, want version %s", device.Name, v, FakeGPUDriverVersion)
		}
		if v := attr("model").StringValue; v == nil || *v != FakeGPUModel {
			t.Errorf("%s: model = %v", device.Name, v)
		}
		uuid := attr("uuid").StringValue
		if uuid == nil || uuids[*uuid] {
			t.Errorf("%s: uuid %v missing or repeated", device.Name, uuid)
		} else {
			uuids[*uuid] = true
		}
		if memory := device.Capacity["memory"].Value; memory.String() != FakeGPUMemory {
			t.Errorf("%s: memory = %s, want %s", device.Name, memory.String(), FakeGPUMemory)
		}
	}
	again := FakeGPUSlice("node-a", "gpu.example.com", 3)
	if *again.Spec.Devices[2].Attributes["uuid"].StringValue != *slice.Spec.Devices[2].Attributes["uuid"].StringValue {
		t.Error("uuids differ between calls; reruns would publish different slices")
	}
}

func TestDeviceClassFor(t *testing.T) {
	class := DeviceClassFor("gpus", "gpu.example.com")
	if got := class.Spec.Selectors[0].CEL.Expression; got != `device.driver == "gpu.example.com"` {
		t.Errorf("selector = %s", got)
	}
}
