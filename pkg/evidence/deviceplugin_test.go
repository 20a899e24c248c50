package evidence

import (
	"strings"
	"testing"

	"github.com/kaic-dev/kaic/pkg/profile"
)

// A run whose accelerators come from a device plugin says so, and names
// its extended resource, where a DRA run names its DeviceClass and driver.
func TestDevicePluginRunNamesItsResource(t *testing.T) {
	run := allMustPass(true)
	a := &run.Profile.Spec.Accelerator
	a.Allocation, a.ResourceName = profile.AllocationDevicePlugin, "example.com/gpu"
	res := run.Results[len(run.Results)-4] // secure_accelerator_access
	if res.ID != "secure_accelerator_access" {
		t.Fatalf("fixture order changed: %s", res.ID)
	}
	tr := string(Transcript(run, res))
	if !strings.Contains(tr, "| Accelerator model | "+a.Model+" (device plugin, extended resource `example.com/gpu`) |") || strings.Contains(tr, "DeviceClass `") {
		t.Errorf("transcript header does not name the device plugin's resource:\n%s", tr)
	}
	junit, err := JUnit(run)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`name="kaic.accelerator.allocation" value="device-plugin"`, `name="kaic.accelerator.resourceName" value="example.com/gpu"`} {
		if !strings.Contains(string(junit), want) {
			t.Errorf("junit.xml lacks %s", want)
		}
	}
	if n := run.SimulatedNotice(); !strings.Contains(n, "device plugin resource example.com/gpu") {
		t.Errorf("notice %q", n)
	}
}
